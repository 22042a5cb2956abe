"""`copier update` carries new template versions into packages their authors edited.

Hermetic: each scenario snapshots the template's working tree into a temporary git
repository, tags versions there, renders and updates through Copier's Python API (or
its CLI where the README's commands are the point), and commits the package as its
author would. No user Copier settings, no global git configuration, and no network
but PyPI for the tests marked `package` (the "Next:" steps run `uv sync`).

The tags used here (v1.0.0 and up) stand for "the template as it is now" and its
next versions; `test_no_real_migration_falls_between_the_tags_used_here` keeps the
template's real `_migrations` out of their way.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import copier
import pytest
import yaml
from packaging.version import Version

from tests.conftest import (
    REPO_ROOT,
    TIMINGS,
    git,
    make_venv,
    render,
    run,
    snapshot_template,
    timed,
    with_dev_tools,
)

BASE, NEXT = "v1.0.0", "v1.1.0"  # a plain release: no migration applies
MAJOR, AFTER_MAJOR = "v2.0.0", "v2.1.0"  # MAJOR renames, moves and removes
PACKAGE = "protean_acme"
BROKER = f"src/{PACKAGE}/broker.py"
AUTHOR_TEST = "tests/test_author_endpoint.py"
Config = dict[str, Any]
MARKERS = re.compile(r"^(<<<<<<<|>>>>>>>)( |$)", re.MULTILINE)


@pytest.fixture(scope="module", autouse=True)
def hermetic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No user git or Copier configuration: only what the tests set up counts."""
    settings = tmp_path_factory.mktemp("copier-settings") / "settings.yml"
    settings.write_text("trust: []\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COPIER_SETTINGS_PATH", str(settings))
        patch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
        patch.setenv("GIT_CONFIG_NOSYSTEM", "1")
        for role in ("AUTHOR", "COMMITTER"):
            patch.setenv(f"GIT_{role}_NAME", "Package Author")
            patch.setenv(f"GIT_{role}_EMAIL", "author@example.com")
        yield


# -- helpers ------------------------------------------------------------------


def commit(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)


def release(template: Path, tag: str) -> None:
    commit(template, f"template {tag}")
    git(template, "tag", tag)


def generate(template: Path, package: Path, ref: str, **answers: Any) -> Path:
    """`copier copy --vcs-ref <ref>`, never trusted, then the author's first commit."""
    render(template, package, vcs_ref=ref, **answers)
    git(package, "init", "-q", "-b", "main")
    commit(package, "Generate the package")
    return package


def update(package: Path, ref: str, label: str, **options: Any) -> float:
    """`copier update --defaults --skip-answered --vcs-ref <ref>`; returns seconds."""
    key = f"copier update: {label}"
    with timed(key):
        copier.run_update(
            package,
            defaults=True,
            overwrite=True,
            vcs_ref=ref,
            skip_answered=True,
            quiet=True,
            **{"unsafe": False, **options},
        )
    return TIMINGS[key]


def replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{path} no longer holds {old!r} exactly once"
    path.write_text(text.replace(old, new))


def append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


def answers(package: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(
        (package / ".copier-answers.yml").read_text()
    )
    return loaded


def residue(package: Path) -> list[str]:
    """Conflict markers and `.rej` files an update left behind."""
    found = []
    for path in package.rglob("*"):
        if ".git" in path.relative_to(package).parts or not path.is_file():
            continue
        if path.suffix == ".rej" or MARKERS.search(path.read_text(errors="replace")):
            found.append(str(path.relative_to(package)))
    return sorted(found)


def status(package: Path) -> str:
    """`git status --porcelain`, leading spaces included (`git()` strips them)."""
    return subprocess.run(
        ["git", "status", "--porcelain"],
        cwd=package,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def copier_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The `copier` command the README documents, as users run it."""
    return subprocess.run(
        [sys.executable, "-m", "copier", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def verbatim_tests(template: Path) -> list[str]:
    """Conformance test modules the template ships as they are (no `.jinja`)."""
    folder = template / "template/tests/conformance"
    names = sorted(path.name for path in folder.glob("test_*.py"))
    assert len(names) >= 3, f"expected verbatim test modules in {folder}"
    return [f"tests/conformance/{name}" for name in names]


def edit_config(template: Path, change: Callable[[Config], Config]) -> None:
    """Rewrite the template's copier.yml through `change(config) -> config`."""
    path = template / "copier.yml"
    config = change(yaml.safe_load(path.read_text()))
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))


