"""Protean's own generic broker tests, run by each generated package's
`python -m tests.protean_suite` against its broker, on every admitted Protean
release whose source distribution ships them.

Protean's sdist carries `tests/adapters/broker/generic/` from 0.16 (0.15.0's
has no tests). Each package fetches the sdist of the Protean installed in its
environment; the session shares one download per release. A run passes when
every test passes, is skipped because the broker does not declare its tier, or
is one of the package's strict expected failures.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.backends import SERVER_BACKENDS, Backend
from tests.conftest import (
    TIERS,
    Stopwatch,
    make_venv,
    protean_requirement,
    render,
    run,
    uv,
    with_dev_tools,
)

pytestmark = pytest.mark.package

SHIPPING = ("0.16.3", "0.17.1", "0.18.0")
"""The admitted releases whose sdist ships the generic broker tests."""

SUMMARY = re.compile(r"(\d+) (passed|failed|skipped|xfailed|xpassed|errors?)\b")


@pytest.fixture(scope="session")
def sdist_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the packages' runners keep Protean's sdists, shared by the session."""
    return tmp_path_factory.mktemp("protean-suite-cache")


def run_protean_suite(
    bin_dir: Path, package: Path, cache: Path, env: dict[str, str] | None = None
) -> dict[str, int]:
    """`python -m tests.protean_suite` in the package; its outcome counts."""
    output = run(
        bin_dir / "python",
        *("-m", "tests.protean_suite", "-q", "-rfEsxX", "-p", "no:randomly"),
        cwd=package,
        env={"PROTEAN_SUITE_CACHE": str(cache), **(env or {})},
    )
    summary = output.strip().splitlines()[-1]
    counts = {kind.rstrip("s") if kind.startswith("error") else kind: int(n)
              for n, kind in SUMMARY.findall(summary)}  # fmt: skip
    assert counts.get("passed", 0) > 50, output[-4000:]
    for bad in ("failed", "error", "xpassed"):
        assert not counts.get(bad), output[-6000:]
    skipped = [line for line in output.splitlines() if line.startswith("SKIPPED")]
    assert all("does not declare" in line for line in skipped), skipped
    # The tests that build a Domain of their own find the runner's domain.toml.
    assert "No configuration file found" not in output, output[-4000:]
    return counts


def install_protean(bin_dir: Path, release: str, package: Path) -> None:
    run(uv(), "pip", "install", "-q", "--python", bin_dir / "python",
        f"protean=={release}", cwd=package)  # fmt: skip


def check_every_release(
    package: Path,
    tmp_path: Path,
    cache: Path,
    stopwatch: Stopwatch,
    env: dict[str, str] | None = None,
    releases: tuple[str, ...] = SHIPPING,
) -> dict[str, dict[str, int]]:
    """One environment for the package; Protean swapped in it per release."""
    admitted = [r for r in releases if r in protean_requirement(package).specifier]
    with stopwatch.step("install"):
        bin_dir = make_venv(
            tmp_path / "venv", *with_dev_tools(package), f"protean=={admitted[0]}"
        )
    outcomes = {}
    for release in admitted:
        install_protean(bin_dir, release, package)
        with stopwatch.step(f"Protean {release}'s generic broker tests"):
            outcomes[release] = run_protean_suite(bin_dir, package, cache, env)
        print(f"{package.name} on Protean {release}: {outcomes[release]}")
    return outcomes


@pytest.mark.parametrize("tier", TIERS)
def test_protean_generic_broker_tests_hold_on_the_skeleton(
    template_src: Path,
    tmp_path: Path,
    sdist_cache: Path,
    tier: str,
    stopwatch: Stopwatch,
) -> None:
    package = render(template_src, tmp_path / "pkg", capability_tier=tier)
    # Every release on the default tier; the others on the newest, since what
    # differs between releases is Protean's, and what differs between tiers is
    # the package's.
    releases = SHIPPING if tier == "reliable_messaging" else SHIPPING[-1:]
    outcomes = check_every_release(
        package, tmp_path, sdist_cache, stopwatch, releases=releases
    )
    assert list(outcomes) == list(releases)
    if tier == "basic_pubsub":
        # No consumer groups: every tier above is skipped, never run.
        assert all(o.get("skipped", 0) > 20 for o in outcomes.values()), outcomes


def check_a_server_backend(
    template_src: Path,
    tmp_path: Path,
    sdist_cache: Path,
    stopwatch: Stopwatch,
    backend: str,
    env: dict[str, str],
    releases: tuple[str, ...] = SHIPPING,
) -> None:
    """Protean's generic tests on ``releases``, against the server in ``env``.
    The tests take that server as a fixture, so it starts, and warms, before
    the package is rendered and installed: a fresh Kafka node still loading its
    group coordinator fails Protean's first `get_next`."""
    package = render(
        template_src, tmp_path / f"protean-{backend}-broker", broker_name=backend,
        backend=backend,
    )  # fmt: skip
    outcomes = check_every_release(
        package, tmp_path, sdist_cache, stopwatch, env=env, releases=releases
    )
    assert list(outcomes) == list(releases)
    # memory_estimate_bytes, InlineBroker's size of its own store, means
    # nothing for a server's broker: a deliberate difference, on every release
    # (the backend's snippet lists it, with its reason).
    assert all(o.get("xfailed") == 1 for o in outcomes.values()), outcomes


def test_a_protean_release_without_the_tests_says_so(
    template_src: Path, tmp_path: Path, sdist_cache: Path
) -> None:
    package = render(template_src, tmp_path / "pkg")
    bin_dir = make_venv(tmp_path / "venv", *with_dev_tools(package), "protean==0.15.0")
    output = run(
        bin_dir / "python", "-m", "tests.protean_suite", cwd=package,
        env={"PROTEAN_SUITE_CACHE": str(sdist_cache)},
    )  # fmt: skip
    assert "Protean 0.15.0's source distribution ships no generic broker tests" in (
        output
    )


@pytest.mark.warm_server
@pytest.mark.parametrize("backend", SERVER_BACKENDS)
def test_protean_generic_broker_tests_hold_on_each_server_backend(
    backend: Backend,
    template_src: Path,
    tmp_path: Path,
    sdist_cache: Path,
    stopwatch: Stopwatch,
    request: pytest.FixtureRequest,
) -> None:
    check_a_server_backend(
        template_src, tmp_path, sdist_cache, stopwatch, backend.name,
        backend.server(request),
        SHIPPING if backend.every_protean_release else SHIPPING[-1:],
    )  # fmt: skip
