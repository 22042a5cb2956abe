"""The RabbitMQ variant, installed non-editable, passes its whole suite on real
RabbitMQ nodes."""

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
    protean_requirement,
    render,
    run_generated_tests,
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
    command = [
        str(bin_dir / "pytest"), "-q", "-rs", "-p", "no:cacheprovider",
        "tests/test_registration.py", "tests/conformance/test_publish.py",
    ]  # fmt: skip
    # The runner looks for rabbitmq-server there: nothing to start a node with.
    env = {"PATH": str(bin_dir), "HOME": str(Path.home()),
           "RABBITMQ_HARNESS_SBIN": str(tmp_path / "no-rabbitmq")}  # fmt: skip

    def pytest_output(ci: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command, cwd=rabbitmq_package, env={**env, "CI": ci},
            capture_output=True, text=True, check=False,
        )  # fmt: skip

    skipping = pytest_output(ci="")
    assert skipping.returncode == 0, skipping.stdout
    assert "python -m tests.rabbitmq.rabbitmq_server start" in skipping.stdout
    assert "docker compose up -d" in skipping.stdout
    assert "RABBITMQ_URI=amqp://guest:guest@localhost:5672/%2F" in skipping.stdout
    failing = pytest_output(ci="true")
    assert failing.returncode == 1, failing.stdout
    assert "In CI integration tests must run" in failing.stdout


def test_a_lower_tier_declares_less_and_its_tests_follow_on_the_oldest_protean(
    template_src: Path, rabbitmq_uri: str, tmp_path: Path
) -> None:
    package = render(
        template_src,
        tmp_path / "protean-rabbitmq-broker",
        broker_name="rabbitmq",
        backend="rabbitmq",
        capability_tier="simple_queuing",
        extra_capabilities=[],
    )
    floor = "0.15.0"
    assert floor in protean_requirement(package).specifier
    bin_dir = make_venv(
        tmp_path / "venv", *with_dev_tools(package), f"protean=={floor}"
    )
    _, skip_lines = run_generated_tests(
        bin_dir,
        package,
        "tests/conformance",
        "tests/test_registration.py",
        env={"RABBITMQ_URI": rabbitmq_uri, "CI": "true"},
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