def edit_as_author(package: Path) -> None:
    """What an author does after generating: code, a setting, a test, docs, deps."""
    broker = package / BROKER
    # Implement part of a broker method, with state of their own.
    replace_once(
        broker,
        "super().__init__(name, domain, conn_info)\n",
        "super().__init__(name, domain, conn_info)\n"
        "        self.pings = 0  # author: probes answered\n",
    )
    replace_once(
        broker,
        "    def _ping(self) -> bool:\n",
        "    def _ping(self) -> bool:\n"
        "        self.pings += 1  # author: count probes\n",
    )
    # A configuration key of their own, read with the others.
    replace_once(
        broker,
        "        reader.refuse_unknown_keys()\n",
        '        self.endpoint = str(reader.raw("endpoint", "acme://localhost:7000"))\n'
        "        reader.refuse_unknown_keys()\n",
    )
    (package / AUTHOR_TEST).write_text(
        '"""The author\'s own test: the `endpoint` key they added."""\n\n'
        "from protean.domain import Domain\n\n\n"
        "def test_the_endpoint_key_is_read_and_ping_counts() -> None:\n"
        '    config = {"provider": "acme", "endpoint": "acme://broker:7000"}\n'
        '    domain = Domain(name="author", config={"brokers": {"default": config}})\n'
        "    domain.init(traverse=False)\n"
        "    with domain.domain_context():\n"
        '        broker = domain.brokers["default"]\n'
        '        assert broker.endpoint == "acme://broker:7000"\n'
        "        assert broker._ping()\n"
        "        assert broker.pings == 1\n"
    )
    replace_once(
        package / "README.md",
        "## Install\n",
        "Maintained by the Acme messaging team.\n\n## Install\n",
    )
    replace_once(package / "pyproject.toml", '"pytest>=8",', '"pytest>=8.2",')


# -- a plain release: changed, new and removed files ----------------------------


@dataclass
class Updated:
    template: Path
    package: Path
    removed_untouched: str
    removed_edited: str
    check_update: dict[str, Any]
    seconds: float


@pytest.fixture(scope="module")
def updated(tmp_path_factory: pytest.TempPathFactory) -> Updated:
    root = tmp_path_factory.mktemp("plain-release")
    template = snapshot_template(root / "template", tag=BASE)
    package = generate(template, root / "protean-acme-broker", BASE)
    edit_as_author(package)
    removed_untouched, removed_edited, *_ = verbatim_tests(template)
    append(package / removed_edited, "\n\n# author: keep this one, I rely on it\n")
    commit(package, "Author's work")

    source = template / "template"
    append(
        source / "README.md.jinja", "\n## Support\n\nAsk in Protean's discussions.\n"
    )
    replace_once(
        source / "pyproject.toml.jinja",
        '    "Typing :: Typed",\n',
        '    "Typing :: Typed",\n    "Operating System :: OS Independent",\n',
    )
    broker_sources = list(source.glob("src/*/*broker.py*.jinja"))
    assert broker_sources, f"no broker module under {source / 'src'}"
    for broker_source in broker_sources:  # one per backend
        append(
            broker_source,
            '\n\ndef template_release() -> str:\n    """Added in v1.1.0."""\n'
            '    return "1.1.0"\n',
        )
    (source / "SECURITY.md.jinja").write_text(
        "# Security policy of {{ distribution_name }}\n\n"
        "Report vulnerabilities to {{ author_email }}.\n"
    )
    for name in (removed_untouched, removed_edited):
        (source / name).unlink()
    release(template, NEXT)

    checked = copier_cli("check-update", "--output-format", "json", cwd=package)
    assert checked.returncode == 0, checked.stderr
    seconds = update(package, NEXT, f"{BASE} -> {NEXT}, edited package")
    return Updated(
        template,
        package,
        removed_untouched,
        removed_edited,
        json.loads(checked.stdout),
        seconds,
    )


