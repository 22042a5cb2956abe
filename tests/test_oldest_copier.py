"""The oldest Copier that `_min_copier_version` admits works as the pinned one does.

Older releases fail on this template (before 9.8 a multi-select question's
templated default stays a string; `copier check-update`, which both READMEs
use, arrives in 9.13), so the floor is a tested claim, not a guess.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT, git, render, run, uv

MINIMUM: str = yaml.safe_load((REPO_ROOT / "copier.yml").read_text())[
    "_min_copier_version"
]


def files(package: Path) -> dict[str, bytes]:
    """Every rendered file but the answers, which name the Copier version."""
    return {
        str(path.relative_to(package)): path.read_bytes()
        for path in sorted(package.rglob("*"))
        if path.is_file() and path.name != ".copier-answers.yml"
    }


@pytest.mark.package
def test_the_oldest_copier_admitted_renders_and_checks_for_updates(
    template_src: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    run(uv(), "venv", "-q", venv, cwd=tmp_path)
    install = ("pip", "install", "-q", "--python", venv, f"copier=={MINIMUM}")
    run(uv(), *install, cwd=tmp_path)
    copier = venv / "bin" / "copier"
    assert MINIMUM in run(copier, "--version", cwd=tmp_path)
    for backend in ("skeleton", "kafka", "rabbitmq"):
        old = tmp_path / f"oldest-{backend}"
        run(
            copier, "copy", "--defaults", "--vcs-ref", "HEAD",
            "--data", "broker_name=acme", "--data", f"backend={backend}",
            template_src, old, cwd=tmp_path,
        )  # fmt: skip
        pinned = render(template_src, tmp_path / f"pinned-{backend}", backend=backend)
        assert files(old) == files(pinned)
    git(old, "init", "-q")
    git(old, "add", "-A")
    git(old, "-c", "user.name=t", "-c", "user.email=t@e.x", "commit", "-qm", "new")
    checked = run(copier, "check-update", "--output-format", "json", cwd=old)
    assert '"update_available": false' in checked
