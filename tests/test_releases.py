"""Template versions come from CHANGELOG.md: `.ci/tag_releases.py` tags each
release on its commit, and Copier then records and moves between those tags."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT, TEMPLATE_FILES, git

SCRIPT = REPO_ROOT / ".ci" / "tag_releases.py"
COPIER = Path(sys.executable).parent / "copier"
HEADER = "# Changelog\n\n## [Unreleased]\n"


def commit(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(
        repo,
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@e.x",
        "commit",
        "--allow-empty",
        "-qm",
        message,
    )
    return git(repo, "rev-parse", "HEAD")


def release(repo: Path, version: str, message: str) -> str:
    """One commit that moves the unreleased entries under `## [version]`."""
    changelog = repo / "CHANGELOG.md"
    text = changelog.read_text() if changelog.exists() else HEADER
    changelog.write_text(
        text.replace("## [Unreleased]\n", f"## [Unreleased]\n\n## [{version}]\n", 1)
    )
    return commit(repo, message)


def tag_releases(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, SCRIPT, "--root", repo, *args],
        capture_output=True,
        text=True,
        check=False,
    )


def tags(repo: Path) -> dict[str, str]:
    return {
        tag: git(repo, "rev-list", "-n", "1", tag)
        for tag in git(repo, "tag", "--list").split()
    }


@pytest.fixture
def history(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A repository with two releases and work after each of them."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "CHANGELOG.md").write_text(HEADER)
    commit(repo, "start")
    released = {"v0.1.0": release(repo, "0.1.0", "Release 0.1.0")}
    (repo / "feature.txt").write_text("more\n")
    commit(repo, "feature")
    released["v0.2.0"] = release(repo, "0.2.0", "Release 0.2.0")
    (repo / "feature.txt").write_text("unreleased\n")
    commit(repo, "unreleased work")
    return repo, released


def test_each_release_is_tagged_on_the_commit_that_made_it(
    history: tuple[Path, dict[str, str]],
) -> None:
    repo, released = history
    checked = tag_releases(repo, "--check")
    assert checked.returncode == 1
    assert "v0.2.0" in checked.stdout and "missing" in checked.stdout
    assert tags(repo) == {}

    created = tag_releases(repo)
    assert created.returncode == 0, created.stderr
    assert tags(repo) == released

    again = tag_releases(repo, "--check")
    assert again.returncode == 0
    assert again.stdout.count("tagged") == 2


def test_a_tag_on_another_commit_is_never_moved(
    history: tuple[Path, dict[str, str]],
) -> None:
    repo, released = history
    git(repo, "tag", "v0.1.0", released["v0.2.0"])
    refused = tag_releases(repo)
    assert refused.returncode == 2
    assert "v0.1.0 is on" in refused.stderr and "never moved" in refused.stderr
    assert tags(repo) == {"v0.1.0": released["v0.2.0"]}


def test_versions_must_be_listed_newest_first(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "CHANGELOG.md").write_text(HEADER + "\n## [0.1.0]\n\n## [0.2.0]\n")
    commit(repo, "both")
    refused = tag_releases(repo)
    assert refused.returncode == 2
    assert "newest first" in refused.stderr


def test_this_repository_names_its_releases_newest_first() -> None:
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        from tag_releases import versions  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(SCRIPT.parent))
    listed = versions((REPO_ROOT / "CHANGELOG.md").read_text())
    assert listed and listed[-1] == "0.1.0"


def copier(cwd: Path, *args: str) -> str:
    result = subprocess.run(
        [COPIER, *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"copier {' '.join(args)}:\n{result.stderr}"
    return result.stdout + result.stderr


def recorded(package: Path) -> str:
    answers = yaml.safe_load((package / ".copier-answers.yml").read_text())
    return str(answers["_commit"])


@pytest.fixture
def template_history(tmp_path: Path) -> Path:
    """This template released twice: 0.2.0 adds a line to the generated README."""
    repo = tmp_path / "template"
    repo.mkdir()
    for name in TEMPLATE_FILES:
        source = REPO_ROOT / name
        copy = shutil.copytree if source.is_dir() else shutil.copy2
        copy(source, repo / name)
    git(repo, "init", "-q", "-b", "main")
    (repo / "CHANGELOG.md").write_text(HEADER)
    release(repo, "0.1.0", "Release 0.1.0")
    with (repo / "template" / "README.md.jinja").open("a") as readme:
        readme.write("\nNew in 0.2.0.\n")
    release(repo, "0.2.0", "Release 0.2.0")
    return repo


def test_copier_records_and_moves_between_tagged_versions(
    template_history: Path, tmp_path: Path
) -> None:
    template = template_history
    data = ["--defaults", "--data", "broker_name=acme"]

    # Untagged: Copier falls back to HEAD, and updating still works.
    copier(tmp_path, "copy", *data, str(template), "untagged")
    head = git(template, "rev-parse", "HEAD")
    assert head.startswith(recorded(tmp_path / "untagged"))
    commit_package(tmp_path / "untagged")
    copier(tmp_path / "untagged", "update", "--skip-answered", "--defaults")

    assert tag_releases(template).returncode == 0
    copier(tmp_path, "copy", *data, "--vcs-ref", "v0.1.0", str(template), "pkg")
    package = tmp_path / "pkg"
    assert recorded(package) == "v0.1.0"
    assert "New in 0.2.0." not in (package / "README.md").read_text()
    commit_package(package)

    assert "latest version is 0.2.0" in copier(package, "check-update")
    copier(package, "update", "--skip-answered", "--defaults")
    assert recorded(package) == "v0.2.0"
    assert "New in 0.2.0." in (package / "README.md").read_text()

    copier(tmp_path, "copy", *data, str(template), "newest")
    assert recorded(tmp_path / "newest") == "v0.2.0"


def commit_package(package: Path) -> None:
    git(package, "init", "-q", "-b", "main")
    commit(package, "generated")