def test_check_update_reports_the_new_version(updated: Updated) -> None:
    assert updated.check_update == {
        "update_available": True,
        "current_version": "1.0.0",
        "latest_version": "1.1.0",
    }


def test_the_authors_edits_survive(updated: Updated) -> None:
    broker = (updated.package / BROKER).read_text()
    assert "self.pings = 0  # author: probes answered" in broker
    assert "self.pings += 1  # author: count probes" in broker
    assert 'self.endpoint = str(reader.raw("endpoint", "acme://localhost:7000"))' in (
        broker
    )
    assert (updated.package / AUTHOR_TEST).is_file()
    assert (
        "Maintained by the Acme messaging team."
        in (updated.package / "README.md").read_text()
    )
    assert '"pytest>=8.2",' in (updated.package / "pyproject.toml").read_text()


def test_the_templates_changes_arrive(updated: Updated) -> None:
    package = updated.package
    assert "## Support" in (package / "README.md").read_text()
    pyproject = (package / "pyproject.toml").read_text()
    assert '"Operating System :: OS Independent",' in pyproject
    assert "def template_release() -> str:" in (package / BROKER).read_text()
    security = (package / "SECURITY.md").read_text()
    assert "protean-acme-broker" in security and "author@example.com" in security


def test_a_file_the_template_removed_is_gone(updated: Updated) -> None:
    assert not (updated.package / updated.removed_untouched).exists()


def test_without_a_migration_copier_deletes_a_removed_file_even_if_edited(
    updated: Updated,
) -> None:
    """Why hooks/keep_edited.py exists: the author's version is only in git now."""
    assert not (updated.package / updated.removed_edited).exists()
    committed = git(updated.package, "show", f"HEAD:{updated.removed_edited}")
    assert "# author: keep this one" in committed


def test_no_conflict_markers_or_rej_files_remain(updated: Updated) -> None:
    assert residue(updated.package) == []
    assert git(updated.package, "ls-files", "--unmerged") == ""


def test_the_answers_file_records_the_new_version(updated: Updated) -> None:
    recorded = answers(updated.package)
    assert recorded["_commit"] == NEXT
    assert recorded["_src_path"] == str(updated.template)
    assert recorded["broker_name"] == "acme"


def test_the_update_is_fast(updated: Updated) -> None:
    # Three renders (old, new, merged) and a git apply: seconds, not minutes.
    assert updated.seconds < 30


@pytest.mark.package
def test_the_updated_package_installs_and_passes_its_tests(
    updated: Updated, tmp_path: Path
) -> None:
    bin_dir = make_venv(tmp_path / "venv", *with_dev_tools(updated.package))
    output = run(
        bin_dir / "pytest", "-q", "-rA", "-p", "no:cacheprovider", cwd=updated.package
    )
    assert " passed" in output and not re.search(r"\b\d+ failed\b", output)
    assert f"PASSED {AUTHOR_TEST}::" in output


# -- a genuine conflict ----------------------------------------------------------


def a_package_whose_next_release_conflicts(tmp_path: Path) -> Path:
    """A package at BASE whose author pinned pytest, and a release NEXT that
    pins it otherwise on the same line."""
    template = snapshot_template(tmp_path / "template", tag=BASE)
    package = generate(template, tmp_path / "pkg", BASE)
    replace_once(package / "pyproject.toml", '"pytest>=8",', '"pytest>=8.2",')
    commit(package, "Author pins a newer pytest")
    replace_once(
        template / "template/pyproject.toml.jinja", '"pytest>=8",', '"pytest>=8.3",'
    )
    release(template, NEXT)
    return package


