"""Mutation score of the generated suite over the skeleton's `broker.py`.

    .venv/bin/python -m tests.mutation [--tier reliable_messaging] [--keep DIR]

Renders the skeleton at the tier from the working tree, installs it with its
`dev` group and mutmut in a fresh virtual environment, and runs mutmut over the
generated `src/<package>/broker.py` with the generated test suite. Prints the
counts, the score (killed, timeouts included, over all mutants) and the
survivors per method. Slow (minutes per tier on two cores): not part of the
test run.
"""

from __future__ import annotations

import argparse
import collections
import re
import subprocess
import tempfile
from pathlib import Path

from tests.conftest import TIERS, make_venv, render, snapshot_template, with_dev_tools

MUTMUT = "mutmut==3.8.1"
CONFIG = """
[tool.mutmut]
source_paths = ["src/{package}/"]
do_not_mutate = ["*/settings.py", "*/__init__.py"]
also_copy = ["README.md"]
pytest_add_cli_args_test_selection = ["tests/"]
pytest_add_cli_args = ["-p", "no:cacheprovider", "-q"]
"""


def measure(tier: str, workdir: Path) -> str:
    template = snapshot_template(workdir / "template")
    package = render(
        template,
        workdir / "protean-acme-broker",
        backend="skeleton",
        capability_tier=tier,
    )
    [source] = package.glob("src/*/broker.py")
    with (package / "pyproject.toml").open("a") as pyproject:
        pyproject.write(CONFIG.format(package=source.parent.name))
    bin_dir = make_venv(workdir / "venv", *with_dev_tools(package), MUTMUT)
    subprocess.run(
        [bin_dir / "mutmut", "run", "--max-children", "2"],
        cwd=package,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    results = subprocess.run(
        [bin_dir / "mutmut", "results", "--all", "true"],
        cwd=package,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return results


def report(tier: str, results: str) -> None:
    outcomes: collections.Counter[str] = collections.Counter()
    survivors: collections.Counter[str] = collections.Counter()
    for line in results.splitlines():
        name, _, outcome = line.strip().rpartition(": ")
        if not name:
            continue
        outcomes[outcome] += 1
        if outcome == "survived":
            survivors[re.sub(r"__mutmut_\d+$", "", name).rsplit("ǁ", 1)[-1]] += 1
    total = sum(outcomes.values())
    killed = outcomes["killed"] + outcomes["timeout"]
    print(f"{tier}: {killed}/{total} mutants killed ({killed / total:.1%})")
    print("  " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))
    for method, count in survivors.most_common():
        print(f"  survived in {method}: {count}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tier", choices=TIERS, default="reliable_messaging")
    parser.add_argument("--keep", type=Path, help="work here and keep the files")
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True)
        report(args.tier, measure(args.tier, args.keep))
        return
    with tempfile.TemporaryDirectory() as workdir:
        report(args.tier, measure(args.tier, Path(workdir)))


if __name__ == "__main__":
    main()
