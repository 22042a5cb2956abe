"""Package tier: each rendered package installs non-editable and passes its checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import TIERS, Stopwatch, make_venv, render, run

pytestmark = pytest.mark.package


@pytest.mark.parametrize("tier", TIERS)
def test_a_skeleton_package_installs_and_passes_its_own_checks(
    template_src: Path, tmp_path: Path, tier: str, stopwatch: Stopwatch
) -> None:
    with stopwatch.step("render"):
        package = render(
            template_src, tmp_path / "pkg", backend="skeleton", capability_tier=tier
        )
    with stopwatch.step("install"):
        # A wheel built from the sdist, installed non-editable, is what users get.
        bin_dir = make_venv(tmp_path / "venv", f"{package}[test]", "build", "twine")
    with stopwatch.step("generated tests"):
        output = run(bin_dir / "pytest", "-q", "-p", "no:cacheprovider", cwd=package)
    assert " passed" in output and "failed" not in output
    skipped_reasons = [
        line for line in output.splitlines() if line.startswith("SKIPPED")
    ]
    assert all("does not declare" in line for line in skipped_reasons), skipped_reasons
    with stopwatch.step("ruff, mypy"):
        run(bin_dir / "ruff", "check", ".", cwd=package)
        run(bin_dir / "ruff", "format", "--check", ".", cwd=package)
        run(bin_dir / "mypy", "--strict", cwd=package)
    with stopwatch.step("build, twine check"):
        run(
            bin_dir / "python",
            "-m",
            "build",
            "--outdir",
            tmp_path / "dist",
            package,
            cwd=package,
        )
        artefacts = sorted(path.name for path in (tmp_path / "dist").iterdir())
        assert sorted(name.rsplit(".", 1)[-1] for name in artefacts) == ["gz", "whl"]
        run(
            bin_dir / "twine",
            "check",
            "--strict",
            *(tmp_path / "dist").iterdir(),
            cwd=package,
        )