def test_a_genuine_conflict_is_reported_inline_not_resolved(tmp_path: Path) -> None:
    package = a_package_whose_next_release_conflicts(tmp_path)

    update(package, NEXT, "genuine conflict")

    pyproject = (package / "pyproject.toml").read_text()
    assert "<<<<<<< before updating" in pyproject
    assert ">>>>>>> after updating" in pyproject
    ours = pyproject.index('"pytest>=8.2",')
    theirs = pyproject.index('"pytest>=8.3",')
    assert pyproject.index("<<<<<<<") < ours < pyproject.index("=======") < theirs
    assert residue(package) == ["pyproject.toml"]
    # Copier records the conflict in git's index, so `git status` shows it unmerged
    # and a commit is refused until the author resolves it.
    assert git(package, "ls-files", "--unmerged", "--", "pyproject.toml")
    assert answers(package)["_commit"] == NEXT


# -- the first steps Copier prints, and what an update then says -----------------


def next_steps(output: str) -> list[str]:
    """The commands under "Next:" in what `copier copy` printed, in order."""
    lines = output.splitlines()
    start = lines.index("Next:") + 1
    end = lines.index("", start)
    return [line.strip() for line in lines[start:end]]


def without_ci() -> dict[str, str]:
    """A person's shell: CI unset, so the package's tests run as on a laptop."""
    return {key: value for key, value in os.environ.items() if key != "CI"}


@dataclass
class FirstSteps:
    template: Path
    package: Path
    steps: list[str]
    status_after_steps: str


@pytest.fixture(scope="module")
def first_steps(tmp_path_factory: pytest.TempPathFactory) -> FirstSteps:
    """`copier copy` as the quick start runs it, then its "Next:" as printed."""
    root = tmp_path_factory.mktemp("first-steps")
    template = snapshot_template(root / "template", tag=BASE)
    copied = copier_cli(
        "copy", "--defaults", "--data", "broker_name=acme", str(template), "pkg",
        cwd=root,
    )  # fmt: skip
    assert copied.returncode == 0, copied.stderr
    steps = next_steps(copied.stderr + copied.stdout)
    assert steps[0] == "cd pkg", steps
    with timed("the Next: steps Copier prints"):
        done = subprocess.run(
            ["bash", "-euxc", "\n".join(steps)],
            cwd=root,
            env=without_ci(),
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    package = root / "pkg"
    return FirstSteps(template, package, steps, status(package))


@pytest.mark.package
def test_the_next_steps_leave_a_clean_tree_and_commit_the_lock_file(
    first_steps: FirstSteps,
) -> None:
    assert first_steps.status_after_steps == ""
    tracked = git(first_steps.package, "ls-files").splitlines()
    assert "uv.lock" in tracked and "pyproject.toml" in tracked
    # The step the conflict guard needs is among them, and it took.
    assert "uv run pre-commit install" in first_steps.steps
    assert (first_steps.package / ".git/hooks/pre-commit").is_file()


@pytest.mark.package
def test_copier_update_after_the_next_steps_is_not_refused(
    first_steps: FirstSteps,
) -> None:
    updated = copier_cli(
        "update", "--defaults", "--skip-answered", cwd=first_steps.package
    )
    assert updated.returncode == 0, updated.stderr
    assert "is dirty" not in updated.stderr
    assert status(first_steps.package) == ""


def local_hooks_only(package: Path, destination: Path) -> Path:
    """The package's pre-commit configuration less the hooks fetched from GitHub,
    which this machine may not reach."""
    config = yaml.safe_load((package / ".pre-commit-config.yaml").read_text())
    config["repos"] = [repo for repo in config["repos"] if repo["repo"] == "local"]
    assert [hook["id"] for repo in config["repos"] for hook in repo["hooks"]] == [
        "mypy"
    ]
    destination.write_text(yaml.safe_dump(config))
    return destination


def bare_path_env() -> dict[str, str]:
    """No virtual environment on PATH or active: a commit from a fresh shell."""
    env = without_ci()
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = "/usr/bin:/bin"
    return env


@pytest.mark.package
def test_the_mypy_hook_runs_the_projects_mypy_without_it_on_path(
    first_steps: FirstSteps, tmp_path: Path
) -> None:
    package = first_steps.package
    # The whole configuration is valid; its other hooks come from GitHub on first
    # use, which this machine may not reach, so only the local one runs here.
    run(package / ".venv/bin/pre-commit", "validate-config", cwd=package)
    config = local_hooks_only(package, tmp_path / "local-hooks.yaml")
    pre_commit = [str(package / ".venv/bin/pre-commit"), "run", "-c", str(config)]

    def hooks() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*pre_commit, "--all-files"],
            cwd=package,
            env=bare_path_env(),
            capture_output=True,
            text=True,
        )

    passed = hooks()
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert re.search(r"^mypy\.+Passed$", passed.stdout, re.M), passed.stdout
    # It is mypy of the project that ran: it sees a type error and fails.
    wrong = package / f"src/{PACKAGE}/wrong.py"
    wrong.write_text('answer: int = "forty-two"\n')
    try:
        failed = hooks()
    finally:
        wrong.unlink()
    assert failed.returncode != 0
    assert "Incompatible types in assignment" in failed.stdout, failed.stdout


