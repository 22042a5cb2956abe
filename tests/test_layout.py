"""Backends live in folders of their own, and moving them there changed nothing a
user gets; a package rendered from the last release updates to this one cleanly.

The comparison renders the template as two commits of this repository hold it:
the last one before the backends moved into their folders and the one that
finished the move. It needs the repository's history (CI clones it whole).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import (
    BACKENDS,
    REPO_ROOT,
    TEMPLATE_FILES,
    commit_as_new_repository,
    git,
    make_venv,
    render,
    run,
)
from tests.test_oldest_copier import MINIMUM, files
from tests.test_render import MATRIX as RENDER_MATRIX

# The move predates the RabbitMQ backend: both trees render the backends of then.
MATRIX = [(b, t) for b, t in RENDER_MATRIX if b in ("skeleton", "kafka")]

BEFORE_MOVE = "ddf135a15e3cfaf6a4d0be3795b7af30ca0ee9ce"
AFTER_MOVE = "a1e6f78576162cd28abfdafd92557e054053a0ce"
SHARED_FILES = (
    "template/pyproject.toml.jinja",
    "template/README.md.jinja",
    "template/.github/workflows/ci.yml.jinja",
    "template/src/{{package_name}}/settings.py.jinja",
    "template/tests/conftest.py.jinja",
    "template/tests/test_configuration.py.jinja",
)
MARKERS = re.compile(r"^(<<<<<<<|>>>>>>>)( |$)", re.MULTILINE)


def template_at(commit: str, destination: Path) -> Path:
    """The template's files as `commit` holds them, in a fresh one-commit repo."""
    try:
        git(REPO_ROOT, "cat-file", "-e", f"{commit}^{{commit}}")
    except subprocess.CalledProcessError:
        pytest.fail(f"{commit} is not in this clone: the test needs full history")
    destination.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", commit, *TEMPLATE_FILES],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x"], input=archive, cwd=destination, check=True)
    commit_as_new_repository(destination, commit)
    return destination


def tree(package: Path) -> dict[str, bytes]:
    """Every rendered file but the answers and the README (rewritten on purpose)."""
    return {
        name: content
        for name, content in files(package).items()
        if Path(name).name != "README.md"
    }


def test_each_backend_is_a_folder_and_shared_files_take_snippets() -> None:
    template = REPO_ROOT / "template"
    conditional = [
        path.relative_to(template)
        for path in template.rglob("*")
        if "{% if backend" in path.name and "{% if backend" not in str(path.parent)
    ]
    imported = {
        match
        for path in template.rglob("*.jinja")
        for match in re.findall(
            r"import 'template/_snippets/' ~ backend ~ '/([^']+)'", path.read_text()
        )
    }
    for backend in BACKENDS:
        own = [p for p in conditional if f"backend == '{backend}'" in p.name]
        assert 1 <= len(own) <= 3, own
        # Every backend fills in every snippet a shared file imports.
        snippets = {p.name for p in (template / "_snippets" / backend).iterdir()}
        assert snippets == imported
    for shared in SHARED_FILES:
        text = (REPO_ROOT / shared).read_text()
        assert len(re.findall(r"\bbackend\s*==", text)) <= 2, shared


@pytest.fixture(scope="module")
def moved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("layout")
    return template_at(BEFORE_MOVE, root / "before"), template_at(
        AFTER_MOVE, root / "after"
    )


@pytest.mark.parametrize(
    ("backend", "tier"), MATRIX, ids=[f"{b}-{t}" for b, t in MATRIX]
)
def test_the_move_changed_no_generated_file_but_the_readme(
    moved: tuple[Path, Path], tmp_path: Path, backend: str, tier: str
) -> None:
    before, after = (
        tree(
            render(
                source, tmp_path / source.name, backend=backend, capability_tier=tier
            )
        )
        for source in moved
    )
    assert sorted(before) == sorted(after)
    assert [name for name in before if before[name] != after[name]] == []


