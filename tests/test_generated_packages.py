"""Package tier: each rendered package installs non-editable and passes its checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import (
    TIERS,
    Stopwatch,
    check_lint_types_and_build,
    make_venv,
    render,
    run_generated_tests,
    skipped_for_a_capability,
    with_dev_tools,
)

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
        bin_dir = make_venv(
            tmp_path / "venv", *with_dev_tools(package), "build", "twine"
        )
    with stopwatch.step("generated tests"):
        _, skipped = run_generated_tests(bin_dir, package)
    assert all(map(skipped_for_a_capability, skipped)), skipped
    with stopwatch.step("ruff, mypy, build, twine check"):
        check_lint_types_and_build(bin_dir, package, tmp_path / "dist")
