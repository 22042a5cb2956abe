"""Fast tier: the workflows, read as a reviewer of the supply chain reads them.

The workflows of a package rendered with each backend, and the template's own,
are clean under zizmor (offline, default persona) and actionlint; every action
they use is pinned to the commit of a release that the table of releases names;
each job holds only the permissions it needs.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import BACKENDS, REPO_ROOT, render

# For each action the workflows use: release tags and the commits they point to,
# read from the actions' own repositories (on 2026-12-01; add a row to move a pin).
RELEASES = Path(__file__).with_name("github-actions-releases.tsv")
TARGETS = (*BACKENDS, "template")
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<value>.*?)\s*$")
PINNED = re.compile(
    r"(?P<ref>(?P<action>[\w.-]+/[\w.-]+)(?:/[\w./-]+)?@(?P<sha>[0-9a-f]{40}))"
    r" # (?P<tag>v\d+\.\d+\.\d+)"
)


def requirement_pin(name: str) -> str:
    """The version requirements-dev.txt pins `name` to."""
    for line in (REPO_ROOT / "requirements-dev.txt").read_text().splitlines():
        if line.startswith(f"{name}=="):
            return line.split("==", 1)[1].split()[0]
    raise AssertionError(f"requirements-dev.txt pins no {name}")


def tool(name: str, how: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is required: {how}")
    return found


@pytest.fixture(scope="module")
def workflow_dirs(
    template_src: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    dirs = {"template": REPO_ROOT / ".github" / "workflows"}
    for backend in BACKENDS:
        package = render(
            template_src, tmp_path_factory.mktemp(backend) / "pkg", backend=backend
        )
        dirs[backend] = package / ".github" / "workflows"
    return dirs


def workflow_files(directory: Path) -> list[Path]:
    files = sorted(directory.glob("*.yml")) + sorted(directory.glob("*.yaml"))
    assert files, f"no workflow in {directory}"
    return files


def parsed(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


@pytest.fixture(scope="module")
def releases() -> dict[tuple[str, str], str]:
    """(action, tag) -> commit, from the table."""
    if not RELEASES.is_file():
        pytest.fail(f"{RELEASES} is missing: every pinned action is checked against it")
    with RELEASES.open(newline="") as table:
        return {
            (row["action"], row["tag"]): row["commit"]
            for row in csv.DictReader(table, delimiter="\t")
        }


@pytest.mark.parametrize("target", TARGETS)
def test_zizmor_finds_nothing(target: str, workflow_dirs: dict[str, Path]) -> None:
    directory = workflow_dirs[target]
    zizmor = tool("zizmor", "pip install -r requirements-dev.txt")
    result = subprocess.run(
        [zizmor, "--offline", "--no-config", "--no-progress", "--format", "json"]
        + [str(path) for path in workflow_files(directory)],
        capture_output=True,
        text=True,
    )
    try:
        findings = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"zizmor exited {result.returncode}:\n{result.stderr[-4000:]}")
    shown = [
        f"{Path(loc['symbolic']['key']['Local']['verbatim_path']).name}:"
        f"{loc['concrete']['location']['start_point']['row'] + 1} "
        f"[{finding['ident']}] {finding['desc']}: {loc['symbolic']['annotation']}"
        for finding in findings
        for loc in finding["locations"]
        if loc["symbolic"]["kind"] == "Primary"
    ]
    if findings:
        pytest.fail(f"zizmor: {len(findings)} findings\n" + "\n".join(shown))
    assert result.returncode == 0, result.stderr[-4000:]


@pytest.mark.parametrize("target", TARGETS)
def test_actionlint_finds_nothing(target: str, workflow_dirs: dict[str, Path]) -> None:
    directory = workflow_dirs[target]
    actionlint = tool("actionlint", "bash tests/run.sh builds it with Go")
    shellcheck = tool("shellcheck", "apt-get install shellcheck")
    version = subprocess.run(
        [actionlint, "-version"], capture_output=True, text=True, check=True
    ).stdout.split()[0]
    wanted = re.search(
        r"^ACTIONLINT_VERSION=(\S+)$",
        (REPO_ROOT / "tests" / "run.sh").read_text(),
        re.MULTILINE,
    )
    assert wanted is not None
    assert version == wanted[1], f"{actionlint} is {version}: run bash tests/run.sh"
    result = subprocess.run(
        [actionlint, "-format", "{{json .}}", "-shellcheck", shellcheck]
        + [str(path) for path in workflow_files(directory)],
        cwd=directory,
        capture_output=True,
        text=True,
    )
    try:
        errors = json.loads(result.stdout or "[]")
    except json.JSONDecodeError:
        pytest.fail(f"actionlint exited {result.returncode}:\n{result.stderr}")
    shown = [
        f"{Path(e['filepath']).name}:{e['line']}:{e['column']} [{e['kind']}] "
        f"{e['message']}"
        for e in errors
    ]
    if errors:
        pytest.fail(f"actionlint: {len(errors)} errors\n" + "\n".join(shown))
    assert result.returncode == 0, result.stderr


def uses_in(workflow: dict[str, Any]) -> list[str]:
    """Every `uses:` value of a parsed workflow: steps and reusable workflows."""
    found = []
    for job in workflow["jobs"].values():
        if "uses" in job:
            found.append(job["uses"])
        found.extend(step["uses"] for step in job.get("steps", []) if "uses" in step)
    return found


@pytest.mark.parametrize("target", TARGETS)
def test_every_action_is_pinned_to_a_release_the_table_names(
    target: str,
    workflow_dirs: dict[str, Path],
    releases: dict[tuple[str, str], str],
) -> None:
    """`owner/repo@<40-hex commit> # vX.Y.Z`, where the table says tag vX.Y.Z
    of owner/repo is that commit: the comment Dependabot updates with the pin
    cannot drift from it, and no pin names a commit nobody released."""
    problems = []
    for path in workflow_files(workflow_dirs[target]):
        lines = [
            match["value"]
            for line in path.read_text().splitlines()
            if (match := USES_LINE.match(line))
        ]
        refs = []
        for value in lines:
            pin = PINNED.fullmatch(value)
            if pin is None:
                problems.append(
                    f"{path.name}: `{value}` is not `action@<sha> # vX.Y.Z`"
                )
                continue
            refs.append(pin["ref"])
            released = releases.get((pin["action"], pin["tag"]))
            if released is None:
                problems.append(
                    f"{path.name}: the table has no {pin['action']} {pin['tag']}"
                )
            elif released != pin["sha"]:
                problems.append(
                    f"{path.name}: {pin['action']} {pin['tag']} is {released}, "
                    f"not {pin['sha']}"
                )
        # Every `uses:` the YAML holds was on a line of its own, so checked above.
        problems.extend(
            f"{path.name}: `uses: {value}` is not on a line of its own"
            for value in uses_in(parsed(path))
            if value not in refs and not any(v.startswith(value) for v in lines)
        )
    if problems:
        pytest.fail("\n".join(problems))


@pytest.mark.parametrize("target", TARGETS)
def test_each_job_holds_only_what_it_needs(
    target: str, workflow_dirs: dict[str, Path]
) -> None:
    """Nothing at workflow level, each job its own permissions; an OpenID
    Connect token only for the job that publishes; no checkout leaves the
    token in .git/config."""
    for path in workflow_files(workflow_dirs[target]):
        workflow = parsed(path)
        assert workflow.get("permissions") == {}, path.name
        for name, job in workflow["jobs"].items():
            where = f"{path.name}: job {name}"
            permissions = job.get("permissions")
            assert isinstance(permissions, dict), f"{where} declares no permissions"
            publishes = (target, path.name, name) in {
                (backend, "release.yml", "publish") for backend in BACKENDS
            }
            assert ("id-token" in permissions) == publishes, where
            if not publishes:
                assert set(permissions) == {"contents"}, where
            for step in job.get("steps", []):
                if step.get("uses", "").startswith("actions/checkout@"):
                    assert step["with"]["persist-credentials"] is False, where


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_setup_uv_installs_the_uv_the_tests_use(
    backend: str, workflow_dirs: dict[str, Path]
) -> None:
    versions = {
        step["with"]["version"]
        for path in workflow_files(workflow_dirs[backend])
        for job in parsed(path)["jobs"].values()
        for step in job["steps"]
        if "setup-uv" in step.get("uses", "")
    }
    assert versions == {requirement_pin("uv")}


def test_the_zizmor_hook_runs_the_zizmor_the_tests_run(
    workflow_dirs: dict[str, Path],
) -> None:
    package = workflow_dirs["skeleton"].parents[1]
    hooks = yaml.safe_load((package / ".pre-commit-config.yaml").read_text())
    [zizmor] = [r for r in hooks["repos"] if r["repo"].endswith("zizmor-pre-commit")]
    assert [hook["id"] for hook in zizmor["hooks"]] == ["zizmor"]
    assert zizmor["rev"] == "v" + requirement_pin("zizmor")