@pytest.mark.package
def test_the_oldest_copier_renders_the_moved_layout_the_same(
    moved: tuple[Path, Path], tmp_path: Path
) -> None:
    copier = make_venv(tmp_path / "venv", f"copier=={MINIMUM}") / "copier"
    _, after = moved
    for backend, tier in MATRIX:
        name = f"{backend}-{tier}"
        run(
            copier, "copy", "--defaults", "--vcs-ref", "HEAD",
            "--data", "broker_name=acme", "--data", f"backend={backend}",
            "--data", f"capability_tier={tier}", after, tmp_path / "oldest" / name,
            cwd=tmp_path,
        )  # fmt: skip
        pinned = render(
            after, tmp_path / "pinned" / name, backend=backend, capability_tier=tier
        )
        assert tree(tmp_path / "oldest" / name) == tree(pinned), name


# -- from the last release to this one --------------------------------------------


def released_template(destination: Path) -> tuple[Path, str, str]:
    """A clone of this repository tagged from CHANGELOG.md, with the working
    tree's template committed on top as the next version. Returns the clone, the
    newest release whose template differs from the working tree's, and the tag of
    the working tree's."""
    run("git", "clone", "-q", REPO_ROOT, destination, cwd=destination.parent)
    tagging = (sys.executable, REPO_ROOT / ".ci" / "tag_releases.py")
    run(*tagging, "--root", destination, cwd=destination)
    for name in TEMPLATE_FILES:
        run("rm", "-rf", destination / name, cwd=destination)
        run("cp", "-r", REPO_ROOT / name, destination / name, cwd=destination)
    for cache in destination.rglob("__pycache__"):
        run("rm", "-rf", cache, cwd=destination)
    git(destination, "add", "-A")
    git(destination, "commit", "-qm", "the working tree", "--allow-empty")
    releases = sorted(
        git(destination, "tag", "--list", "v*").split(),
        key=lambda tag: tuple(int(part) for part in tag[1:].split(".")),
    )
    last = next(
        tag
        for tag in reversed(releases)
        if git(destination, "diff", "--stat", tag, "HEAD", "--", *TEMPLATE_FILES)
    )
    major, minor, _ = (int(part) for part in releases[-1][1:].split("."))
    following = f"v{major}.{minor + 1}.0"
    git(destination, "tag", following)
    return destination, last, following


# Backends the last release has; one added since cannot be rendered from it.
RELEASED_BACKENDS = [b for b in BACKENDS if b not in ("rabbitmq", "sqs")]


@pytest.mark.parametrize("backend", RELEASED_BACKENDS)
def test_a_package_from_the_last_release_updates_keeping_the_authors_edits(
    tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "Package Author")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "author@example.com")
    template, last, following = released_template(tmp_path / "template")
    package = render(
        template, tmp_path / "protean-acme-broker", vcs_ref=last, backend=backend
    )
    git(package, "init", "-q", "-b", "main")
    git(package, "add", "-A")
    git(package, "commit", "-qm", f"Generate from {last}")

    broker = package / "src/protean_acme/broker.py"
    edited = broker.read_text().replace(
        '\n"""\n', '\n"""\n\n# Acme: reviewed by the messaging team.\n', 1
    )
    broker.write_text(edited)
    readme = package / "README.md"
    readme.write_text(
        readme.read_text().replace(
            "## Install\n", "Maintained by the Acme messaging team.\n\n## Install\n", 1
        )
    )
    (package / "tests" / "test_author.py").write_text(
        "def test_author_addition() -> None:\n    assert 1 + 1 == 2\n"
    )
    git(package, "add", "-A")
    git(package, "commit", "-qm", "Author's work")

    update = ("update", "--defaults", "--skip-answered", "--vcs-ref", following)
    run(sys.executable, "-m", "copier", *update, cwd=package)
    assert git(package, "ls-files", "--unmerged") == ""
    texts = [
        p.read_text(errors="replace")
        for p in package.rglob("*")
        if p.is_file() and ".git" not in p.parts
    ]
    assert not [t for t in texts if MARKERS.search(t)]
    assert not list(package.rglob("*.rej"))
    assert "# Acme: reviewed by the messaging team." in broker.read_text()
    readme_text = readme.read_text()
    assert "Maintained by the Acme messaging team." in readme_text
    assert "## What it guarantees" in readme_text  # the new README arrived
    assert (package / "tests" / "test_author.py").is_file()
    answers = yaml.safe_load((package / ".copier-answers.yml").read_text())
    assert answers["_commit"] == following