@pytest.mark.package
def test_the_conflict_guard_refuses_a_marker_copier_leaves(
    first_steps: FirstSteps, tmp_path: Path
) -> None:
    """`check-merge-conflict --assume-in-merge`, as the package configures it,
    run from PyPI's pre-commit-hooks at the pinned rev: copier update is no git
    merge, so without `--assume-in-merge` the hook would look at nothing."""
    package = first_steps.package
    config = yaml.safe_load((package / ".pre-commit-config.yaml").read_text())
    [hooks] = [r for r in config["repos"] if r["repo"].endswith("/pre-commit-hooks")]
    [guard] = [hook for hook in hooks["hooks"] if hook["id"] == "check-merge-conflict"]
    assert guard["args"] == ["--assume-in-merge"]
    bin_dir = make_venv(tmp_path / "hooks", f"pre-commit-hooks=={hooks['rev'][1:]}")
    conflicted = tmp_path / "conflicted.toml"
    conflicted.write_text(
        'dev = [\n<<<<<<< before updating\n    "pytest>=8.2",\n=======\n'
        '    "pytest>=8.3",\n>>>>>>> after updating\n]\n'
    )
    refused = subprocess.run(
        [bin_dir / "check-merge-conflict", *guard["args"], conflicted],
        cwd=package,
        capture_output=True,
        text=True,
    )
    assert refused.returncode != 0
    assert "Merge conflict string" in refused.stdout, refused.stdout


def test_an_update_with_a_conflict_says_what_to_do_next(tmp_path: Path) -> None:
    package = a_package_whose_next_release_conflicts(tmp_path)

    updated = copier_cli(
        "update", "--defaults", "--skip-answered", "--vcs-ref", NEXT, cwd=package
    )
    assert updated.returncode == 0, updated.stderr
    said = updated.stderr + updated.stdout
    for step in (
        "git diff --name-only --diff-filter=U",
        "uv sync && uv run pytest",
        '"Updating" in the README',
    ):
        assert step in said, said
    # The commands it gives find the conflict.
    assert git(package, "diff", "--name-only", "--diff-filter=U") == "pyproject.toml"
    [grep] = re.findall(r"`(grep [^`]+)`", said)
    found = subprocess.run(
        grep, shell=True, cwd=package, capture_output=True, text=True
    )
    assert found.stdout.split() == ["./pyproject.toml"], found
    assert "## Updating" in (package / "README.md").read_text()


