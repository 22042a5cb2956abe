"""The generated conformance suite, run against Protean's own brokers.

Plugin authors inherit the suite, so it is checked against brokers this project
did not write: Protean's `inline` broker and its `redis` broker (a real
`redis-server`), on every Protean release the template supports. Each test
passes there, or is marked in the generated code as going beyond Protean's
contract (`beyond_protean`) or as hitting an upstream defect (`protean_defect`),
with the reason; the run turns those marks into strict expected failures.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import make_venv, redis_server, render, run
from tests.test_protean_versions import RELEASES

pytestmark = pytest.mark.reference

PLUGIN_DIR = Path(__file__).parent / "reference"
PROVIDERS = ("inline", "redis")


@pytest.fixture(scope="module")
def redis_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throw-away `redis-server` for Protean's Redis broker."""
    try:
        with redis_server(tmp_path_factory.mktemp("redis")) as uri:
            yield uri
    except RuntimeError as error:
        pytest.fail(str(error))


@pytest.fixture(scope="module")
def suite(template_src: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated package: its `tests/` run against Protean's providers, and
    its broker against Protean's tooling."""
    renders = tmp_path_factory.mktemp("reference")
    suite = render(
        template_src,
        renders / "pkg",
        # The richest tier every supported release accepts.
        capability_tier="ordered_messaging",
        extra_capabilities=["blocking_read", "dead_letter_queue"],
    )
    # Partition tests are rendered only where leases are declared; they join
    # the suite so Protean's Redis broker, which declares them, is held to them.
    leases = render(
        template_src, renders / "leases", capability_tier="enterprise_streaming"
    )
    partitioning = Path("tests/conformance/test_partitioning.py")
    shutil.copyfile(leases / partitioning, suite / partitioning)
    return suite


@pytest.fixture(scope="module", params=RELEASES)
def release_bin(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    suite: Path,
) -> Path:
    release: str = request.param
    return make_venv(
        tmp_path_factory.mktemp(f"protean-{release}") / "venv",
        str(suite),
        f"protean=={release}",
        "redis>=5",
        "pytest>=8",
        # Protean's Observatory and status modules, fed by the tooling tests.
        "fastapi",
        "uvicorn",
        "jinja2",
    )


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_conformance_suite_holds_on_protean_brokers(
    suite: Path, release_bin: Path, provider: str, redis_uri: str
) -> None:
    output = run(
        release_bin / "pytest",
        "-q",
        "-rxXs",
        "-p",
        "no:cacheprovider",
        "-p",
        "protean_reference_plugin",
        "tests/conformance",
        cwd=suite,
        env={
            "PYTHONPATH": str(PLUGIN_DIR),
            "PROTEAN_REFERENCE_PROVIDER": provider,
            "PROTEAN_REFERENCE_REDIS_URI": redis_uri,
        },
    )
    summary = output.strip().splitlines()[-1]
    assert " passed" in summary, summary
    # Strict expected failures only: `xfailed` is fine, `failed` and `error` not.
    assert not re.search(r"\b(failed|errors?|xpassed)\b", summary), output[-4000:]
    skipped = [line for line in output.splitlines() if line.startswith("SKIPPED")]
    # Only capabilities decide a skip: one the broker lacks, or (for the tests
    # of what an undeclared capability answers) one it declares.
    assert all(
        re.search(r"does not declare|the broker declares", line) for line in skipped
    ), skipped
    assert "deselected" not in summary, "the Observatory test did not run"


def test_protean_tooling_reports_a_generated_brokers_figures(
    suite: Path, release_bin: Path
) -> None:
    """The generated broker itself, with Protean's server extra installed (the
    generated package's own environment may lack it, and then deselects it)."""
    output = run(
        release_bin / "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/conformance/test_protean_tooling.py",
        cwd=suite,
    )
    summary = output.strip().splitlines()[-1]
    assert summary.startswith("2 passed"), output[-4000:]
