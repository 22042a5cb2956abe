"""The Kafka variant, installed non-editable, passes its whole suite on real Kafka."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import (
    Stopwatch,
    check_lint_types_and_build,
    make_venv,
    protean_requirement,
    render,
    run_generated_tests,
)

pytestmark = [pytest.mark.package, pytest.mark.kafka]

# The floor the package declares and the newest release.
RELEASES = ("0.15.0", "0.18.0")


@pytest.fixture(scope="module")
def kafka_package(template_src: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render(
        template_src,
        tmp_path_factory.mktemp("kafka") / "protean-kafka-broker",
        broker_name="kafka",
        backend="kafka",
    )


def test_the_kafka_package_is_lint_and_type_clean_and_builds(
    kafka_package: Path, tmp_path: Path
) -> None:
    bin_dir = make_venv(tmp_path / "venv", f"{kafka_package}[test]", "build", "twine")
    check_lint_types_and_build(bin_dir, kafka_package, tmp_path / "dist")


@pytest.mark.parametrize("release", RELEASES)
def test_the_kafka_suite_passes_against_real_kafka_with_nothing_skipped(
    kafka_package: Path,
    kafka_bootstrap: str,
    tmp_path: Path,
    release: str,
    stopwatch: Stopwatch,
) -> None:
    protean = protean_requirement(kafka_package)
    assert release in protean.specifier
    with stopwatch.step("install"):
        bin_dir = make_venv(
            tmp_path / "venv", f"{kafka_package}[test]", f"protean=={release}"
        )
    with stopwatch.step("generated tests on Kafka"):
        _, skipped = run_generated_tests(
            bin_dir,
            kafka_package,
            env={
                "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                # The restart test starts and stops a node of its own.
                "KAFKA_HARNESS_DIR": str(Path(__file__).parent),
                "CI": "true",
            },
        )
    # The default Kafka answers declare everything the adapter implements except
    # partition leases, so only the partitioning tests may skip.
    assert all("STREAM_PARTITIONING" in line for line in skipped), skipped


def test_a_lower_tier_declares_less_and_its_tests_follow(
    template_src: Path, kafka_bootstrap: str, tmp_path: Path
) -> None:
    package = render(
        template_src,
        tmp_path / "protean-kafka-broker",
        broker_name="kafka",
        backend="kafka",
        capability_tier="simple_queuing",
        extra_capabilities=[],
    )
    bin_dir = make_venv(tmp_path / "venv", f"{package}[test]")
    _, skip_lines = run_generated_tests(
        bin_dir,
        package,
        "tests/conformance",
        "tests/test_registration.py",
        env={"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "CI": "true"},
    )
    skipped = " ".join(skip_lines)
    for undeclared in (
        "ACK_NACK",
        "BLOCKING_READ",
        "DEAD_LETTER_QUEUE",
        "MESSAGE_ORDERING",
    ):
        assert f"does not declare {undeclared}" in skipped
    assert "does not declare CONSUMER_GROUPS" not in skipped
