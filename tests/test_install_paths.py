"""Package tier: the generated README's install commands work as written, the
release workflow builds what `python -m build` builds, and the lowest releases
the package admits pass its tests."""

from __future__ import annotations

import re
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.backends import ALL_BACKENDS, Backend
from tests.conftest import make_venv, render, run, shell_blocks, uv

pytestmark = pytest.mark.package


def readme_blocks(package: Path, section: str) -> list[str]:
    """The shell blocks of one README section, in order."""
    readme = (package / "README.md").read_text()
    body = readme.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return shell_blocks(body)


def run_block(block: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a README block as a person pastes it: line by line, stopping at an error."""
    return run("bash", "-euo", "pipefail", "-c", block, cwd=cwd, env=env)


@pytest.fixture(scope="module")
def skeleton(template_src: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render(
        template_src, tmp_path_factory.mktemp("paths") / "protean-acme-broker"
    )


def fresh_copy(package: Path, destination: Path) -> Path:
    return Path(shutil.copytree(package, destination / package.name))


QUICK_TESTS = "tests/test_registration.py tests/conformance/test_publish.py"
"""What a server backend's install paths run, on the warm server: the entry
point and a round trip are what an install can break; the whole suite runs in
tests/test_server_packages.py."""


@pytest.fixture(params=ALL_BACKENDS)
def made(
    request: pytest.FixtureRequest, template_src: Path, tmp_path: Path
) -> tuple[Path, dict[str, str]]:
    """A backend's package, and the environment its README commands run in."""
    backend: Backend | None = request.param
    if backend is None:
        return render(template_src, tmp_path / "protean-acme-broker"), {}
    package = render(
        template_src,
        tmp_path / f"protean-{backend.name}-broker",
        broker_name=backend.name,
        backend=backend.name,
    )
    return package, {**backend.server(request), "PYTEST_ADDOPTS": QUICK_TESTS}


def test_the_readme_offers_uv_poetry_and_pip(skeleton: Path) -> None:
    uv_block, poetry_block, pip_block, checks = readme_blocks(
        skeleton, "Develop and test"
    )
    assert uv_block.split() == ["uv", "sync", "uv", "run", "pytest"]
    assert "poetry install" in poetry_block
    assert "--group dev" in pip_block
    assert checks.split() == [
        "ruff",
        "check",
        ".",
        "ruff",
        "format",
        "--check",
        ".",
        "mypy",
    ]


@pytest.mark.warm_server
def test_uv_sync_then_uv_run_pytest(made: tuple[Path, dict[str, str]]) -> None:
    package, env = made
    uv_block, _, _, checks = readme_blocks(package, "Develop and test")
    output = run_block(uv_block, package, env)
    assert re.search(r"\d+ passed", output), output[-2000:]
    run_block("\n".join(f"uv run {line}" for line in checks.splitlines()), package)


@pytest.mark.warm_server
def test_the_pip_commands_then_pytest(made: tuple[Path, dict[str, str]]) -> None:
    package, env = made
    pip_block = readme_blocks(package, "Develop and test")[2]
    output = run_block(pip_block, package, env)
    assert re.search(r"\d+ passed", output), output[-2000:]


@pytest.mark.warm_server
def test_poetry_checks_builds_installs_the_dev_group_and_tests(
    made: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    poetry = make_venv(tmp_path / "poetry-venv", "poetry>=2.2") / "poetry"
    package, env = made
    run(poetry, "check", "--strict", cwd=package)
    run(poetry, "build", cwd=package)
    assert sorted(p.suffix for p in (package / "dist").iterdir()) == [".gz", ".whl"]
    # Poetry resolves through PyPI's JSON API, which the package index reachable
    # here does not serve; the simple index holds the same releases.
    with (package / "pyproject.toml").open("a") as project:
        project.write(
            '\n[[tool.poetry.source]]\nname = "index"\n'
            'url = "https://pypi.org/simple/"\npriority = "primary"\n'
        )
    env["POETRY_VIRTUALENVS_IN_PROJECT"] = "true"
    poetry_block = readme_blocks(package, "Develop and test")[1]
    output = run_block(poetry_block.replace("poetry ", f"{poetry} "), package, env)
    assert re.search(r"\d+ passed", output), output[-2000:]


def members(artefact: Path) -> list[str]:
    if artefact.suffix == ".whl":
        return sorted(zipfile.ZipFile(artefact).namelist())
    with tarfile.open(artefact) as sdist:
        return sorted(sdist.getnames())


def test_the_release_workflow_builds_what_python_m_build_builds(
    skeleton: Path, tmp_path: Path
) -> None:
    """release.yml runs `uv build`; it must give the same files as the
    reference PEP 517 front end."""
    package = fresh_copy(skeleton, tmp_path)
    run(uv(), "build", "--out-dir", tmp_path / "uv", package, cwd=package)
    bin_dir = make_venv(tmp_path / "venv", "build")
    run(
        bin_dir / "python",
        "-m",
        "build",
        "--outdir",
        tmp_path / "pypa",
        package,
        cwd=package,
    )
    by_uv = sorted((tmp_path / "uv").glob("*.*[lz]"))  # uv adds a .gitignore
    by_build = sorted((tmp_path / "pypa").iterdir())
    assert [p.name for p in by_uv] == [p.name for p in by_build]
    for ours, theirs in zip(by_uv, by_build, strict=True):
        assert members(ours) == members(theirs), ours.name


@pytest.mark.warm_server
@pytest.mark.parametrize("backend", ALL_BACKENDS)
def test_the_lowest_releases_admitted_pass_the_tests(
    template_src: Path,
    tmp_path: Path,
    backend: Backend | None,
    request: pytest.FixtureRequest,
) -> None:
    """What the generated CI's lowest-direct job runs, on the oldest Python:
    the tests, and mypy against the oldest Protean's type hints. The `slow`
    modules (a server's minutes-long outage) run once, with the newest
    releases, in tests/test_server_packages.py."""
    name = backend.name if backend else "skeleton"
    package = render(template_src, tmp_path / "pkg", backend=name)
    env = {"UV_RESOLUTION": "lowest-direct", "UV_PYTHON": "3.11"}
    if backend:
        env |= backend.server(request)
    run(uv(), "sync", cwd=package, env=env)
    resolved = run(uv(), "pip", "list", "--python", package / ".venv", cwd=package)
    assert re.search(r"^protean\s+0\.15\.0$", resolved, re.MULTILINE), resolved
    pytest_args = ["pytest", "-q", "-m", "not cluster and not slow"]
    output = run(uv(), "run", "--no-sync", *pytest_args, cwd=package, env=env)
    assert re.search(r"\d+ passed", output), output[-2000:]
    run(uv(), "run", "--no-sync", "mypy", cwd=package, env=env)
