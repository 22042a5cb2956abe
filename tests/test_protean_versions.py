"""Protean matrix: the generated tests pass, and the generated code type-checks,
on every release the package allows."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.version import Version

from tests.conftest import (
    make_venv,
    protean_requirement,
    render,
    run,
    run_generated_tests,
    skipped_for_a_capability,
    with_dev_tools,
)

pytestmark = pytest.mark.package

RELEASES = ("0.15.0", "0.16.3", "0.17.1", "0.18.0")

CASES = [
    # The richest tier every release supports, and the tier that needs 0.17.
    ("ordered_messaging", ["blocking_read", "dead_letter_queue"], release)
    for release in RELEASES
] + [("enterprise_streaming", [], release) for release in RELEASES[2:]]


@pytest.mark.parametrize(
    ("tier", "extras", "release"), CASES, ids=[f"{t}-{r}" for t, _, r in CASES]
)
def test_the_skeleton_passes_on_each_allowed_protean_release(
    template_src: Path, tmp_path: Path, tier: str, extras: list[str], release: str
) -> None:
    package = render(
        template_src, tmp_path / "pkg", capability_tier=tier, extra_capabilities=extras
    )
    protean = protean_requirement(package)
    assert release in protean.specifier
    bin_dir = make_venv(
        tmp_path / "venv", *with_dev_tools(package), f"protean=={release}"
    )
    _, skipped = run_generated_tests(bin_dir, package)
    assert all(map(skipped_for_a_capability, skipped)), skipped
    # The generated code type-checks against each release's own hints.
    run(bin_dir / "mypy", cwd=package)


@pytest.mark.parametrize(
    ("tier", "tested"),
    [("reliable_messaging", RELEASES), ("enterprise_streaming", RELEASES[2:])],
)
def test_the_declared_range_starts_and_ends_with_tested_releases(
    template_src: Path, tmp_path: Path, tier: str, tested: tuple[str, ...]
) -> None:
    """The floor is a tested release and nothing newer than the matrix is allowed."""
    package = render(template_src, tmp_path / "pkg", capability_tier=tier)
    protean = protean_requirement(package)
    assert [release for release in RELEASES if release in protean.specifier] == list(
        tested
    )
    floor = min(
        Version(spec.version) for spec in protean.specifier if spec.operator == ">="
    )
    assert str(floor) == tested[0]
    assert "0.19.0" not in protean.specifier