# -- changing answers on update --------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "value", "depends"),
    [
        (
            "capability_tier",
            "ordered_messaging",
            "BrokerCapabilities.ORDERED_MESSAGING",
        ),
        ("license", "Apache-2.0", "Apache License"),
    ],
)
def test_a_changed_answer_rerenders_what_depends_on_it(
    tmp_path: Path, answer: str, value: str, depends: str
) -> None:
    template = snapshot_template(tmp_path / "template", tag=BASE)
    package = generate(template, tmp_path / "pkg", BASE)
    edit_as_author(package)
    commit(package, "Author's work")
    before = {
        path: (package / path).read_text()
        for path in (BROKER, "README.md", "pyproject.toml", "LICENSE")
    }

    update(package, BASE, f"answer {answer}={value}", data={answer: value})

    assert answers(package)[answer] == value
    assert residue(package) == []
    after = {path: (package / path).read_text() for path in before}
    changed = {path for path in before if after[path] != before[path]}
    if answer == "capability_tier":
        assert f"CAPABILITIES = {depends}" in after[BROKER]
        assert "`ordered_messaging` tier" in after["README.md"]
        assert {BROKER, "README.md"} <= changed and "LICENSE" not in changed
    else:
        assert depends in after["LICENSE"]
        assert 'license = "Apache-2.0"' in after["pyproject.toml"]
        assert {"LICENSE", "pyproject.toml"} <= changed and BROKER not in changed
    assert "self.pings += 1  # author: count probes" in after[BROKER]
    assert 'reader.raw("endpoint", "acme://localhost:7000")' in after[BROKER]
    assert "Maintained by the Acme messaging team." in after["README.md"]
    assert '"pytest>=8.2",' in after["pyproject.toml"]
    assert (package / AUTHOR_TEST).is_file()


# -- a release that needs migrations ---------------------------------------------


def migration(script: str, *args: str, stage: str = "after") -> dict[str, Any]:
    """A `_migrations` entry running one of hooks/ at release MAJOR."""
    return {
        "version": MAJOR,
        "when": f"{{{{ _stage == '{stage}' }}}}",
        "command": [
            "{{ _copier_python }}",
            f"{{{{ _copier_conf.src_path / 'hooks' / '{script}' }}}}",
            *args,
        ],
    }


NOTES, MOVED_NOTES = "NOTES.md", "docs/NOTES.md"  # a rendered file MAJOR moves
OLD_RENDER = (
    "--template",
    "{{ _copier_conf.src_path }}",
    "--from-ref",
    "{{ _version_from }}",
)


@dataclass
class Migrating:
    template: Path
    moved: tuple[str, str]
    removed_edited: str
    removed_untouched: str


