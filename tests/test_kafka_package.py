"""The Kafka variant, installed non-editable, passes its whole suite on real Kafka."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import (
    Stopwatch,
    check_a_lower_tier,
    check_cluster_module,
    check_lint_types_and_build,
    check_the_whole_suite,
    make_venv,
    render,
    run_without_a_server,
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
    # PATH holds the venv alone: no java, no mvn.
    env = {"PATH": str(bin_dir), "HOME": str(Path.home()), "JAVA_HOME": ""}
    files = ["tests/test_registration.py", "tests/kafka/test_restart.py"]
    skipping = run_without_a_server(bin_dir, kafka_package, files, env)
    assert "python -m tests.kafka.kafka_server start" in skipping
    assert "docker compose up -d" in skipping
    assert "KAFKA_BOOTSTRAP_SERVERS=localhost:9092" in skipping
    assert "the restart test starts a Kafka node of its own" in skipping


def test_a_lower_tier_declares_less_and_its_tests_follow(
    template_src: Path, kafka_bootstrap: str, tmp_path: Path
) -> None:
    check_a_lower_tier(
        template_src, "kafka", {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}, tmp_path
    )
