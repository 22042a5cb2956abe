"""Run pytest in many copies of a generated package, cheaply.

    <venv>/bin/python planted_runner.py JOBS.json

JOBS.json lists `{"package": dir, "args": [pytest arguments], "log": file}`.
Importing Protean costs seconds, most of a short suite's run, so this process
imports it once and forks a child per job, at most `PARALLEL` at a time; each
child forgets the package and its tests, puts the copy's `src` first on
`sys.path`, runs pytest there with its output in the job's log, and exits with
pytest's code. Prints the codes, in job order, as JSON. Runs in the generated
package's environment (not the template's), so it imports nothing of the
template's tests.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from importlib import import_module
from pathlib import Path

PARALLEL = 2
"""Children at a time: CI has two cores."""

JOB_SECONDS = 300
"""A job still running after this is killed (and counts as not failing)."""

WARM = (
    "pytest",
    "protean",
    "protean.domain",
    "protean.port.broker",
    "protean.core.subscriber",
    "protean.server.subscription_status",
)


def child(package: Path, args: list[str], log: Path, names: set[str]) -> int:
    for name in list(sys.modules):
        if name.split(".")[0] in names:
            del sys.modules[name]
    os.chdir(package)
    sys.path.insert(0, str(package / "src"))
    with log.open("w") as output:
        os.dup2(output.fileno(), 1)
        os.dup2(output.fileno(), 2)
    signal.alarm(JOB_SECONDS)
    import pytest

    return int(pytest.main(args))


def main() -> None:
    jobs = json.loads(Path(sys.argv[1]).read_text())
    for module in WARM:
        import_module(module)
    codes: dict[int, int] = {}
    running: dict[int, int] = {}  # pid -> job index
    for index, job in enumerate(jobs):
        while len(running) >= PARALLEL:
            pid, status = os.wait()
            codes[running.pop(pid)] = os.waitstatus_to_exitcode(status)
        package = Path(job["package"])
        names = {"tests", *(p.name for p in (package / "src").iterdir())}
        pid = os.fork()
        if pid == 0:
            try:
                code = child(package, job["args"], Path(job["log"]), names)
            except BaseException:  # the parent reads the exit code only
                code = 99
            os._exit(code)
        running[pid] = index
    while running:
        pid, status = os.wait()
        codes[running.pop(pid)] = os.waitstatus_to_exitcode(status)
    print(json.dumps([codes[index] for index in range(len(jobs))]))


if __name__ == "__main__":
    main()
