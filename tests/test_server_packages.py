"""Each server backend's package, installed non-editable, is lint and type
clean, builds, and passes its whole suite on real servers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.backends import SERVER_BACKENDS, Backend, no_server_env
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

pytestmark = [
    pytest.mark.package,
    pytest.mark.parametrize("backend", SERVER_BACKENDS, scope="module"),
]


@pytest.fixture(scope="module")
def package(
    backend: Backend, template_src: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The backend's package on the default answers, rendered once per backend."""
    return render(
        template_src,
        tmp_path_factory.mktemp(backend.name) / f"protean-{backend.name}-broker",
        broker_name=backend.name,
        backend=backend.name,
    )


def test_the_package_is_lint_and_type_clean_and_builds(
    package: Path, tmp_path: Path
) -> None:
    bin_dir = make_venv(tmp_path / "venv", *with_dev_tools(package), "build", "twine")
    check_lint_types_and_build(bin_dir, package, tmp_path / "dist")


def test_the_suite_passes_on_its_own_servers_with_nothing_skipped(
    backend: Backend, package: Path, tmp_path: Path, stopwatch: Stopwatch
) -> None:
    """The newest Protean, with the servers the package's own runner starts;
    the floor (Protean 0.15.0, the lowest client) runs the same suite in
    tests/test_install_paths.py."""
    skipped = check_the_whole_suite(
        package,
        backend.server_env,
        backend.program,
        tmp_path,
        stopwatch,
        backend.undeclared,
    )
    for module in backend.modules_that_must_run:
        assert module not in " ".join(skipped)


def test_the_cluster_fault_tests_run_when_asked_and_pass_on_three_nodes(
    backend: Backend, package: Path, tmp_path: Path, stopwatch: Stopwatch
) -> None:
    check_cluster_module(
        package, backend.name, backend.program, tmp_path, stopwatch, backend.cluster
    )


def test_without_a_server_the_tests_say_how_to_get_one(
    backend: Backend, package: Path, tmp_path: Path
) -> None:
    bin_dir = make_venv(tmp_path / "venv", *with_dev_tools(package))
    env = no_server_env(backend, bin_dir, tmp_path)
    skipping = run_without_a_server(bin_dir, package, backend.no_server_files, env)
    for hint in backend.no_server_hints:
        assert hint in skipping


@pytest.mark.warm_server
def test_a_lower_tier_declares_less_and_its_tests_follow(
    backend: Backend,
    template_src: Path,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    check_a_lower_tier(
        template_src,
        backend.name,
        backend.server(request),
        tmp_path,
        *backend.lowest_tier_requirements,
    )
