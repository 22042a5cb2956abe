"""The RabbitMQ variant, installed non-editable, passes its whole suite on real
RabbitMQ nodes."""

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

pytestmark = [pytest.mark.package, pytest.mark.rabbitmq]


@pytest.fixture(scope="module")
def rabbitmq_package(
    template_src: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    return render(
        template_src,
        tmp_path_factory.mktemp("rabbitmq") / "protean-rabbitmq-broker",
        broker_name="rabbitmq",
        backend="rabbitmq",
    )


def test_the_rabbitmq_package_is_lint_and_type_clean_and_builds(
    rabbitmq_package: Path, tmp_path: Path
) -> None:
    bin_dir = make_venv(
        tmp_path / "venv", *with_dev_tools(rabbitmq_package), "build", "twine"
    )
    check_lint_types_and_build(bin_dir, rabbitmq_package, tmp_path / "dist")


def test_the_rabbitmq_suite_passes_on_its_own_node_with_nothing_skipped(
    rabbitmq_package: Path, tmp_path: Path, stopwatch: Stopwatch
) -> None:
    """The newest Protean; the floor (Protean 0.15.0, the lowest aio-pika) runs
    the same suite in tests/test_install_paths.py."""
    check_the_whole_suite(
        rabbitmq_package, "RABBITMQ_URI", "beam.smp", tmp_path, stopwatch
    )


def test_the_cluster_fault_tests_run_when_asked_and_pass_on_three_nodes(
    rabbitmq_package: Path, tmp_path: Path, stopwatch: Stopwatch
) -> None:
    check_cluster_module(rabbitmq_package, "rabbitmq", "beam.smp", tmp_path, stopwatch)


def test_without_rabbitmq_server_the_tests_say_how_to_get_one(
    rabbitmq_package: Path, tmp_path: Path
) -> None:
    bin_dir = make_venv(tmp_path / "venv", *with_dev_tools(rabbitmq_package))
    # The runner looks for rabbitmq-server there: nothing to start a node with.
    env = {"PATH": str(bin_dir), "HOME": str(Path.home()),
           "RABBITMQ_HARNESS_SBIN": str(tmp_path / "no-rabbitmq")}  # fmt: skip
    files = ["tests/test_registration.py", "tests/conformance/test_publish.py"]
    skipping = run_without_a_server(bin_dir, rabbitmq_package, files, env)
    assert "python -m tests.rabbitmq.rabbitmq_server start" in skipping
    assert "docker compose up -d" in skipping
    assert "RABBITMQ_URI=amqp://guest:guest@localhost:5672/%2F" in skipping


def test_a_lower_tier_declares_less_and_its_tests_follow_on_the_oldest_protean(
    template_src: Path, rabbitmq_uri: str, tmp_path: Path
) -> None:
    check_a_lower_tier(
        template_src, "rabbitmq", {"RABBITMQ_URI": rabbitmq_uri}, tmp_path,
        "protean==0.15.0",
    )  # fmt: skip