@pytest.fixture(scope="module")
def migrating(tmp_path_factory: pytest.TempPathFactory) -> Migrating:
    """BASE asks `old_key`; MAJOR renames it, moves two files and removes two.

    AFTER_MAJOR changes nothing that needs a migration.
    """
    # v0.9.0 is the snapshot as it is; BASE adds the question MAJOR renames.
    template = snapshot_template(tmp_path_factory.mktemp("migrating") / "t", "v0.9.0")
    source = template / "template"
    moved_from, removed_edited, removed_untouched, *_ = verbatim_tests(template)
    moved_to = moved_from.replace("test_", "test_moved_", 1)

    def ask_old_key(config: Config) -> Config:
        config["old_key"] = {"type": "str", "help": "Team", "default": "nobody"}
        return config

    edit_config(template, ask_old_key)
    (source / "TEAM.md.jinja").write_text("Owned by {{ old_key }}.\n")
    (source / f"{NOTES}.jinja").write_text("Notes on {{ distribution_name }}.\n")
    release(template, BASE)

    def rename_to_new_key(config: Config) -> Config:
        renamed = {"new_key" if k == "old_key" else k: v for k, v in config.items()}
        renamed["_migrations"] = [
            migration(
                "rename_answer.py",
                "old_key",
                "new_key",
                "--answers-file",
                "{{ _copier_conf.answers_file }}",
                stage="before",
            ),
            migration("move_file.py", moved_from, moved_to, *OLD_RENDER),
            migration("move_file.py", NOTES, MOVED_NOTES, *OLD_RENDER),
            migration("keep_edited.py", removed_edited, removed_untouched, *OLD_RENDER),
        ]
        return renamed

    edit_config(template, rename_to_new_key)
    (source / "TEAM.md.jinja").write_text("Owned by {{ new_key }}.\n")
    git(template, "mv", f"template/{moved_from}", f"template/{moved_to}")
    (source / "docs").mkdir()
    git(template, "mv", f"template/{NOTES}.jinja", f"template/{MOVED_NOTES}.jinja")
    moved = source / moved_to
    moved.write_text(f"# Moved from {moved_from} in {MAJOR}.\n" + moved.read_text())
    git(
        template,
        "rm",
        "-q",
        f"template/{removed_edited}",
        f"template/{removed_untouched}",
    )
    release(template, MAJOR)

    append(source / "TEAM.md.jinja", "Ask them first.\n")
    release(template, AFTER_MAJOR)
    return Migrating(
        template, (moved_from, moved_to), removed_edited, removed_untouched
    )


@dataclass
class Migrated:
    package: Path
    refused: subprocess.CompletedProcess[str]
    status_after_refusal: str


@pytest.fixture(scope="module")
def migrated(
    migrating: Migrating, tmp_path_factory: pytest.TempPathFactory
) -> Migrated:
    package = generate(
        migrating.template,
        tmp_path_factory.mktemp("migrated") / "pkg",
        BASE,
        old_key="platform",
    )
    moved_from, _ = migrating.moved
    append(package / moved_from, "\n\ndef test_author_addition() -> None:\n    pass\n")
    append(package / migrating.removed_edited, "\n# author: still needed\n")
    append(package / NOTES, "Written by the author.\n")
    commit(package, "Author's work")

    refused = copier_cli(
        "update", "--defaults", "--skip-answered", "--vcs-ref", MAJOR, cwd=package
    )
    status_after_refusal = status(package)
    update(package, MAJOR, f"{BASE} -> {MAJOR}, four migrations", unsafe=True)
    return Migrated(package, refused, status_after_refusal)


def test_an_update_that_crosses_a_migration_needs_trust(migrated: Migrated) -> None:
    assert migrated.refused.returncode != 0
    output = migrated.refused.stderr + migrated.refused.stdout
    assert "unsafe feature: migrations" in output and "--trust" in output
    assert migrated.status_after_refusal == ""  # refused before touching anything


def test_a_renamed_answer_is_carried(migrated: Migrated) -> None:
    recorded = answers(migrated.package)
    assert recorded["new_key"] == "platform"
    assert "old_key" not in recorded
    assert recorded["_commit"] == MAJOR
    assert (migrated.package / "TEAM.md").read_text() == "Owned by platform.\n"


def test_a_moved_file_takes_the_authors_edits_along(
    migrating: Migrating, migrated: Migrated
) -> None:
    moved_from, moved_to = migrating.moved
    assert not (migrated.package / moved_from).exists()
    moved = (migrated.package / moved_to).read_text()
    assert moved.startswith(f"# Moved from {moved_from} in {MAJOR}.\n")  # template's
    assert "def test_author_addition() -> None:" in moved  # author's
    assert f"D  {moved_from}" in status(migrated.package).splitlines()


