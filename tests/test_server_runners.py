"""Checks every server runner of generated packages passes alike, against real
servers: the table below says what differs between backends.

What a runner's server does for clients is checked in the backend's own module
(``test_kafka_server.py``, ``test_rabbitmq_server.py``).
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.backends import BY_NAME, SERVER_BACKENDS, SERVERS, Backend
from tests.conftest import REPO_ROOT
from tests.local_servers import HOST, HarnessError, group_alive, package_key
from tests.runners import SHARED, runner_path


def processes_naming(folder: Path) -> list[str]:
    """Command lines of live processes whose command line or environment names
    ``folder``: what a node started there runs (a JVM, a start script, an
    Erlang VM and its helpers)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            if str(folder).encode() in cmdline + (proc / "environ").read_bytes():
                found.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def gone(facts: dict[str, Any], timeout: float = 60.0) -> bool:
    """Whether every process group of a node ended within ``timeout``."""
    deadline = time.monotonic() + timeout
    while any(group_alive(pid) for pid in facts["pids"]):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


@pytest.mark.parametrize("backend", SERVERS, ids=BY_NAME)
def test_the_shim_runs_the_runner_packages_get(backend: Backend) -> None:
    path = runner_path(backend.name)
    assert path.parent.parent == REPO_ROOT / "template" / "tests"
    assert backend.runner_module.__file__ == str(path)
    assert sys.modules["tests.local_servers"].__file__ == str(SHARED)


@pytest.mark.parametrize("backend", SERVER_BACKENDS)
def test_a_failed_start_says_why_and_leaves_no_process(
    backend: Backend, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        node = backend.node(
            tmp_path / "node", **{backend.runner.taken_port: taken.getsockname()[1]}
        )
        with pytest.raises(HarnessError, match=backend.runner.start_failure) as err:
            node.start()
    assert str(node.log_path) in str(err.value)
    assert not node.running
    assert not backend.runner.epmd or not node.epmd.running
    assert processes_naming(tmp_path / "node") == []


# Started as a child process: a test run that is killed outright.
ABANDONING = """
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from tests.backends import BY_NAME
backend = BY_NAME[sys.argv[2]]
node = backend.node(Path(sys.argv[3]))
node.start()
print(json.dumps(backend.facts(node)), flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("backend", SERVER_BACKENDS)
def test_a_killed_test_process_leaves_no_node_behind(
    backend: Backend, tmp_path: Path
) -> None:
    """SIGKILL (like SIGTERM or a crash) skips atexit: the node's guard ends
    it then, with a SIGTERM and time to shut down cleanly."""
    folder = tmp_path / "node"
    child = subprocess.Popen(
        [sys.executable, "-c", ABANDONING, str(REPO_ROOT), backend.name, str(folder)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        facts = json.loads(child.stdout.readline())
    finally:
        child.kill()
        child.wait(timeout=30)
    assert gone(facts)
    assert processes_naming(folder) == []
    assert backend.runner.sigterm_logged in Path(facts["log"]).read_text()


def package(root: Path, backend: Backend) -> Path:
    """A package's runner files, as a rendered package has them."""
    tests = root / "tests"
    shutil.copytree(
        runner_path(backend.name).parent,
        tests / backend.name,
        ignore=shutil.ignore_patterns("*.jinja", "test_*", "__pycache__"),
    )
    shutil.copy2(SHARED, tests / "local_servers.py")
    (tests / "__init__.py").touch()
    return root


@pytest.mark.parametrize("backend", SERVER_BACKENDS)
def test_each_package_keeps_a_dev_node_of_its_own_until_stopped(
    backend: Backend, tmp_path: Path
) -> None:
    mine, other = (package(tmp_path / name, backend) for name in ("mine", "other"))

    def cli(root: Path, command: str) -> subprocess.CompletedProcess[str]:
        module = f"tests.{backend.name}.{backend.name}_server"
        return subprocess.run(
            [sys.executable, "-m", module, command],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    started = cli(mine, "start")
    assert started.returncode == 0, started.stderr
    assert re.fullmatch(r"[A-Z_]+=\S+\n", started.stdout)  # VARIABLE=<address>
    assert f"/dev-nodes/{package_key(mine)}/{backend.name}/" in started.stderr
    folder = backend.runner_module.cache_root() / "dev-nodes" / package_key(mine)
    recorded = json.loads((folder / f"{backend.name}.json").read_text())
    try:
        again = cli(mine, "start")
        assert (again.returncode, again.stdout) == (0, started.stdout)
        assert "reusing" in again.stderr
        status = cli(mine, "status")
        assert (status.returncode, status.stdout) == (0, started.stdout)
        elsewhere = cli(other, "status")
        assert (elsewhere.returncode, elsewhere.stdout) == (1, "")
        assert cli(other, "stop").returncode == 0  # stops nothing of mine
        assert cli(mine, "status").stdout == started.stdout
    finally:
        stopped = cli(mine, "stop")
    assert stopped.returncode == 0, stopped.stderr
    pids = [pid for key, pid in recorded.items() if key.endswith("pid")]
    assert pids and not any(group_alive(pid) for pid in pids)
    assert processes_naming(Path(recorded[backend.runner.folder])) == []
    assert not folder.exists()
    assert cli(mine, "status").returncode == 1
