"""The Kafka variant, installed non-editable, passes its whole suite on real Kafka."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import (
    Stopwatch,
    check_cluster_module,
    check_lint_types_and_build,
    check_the_whole_suite,
    make_venv,
    render,
    run_generated_tests,
    with_dev_tools,
)

pytestmark = [pytest.mark.package, pytest.mark.kafka]


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
    bin_dir = make_venv(
        tmp_path / "venv", *with_dev_tools(kafka_package), "build", "twine"
    )
    check_lint_types_and_build(bin_dir, kafka_package, tmp_path / "dist")


def test_the_kafka_suite_passes_on_its_own_kafka_with_nothing_skipped(
    kafka_package: Path, tmp_path: Path, stopwatch: Stopwatch
) -> None:
    """The newest Protean; the floor (Protean 0.15.0, the lowest confluent-kafka)
    runs the same suite in tests/test_install_paths.py."""
    skipped = check_the_whole_suite(
        kafka_package, "KAFKA_BOOTSTRAP_SERVERS", "kafka.Kafka", tmp_path, stopwatch
    )
    assert "test_restart.py" not in " ".join(skipped)


def test_the_cluster_fault_tests_run_when_asked_and_pass_on_three_nodes(
    kafka_package: Path, tmp_path: Path, stopwatch: Stopwatch
) -> None:
    check_cluster_module(kafka_package, "kafka", "kafka.Kafka", tmp_path, stopwatch)


def test_without_a_jdk_kafka_tests_say_how_to_get_a_broker(
    kafka_package: Path, tmp_path: Path
) -> None:
    bin_dir = make_venv(tmp_path / "venv", *with_dev_tools(kafka_package))
    command = [
        str(bin_dir / "pytest"), "-q", "-rs", "-p", "no:cacheprovider",
        "tests/test_registration.py", "tests/kafka/test_restart.py",
    ]  # fmt: skip
    # PATH holds the venv alone: no java, no mvn.
    env = {"PATH": str(bin_dir), "HOME": str(Path.home()), "JAVA_HOME": ""}

    def pytest_output(ci: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command, cwd=kafka_package, env={**env, "CI": ci},
            capture_output=True, text=True, check=False,
        )  # fmt: skip

    skipping = pytest_output(ci="")
    assert skipping.returncode == 0, skipping.stdout
    assert "python -m tests.kafka.kafka_server start" in skipping.stdout
    assert "docker compose up -d" in skipping.stdout
    assert "KAFKA_BOOTSTRAP_SERVERS=localhost:9092" in skipping.stdout
    assert "the restart test starts a Kafka node of its own" in skipping.stdout
    failing = pytest_output(ci="true")
    assert failing.returncode == 1, failing.stdout
    assert "In CI integration tests must run" in failing.stdout


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
    bin_dir = make_venv(tmp_path / "venv", *with_dev_tools(package))
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