def test_a_moved_rendered_file_takes_the_authors_edits_along(
    migrated: Migrated,
) -> None:
    # No verbatim source to merge from: the new render stands in for the old one,
    # exact because MAJOR moved the file without changing it.
    assert not (migrated.package / NOTES).exists()
    assert (migrated.package / MOVED_NOTES).read_text() == (
        "Notes on protean-acme-broker.\nWritten by the author.\n"
    )


def test_a_removed_file_stays_only_if_the_author_changed_it(
    migrating: Migrating, migrated: Migrated
) -> None:
    kept = migrated.package / migrating.removed_edited
    assert "# author: still needed" in kept.read_text()
    assert not (migrated.package / migrating.removed_untouched).exists()


def test_no_residue_after_the_migrations(migrated: Migrated) -> None:
    assert residue(migrated.package) == []


def test_the_migrations_are_idempotent(
    migrating: Migrating, migrated: Migrated
) -> None:
    package, hooks = migrated.package, migrating.template / "hooks"
    moved_from, moved_to = migrating.moved
    old_render = ("--template", str(migrating.template), "--from-ref", BASE)
    before = (
        status(package),
        {
            path: (package / path).read_bytes()
            for path in (
                ".copier-answers.yml",
                moved_to,
                MOVED_NOTES,
                migrating.removed_edited,
            )
        },
    )
    for command in (
        ("rename_answer.py", "old_key", "new_key"),
        ("move_file.py", moved_from, moved_to, *old_render),
        ("move_file.py", NOTES, MOVED_NOTES, *old_render),
        (
            "keep_edited.py",
            migrating.removed_edited,
            migrating.removed_untouched,
            *old_render,
        ),
    ):
        run(sys.executable, hooks / command[0], *command[1:], cwd=package)
    after = status(package), {path: (package / path).read_bytes() for path in before[1]}
    assert after == before


def test_copy_never_needs_trust_and_later_updates_do_not_either(
    migrating: Migrating, tmp_path: Path
) -> None:
    # MAJOR has migrations; copying it runs none, so no --trust.
    package = generate(migrating.template, tmp_path / "pkg", MAJOR, new_key="data")
    update(package, AFTER_MAJOR, f"{MAJOR} -> {AFTER_MAJOR}, no migration applies")
    assert answers(package)["_commit"] == AFTER_MAJOR
    assert (package / "TEAM.md").read_text() == "Owned by data.\nAsk them first.\n"


def test_rename_answer_keeps_a_newer_answer_and_the_rest_of_the_file(
    tmp_path: Path,
) -> None:
    answers_file = tmp_path / ".copier-answers.yml"
    original = (
        "# comment\n_commit: v1.0.0\nextra:\n- a\n- b\nnew_key: kept\n"
        "old_key:\n- dropped\nzeta: '1'\n"
    )
    answers_file.write_text(original)
    script = REPO_ROOT / "hooks/rename_answer.py"
    for _ in range(2):
        run(sys.executable, script, "old_key", "new_key", cwd=tmp_path)
        assert answers_file.read_text() == (
            "# comment\n_commit: v1.0.0\nextra:\n- a\n- b\nnew_key: kept\nzeta: '1'\n"
        )


# -- the template's real history ---------------------------------------------------


def test_no_real_migration_falls_between_the_tags_used_here() -> None:
    """The real `_migrations` must not fire on the updates these tests make."""
    config = yaml.safe_load((REPO_ROOT / "copier.yml").read_text())
    for entry in config.get("_migrations") or []:
        assert "version" in entry, (
            f"{entry}: without `version:` every update needs --trust"
        )
        assert Version(entry["version"]) <= Version(BASE), (
            f"migration {entry['version']} is above {BASE}: raise this module's tags"
        )


def test_every_hook_script_is_stdlib_only() -> None:
    allowed = set(sys.stdlib_module_names) | {"_migration"}
    for script in (REPO_ROOT / "hooks").glob("*.py"):
        imported = re.findall(r"^(?:from|import) ([\w.]+)", script.read_text(), re.M)
        assert {name.split(".")[0] for name in imported} <= allowed, script.name
