"""Fast tier: what a rendered package needs to be published and kept current.

Metadata follows the answers, the workflows parse and do what the README says,
and every version a generated file names matches the one the tests use.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO_ROOT, render

GITHUB = "https://github.com/acme-org/protean-acme-broker"


def pyproject(package: Path) -> dict[str, Any]:
    return tomllib.loads((package / "pyproject.toml").read_text())


def workflow(package: Path, name: str) -> dict[str, Any]:
    parsed: dict[str, Any] = yaml.safe_load(
        (package / ".github" / "workflows" / name).read_text()
    )
    return parsed


@pytest.fixture(scope="module")
def published(template_src: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render(
        template_src,
        tmp_path_factory.mktemp("published") / "pkg",
        repository_url=GITHUB,
        python_min="3.12",
    )


def test_urls_and_classifiers_follow_the_answers(published: Path) -> None:
    project = pyproject(published)["project"]
    assert project["urls"] == {
        "Homepage": GITHUB,
        "Repository": GITHUB,
        "Issues": f"{GITHUB}/issues",
        "Changelog": f"{GITHUB}/blob/main/CHANGELOG.md",
    }
    versions = [
        c.rsplit(" :: ", 1)[1]
        for c in project["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    ]
    assert versions == ["3.12", "3.13"]
    assert project["requires-python"] == ">=3.12,<4"
    assert any(c.startswith("Development Status ::") for c in project["classifiers"])
    readme = (published / "README.md").read_text()
    assert f"]({GITHUB}/actions/workflows/ci.yml)" in readme


def test_without_a_repository_there_are_no_links(
    template_src: Path, tmp_path: Path
) -> None:
    package = render(template_src, tmp_path / "pkg")
    assert "urls" not in pyproject(package)["project"]
    assert "badge.svg" not in (package / "README.md").read_text()


def test_ci_tests_both_ends_of_the_declared_range(published: Path) -> None:
    job = workflow(published, "ci.yml")["jobs"]["test"]
    assert job["strategy"]["matrix"]["include"] == [
        {"python-version": "3.12", "resolution": "lowest-direct"},
        {"python-version": "3.13", "resolution": "highest"},
    ]
    runs = [step.get("run", "") for step in job["steps"]]
    install = next(step for step in job["steps"] if step.get("run") == "uv sync")
    assert install["env"]["UV_RESOLUTION"] == "${{ matrix.resolution }}"
    assert "uv run --no-sync pytest" in runs
    assert "uv run --no-sync mypy" in runs


def test_kafka_ci_runs_the_cluster_fault_tests_with_a_jdk(
    template_src: Path, published: Path, tmp_path: Path
) -> None:
    """The tests that start Kafka nodes themselves get a JDK; the three-node
    module, which a plain pytest deselects, has a job of its own."""
    kafka = render(template_src, tmp_path / "kafka", backend="kafka")
    jobs = workflow(kafka, "ci.yml")["jobs"]
    assert set(jobs) == {"test", "cluster", "protean-tests"}
    for job in (jobs["test"], jobs["cluster"]):
        assert any("setup-java" in step.get("uses", "") for step in job["steps"])
    cluster = jobs["cluster"]
    assert cluster["env"]["CI"] == "true"  # no JDK fails the job, never skips
    assert "uv run --no-sync pytest -m cluster" in [
        step.get("run", "") for step in cluster["steps"]
    ]
    skeleton = workflow(published, "ci.yml")["jobs"]
    assert set(skeleton) == {"test", "protean-tests"}
    assert "setup-java" not in str(skeleton)


@pytest.mark.parametrize("backend", ["skeleton", "kafka"])
def test_ci_runs_proteans_own_broker_tests_in_one_small_job(
    template_src: Path, tmp_path: Path, backend: str
) -> None:
    """One install, the newest Python; Kafka's on the same service container
    as the test job, so it needs no JDK."""
    package = render(template_src, tmp_path / "pkg", backend=backend)
    jobs = workflow(package, "ci.yml")["jobs"]
    job = jobs["protean-tests"]
    runs = [step.get("run", "") for step in job["steps"]]
    assert runs.count("uv sync") == 1
    assert "uv run --no-sync python -m tests.protean_suite" in runs
    assert "strategy" not in job
    assert "setup-java" not in str(job)
    if backend == "kafka":
        assert job["services"] == jobs["test"]["services"]
        assert job["env"]["KAFKA_BOOTSTRAP_SERVERS"] == "localhost:9092"
    else:
        assert "services" not in job


def test_the_release_publishes_through_trusted_publishing(published: Path) -> None:
    release = workflow(published, "release.yml")
    # PyYAML reads the key `on` as True.
    assert release[True]["push"]["tags"] == ["v*"]
    assert release["permissions"] == {}
    build, publish = release["jobs"]["build"], release["jobs"]["publish"]
    build_runs = [step.get("run", "") for step in build["steps"]]
    assert "uv build --no-cache" in build_runs
    assert "uvx --no-cache twine@7.0.0 check --strict dist/*" in build_runs
    assert build["permissions"] == {"contents": "read"}
    assert publish["needs"] == "build"
    # Only the job that publishes may ask for an OpenID Connect token: PyPI's
    # trusted publishing and the provenance signature both need it.
    assert publish["permissions"] == {"id-token": "write", "attestations": "write"}
    assert publish["environment"] == "pypi"
    assert any("attest-build-provenance" in s.get("uses", "") for s in publish["steps"])
    publish_runs = [step.get("run", "") for step in publish["steps"]]
    assert "uv publish --trusted-publishing always dist/*" in publish_runs
    text = (published / ".github" / "workflows" / "release.yml").read_text()
    assert "secrets." not in text  # no password, no token: OIDC only
    assert "pypi-publish" not in text


def test_the_release_restores_no_cache(published: Path) -> None:
    """Nothing a cache could carry in from another run reaches what is published."""
    release = workflow(published, "release.yml")
    for job in release["jobs"].values():
        for step in job["steps"]:
            uses = step.get("uses", "")
            assert "actions/cache" not in uses
            if "setup-uv" in uses:
                assert step["with"]["enable-cache"] is False, step


def test_dependabot_keeps_actions_and_hooks_current(published: Path) -> None:
    config = yaml.safe_load((published / ".github" / "dependabot.yml").read_text())
    ecosystems = {update["package-ecosystem"] for update in config["updates"]}
    assert ecosystems == {"github-actions", "pre-commit"}


def test_ruff_is_the_same_version_everywhere(published: Path) -> None:
    """The hook, the package's dev group and the template's tests format alike."""
    hooks = yaml.safe_load((published / ".pre-commit-config.yaml").read_text())
    [ruff_hook] = [r for r in hooks["repos"] if r["repo"].endswith("ruff-pre-commit")]
    [pinned] = [
        d for d in pyproject(published)["dependency-groups"]["dev"] if "ruff" in d
    ]
    ours = next(
        line
        for line in (REPO_ROOT / "requirements-dev.txt").read_text().splitlines()
        if line.startswith("ruff==")
    )
    assert ruff_hook["rev"] == "v" + pinned.split("==")[1] == "v" + ours.split("==")[1]
