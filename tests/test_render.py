"""Fast tier: every tier and backend renders into a complete, well-formed package."""

from __future__ import annotations

import ast
import importlib.util
import io
import re
import subprocess
import tarfile
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import (
    BACKENDS,
    REPO_ROOT,
    TIERS,
    UNSUPPORTED,
    render,
)
from tests.test_protean_generic_tests import SHIPPING
from tests.test_protean_versions import RELEASES

LEFTOVER_JINJA = re.compile(r"(?<!\$)\{\{|\{%")

MATRIX = [
    (backend, tier)
    for backend in BACKENDS
    for tier in TIERS
    if (backend, tier) not in UNSUPPORTED
]


@pytest.fixture(scope="module", params=MATRIX, ids=[f"{b}-{t}" for b, t in MATRIX])
def rendered(
    request: pytest.FixtureRequest,
    template_src: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    backend, tier = request.param
    return render(
        template_src,
        tmp_path_factory.mktemp("render") / "pkg",
        backend=backend,
        capability_tier=tier,
    )


def answers_of(package: Path) -> dict[str, Any]:
    """The answers Copier recorded for `copier update`."""
    answers: dict[str, Any] = yaml.safe_load(
        (package / ".copier-answers.yml").read_text()
    )
    return answers


def files(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()]


def test_no_jinja_is_left_in_paths_or_contents(rendered: Path) -> None:
    for path in files(rendered):
        relative = str(path.relative_to(rendered))
        assert not LEFTOVER_JINJA.search(relative), relative
        assert not path.name.endswith(".jinja"), relative
        assert not LEFTOVER_JINJA.search(path.read_text()), relative


def test_the_changelog_names_the_declared_capabilities(rendered: Path) -> None:
    answers = answers_of(rendered)
    changelog = (rendered / "CHANGELOG.md").read_text()
    assert f"`{answers['capability_tier'].upper()}" in changelog


def test_every_toml_and_yaml_file_parses(rendered: Path) -> None:
    parsed = 0
    for path in files(rendered):
        if path.suffix == ".toml":
            tomllib.loads(path.read_text())
            parsed += 1
        elif path.suffix in {".yml", ".yaml"}:
            yaml.safe_load(path.read_text())
            parsed += 1
    assert parsed >= 4  # pyproject, answers, pre-commit, CI workflow


def test_the_entry_point_table_is_exactly_the_register_function(rendered: Path) -> None:
    project = tomllib.loads((rendered / "pyproject.toml").read_text())["project"]
    assert project["name"] == "protean-acme-broker"
    assert project["entry-points"] == {
        "protean.brokers": {"acme": "protean_acme:register"}
    }
    assert (rendered / "src/protean_acme/__init__.py").is_file()
    assert (rendered / "src/protean_acme/broker.py").is_file()
    assert (rendered / "src/protean_acme/py.typed").is_file()


def test_each_backend_gets_only_its_own_files(rendered: Path) -> None:
    backend = answers_of(rendered)["backend"]
    kafka, rabbitmq = backend == "kafka", backend == "rabbitmq"
    assert (rendered / "docker-compose.yml").exists() is (kafka or rabbitmq)
    assert (rendered / "src/protean_acme/consumer.py").exists() is (kafka or rabbitmq)
    assert (rendered / "src/protean_acme/topics.py").exists() is kafka
    assert (rendered / "src/protean_acme/topology.py").exists() is rabbitmq
    assert (rendered / "src/protean_acme/event_loop.py").exists() is rabbitmq
    assert (rendered / "tests/kafka").exists() is kafka
    assert (rendered / "tests/rabbitmq").exists() is rabbitmq
    broker = (rendered / "src/protean_acme/broker.py").read_text()
    assert ("TODO(transport)" in broker) is (backend == "skeleton")
    assert ("confluent_kafka" in broker) is kafka
    assert ("aiormq" in broker) is rabbitmq


def test_the_shared_modules_name_only_their_own_backends_client(
    rendered: Path,
) -> None:
    """The modules every backend gets speak of the client the package has."""
    kafka = answers_of(rendered)["backend"] == "kafka"
    for module in (rendered / "src/protean_acme").glob("*.py"):
        text = module.read_text()
        assert kafka or not re.search("librdkafka|confluent", text), module.name


def test_the_answers_file_can_drive_copier_update(rendered: Path) -> None:
    answers = answers_of(rendered)
    assert answers["_commit"] == "v0.0.0"
    assert answers["_src_path"]
    assert answers["broker_name"] == "acme"
    assert not {"python_keywords", "has_ack_nack", "capabilities_assignment"} & set(
        answers
    )


def test_ruff_finds_nothing_to_fix_or_reformat(rendered: Path) -> None:
    for command in (["ruff", "format", "--check", "."], ["ruff", "check", "."]):
        result = subprocess.run(command, cwd=rendered, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


ACCEPTED_NAMES = {
    # Every name as short as its validator allows: ruff joins no line that the
    # template splits for long names.
    "least": {
        "broker_name": "ab",
        "package_name": "p",
        "class_name": "C",
        "distribution_name": "d",
        "description": "D",
    },
    # A class name in capitals, which isort sorts as a constant (before
    # "CAPABILITIES", were the two imported together).
    "capitals": {"broker_name": "ab", "class_name": "AB"},
    # Between the matrix's "acme" and the longest names.
    "medium": {"broker_name": "acme_bus"},
    # 30 characters, the most broker_name allows: package_name (38) and
    # distribution_name (45) at their longest defaults.
    "broker": {"broker_name": "abcdefghij_klmnopqrst_uvwxyz12"},
    # 30 letters: the longest default class_name (36).
    "class": {"broker_name": "abcdefghijklmnopqrstuvwxyzabcd"},
    # Every name at the most its validator allows; a description that wraps.
    "limits": {
        "broker_name": "abcdefghij_klmnopqrst_uvwxyz12",
        "package_name": "p" * 40,
        "class_name": "C" * 40,
        "distribution_name": "d" * 50,
        "description": "A description long enough to wrap, " * 4
        + "https://example.com/"
        + "a" * 90,
    },
}


@pytest.mark.parametrize("names", ACCEPTED_NAMES.values(), ids=ACCEPTED_NAMES.keys())
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_accepted_name_leaves_ruff_nothing_to_fix_or_reformat(
    template_src: Path, tmp_path: Path, backend: str, names: dict[str, str]
) -> None:
    """Lines and imports that hold a name are laid out for the shortest and the
    longest names the validators accept (and a description that wraps), not
    only for the matrix's "acme"."""
    package = render(template_src, tmp_path / "pkg", backend=backend, **names)
    test_ruff_finds_nothing_to_fix_or_reformat(package)


@pytest.mark.parametrize(
    ("license", "first_line", "spdx"),
    [
        ("MIT", "MIT License", "MIT"),
        ("Apache-2.0", "Apache License", "Apache-2.0"),
        ("BSD-3-Clause", "BSD 3-Clause License", "BSD-3-Clause"),
        ("Proprietary", "Copyright (c)", "LicenseRef-Proprietary"),
    ],
)
def test_the_licence_file_matches_the_spdx_expression(
    template_src: Path, tmp_path: Path, license: str, first_line: str, spdx: str
) -> None:
    package = render(template_src, tmp_path / "pkg", license=license)
    assert (package / "LICENSE").read_text().strip().startswith(first_line)
    project = tomllib.loads((package / "pyproject.toml").read_text())["project"]
    assert project["license"] == spdx


def test_custom_names_flow_everywhere(template_src: Path, tmp_path: Path) -> None:
    package = render(
        template_src,
        tmp_path / "pkg",
        broker_name="nats_js",
        distribution_name="acme-nats",
        package_name="acme_nats",
        class_name="JetStreamBroker",
        python_min="3.12",
    )
    project = tomllib.loads((package / "pyproject.toml").read_text())
    assert project["project"]["name"] == "acme-nats"
    assert project["project"]["requires-python"] == ">=3.12,<4"
    assert project["project"]["entry-points"]["protean.brokers"] == {
        "nats_js": "acme_nats:register"
    }
    assert (
        "class JetStreamBroker(BaseBroker)"
        in (package / "src/acme_nats/broker.py").read_text()
    )
    assert project["tool"]["ruff"]["target-version"] == "py312"


def test_derived_defaults_follow_the_broker_name(
    template_src: Path, tmp_path: Path
) -> None:
    package = render(template_src, tmp_path / "pkg", broker_name="nats_jet")
    answers = answers_of(package)
    assert answers["distribution_name"] == "protean-nats-jet-broker"
    assert answers["package_name"] == "protean_nats_jet"
    assert answers["class_name"] == "NatsJetBroker"


def test_extras_add_to_the_tier(template_src: Path, tmp_path: Path) -> None:
    package = render(
        template_src,
        tmp_path / "pkg",
        capability_tier="reliable_messaging",
        extra_capabilities=["blocking_read", "dead_letter_queue"],
    )
    broker = (package / "src/protean_acme/broker.py").read_text()
    assert "BrokerCapabilities.RELIABLE_MESSAGING" in broker
    assert "| BrokerCapabilities.BLOCKING_READ" in broker
    assert "| BrokerCapabilities.DEAD_LETTER_QUEUE" in broker
    assert "def _read_blocking(" in broker


def test_the_kafka_default_declares_everything_the_adapter_implements(
    template_src: Path, tmp_path: Path
) -> None:
    package = render(template_src, tmp_path / "pkg", backend="kafka")
    answers = answers_of(package)
    assert answers["capability_tier"] == "ordered_messaging"
    assert answers["extra_capabilities"] == ["blocking_read", "dead_letter_queue"]
    project = tomllib.loads((package / "pyproject.toml").read_text())["project"]
    assert any(dep.startswith("confluent-kafka") for dep in project["dependencies"])


def test_the_rabbitmq_default_declares_everything_the_adapter_implements(
    template_src: Path, tmp_path: Path
) -> None:
    package = render(template_src, tmp_path / "pkg", backend="rabbitmq")
    answers = answers_of(package)
    assert answers["capability_tier"] == "ordered_messaging"
    assert answers["extra_capabilities"] == ["blocking_read", "dead_letter_queue"]
    project = tomllib.loads((package / "pyproject.toml").read_text())["project"]
    assert any(dep.startswith("aio-pika") for dep in project["dependencies"])
    assert '"protean>=0.15.0,<0.19"' in (package / "pyproject.toml").read_text()


def test_the_partitioning_tier_raises_the_protean_floor(
    template_src: Path, tmp_path: Path
) -> None:
    low = render(template_src, tmp_path / "low", capability_tier="reliable_messaging")
    high = render(
        template_src, tmp_path / "high", capability_tier="enterprise_streaming"
    )
    assert '"protean>=0.15.0,<0.19"' in (low / "pyproject.toml").read_text()
    assert '"protean>=0.17.1,<0.19"' in (high / "pyproject.toml").read_text()


def test_the_readme_states_the_protean_range_and_the_releases_tested(
    template_src: Path, tmp_path: Path
) -> None:
    """The range is what the packages declare, and the README says which releases
    the matrix runs, never that the range holds only those."""
    readme = " ".join((REPO_ROOT / "README.md").read_text().split())
    for tier in ("reliable_messaging", "enterprise_streaming"):
        package = render(template_src, tmp_path / tier, capability_tier=tier)
        project = tomllib.loads((package / "pyproject.toml").read_text())["project"]
        [declared] = [d for d in project["dependencies"] if d.startswith("protean")]
        assert f"`{declared.removeprefix('protean')}`" in readme, tier
    for release in (*RELEASES, *SHIPPING):
        assert release in readme
    assert "allows exactly" not in readme


README_HEADINGS = [
    "Install",
    "Use it in an app",
    "Configure",
    "What it guarantees",
    "When things go wrong",
    "Operations",
    "Develop and test",
    "Releasing",
    "Updating",
]
LONGEST_PARAGRAPH = 8


def prose_paragraphs(markdown: str) -> list[list[str]]:
    """Runs of prose lines: code blocks and tables left out, each list item apart."""
    paragraphs: list[list[str]] = [[]]
    fenced = False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):  # a fence may be indented in a list item
            fenced = not fenced
            paragraphs.append([])
        elif fenced or line.startswith(("|", "#")) or not line.strip():
            paragraphs.append([])
        elif re.match(r"(- |\d+\. )", line):
            paragraphs.append([line])
        else:
            paragraphs[-1].append(line)
    return [paragraph for paragraph in paragraphs if paragraph]


def test_the_readme_is_organised_for_looking_things_up(rendered: Path) -> None:
    readme = (rendered / "README.md").read_text()
    headings = re.findall(r"^## (.+)$", readme, flags=re.MULTILINE)
    assert [h for h in headings if h in README_HEADINGS] == README_HEADINGS
    longest = max(prose_paragraphs(readme), key=len)
    assert len(longest) <= LONGEST_PARAGRAPH, "\n".join(longest)


def deselecting_markers(package: Path) -> set[str]:
    """The markers whose tests a plain `pytest` deselects, by their descriptions:
    the ones `pyproject.toml` declares and the conformance conftest registers."""
    pyproject = tomllib.loads((package / "pyproject.toml").read_text())
    lines = list(pyproject["tool"]["pytest"]["ini_options"]["markers"])
    conftest = ast.parse((package / "tests/conformance/conftest.py").read_text())
    for call in ast.walk(conftest):
        if (
            isinstance(call, ast.Call)
            and isinstance(call.func, ast.Attribute)
            and call.func.attr == "addinivalue_line"
            and [ast.literal_eval(arg) for arg in call.args[:1]] == ["markers"]
        ):
            lines.append(ast.literal_eval(call.args[1]))
    return {re.split(r"[(:]", line)[0] for line in lines if "deselected" in line}


def test_develop_and_test_says_what_a_plain_run_deselects(rendered: Path) -> None:
    """pytest's summary says `N deselected`: the README says which and why."""
    readme = (rendered / "README.md").read_text()
    section = readme.split("\n## Develop and test\n")[1].split("\n## ")[0]
    markers = deselecting_markers(rendered)
    assert "protean_server" in markers
    for marker in markers:
        assert f"`{marker}`" in section, marker


def test_protean_suite_gives_protean_the_configuration_file_it_looks_for(
    template_src: Path, tmp_path: Path
) -> None:
    """Protean's tests that build a `Domain` of their own look for `domain.toml`
    up to two folders above them and warn when there is none: the runner puts
    an empty one in the unpacked tests, and in a cache unpacked before it did."""
    package = render(template_src, tmp_path / "pkg")
    spec = importlib.util.spec_from_file_location(
        "protean_suite_main", package / "tests/protean_suite/__main__.py"
    )
    assert spec is not None and spec.loader is not None
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)

    sdist = tmp_path / "protean-9.9.9.tar.gz"
    with tarfile.open(sdist, "w:gz") as archive:
        for name in (runner.ELEMENTS, f"{runner.GENERIC}test_routing.py"):
            member = tarfile.TarInfo(f"protean-9.9.9/{name}")
            archive.addfile(member, io.BytesIO(b""))
    cache = tmp_path / "cache"
    assert runner.unpack(sdist, cache)
    tests = cache / runner.PACKAGE / "generic"
    assert (tests / "test_routing.py").is_file()
    config = tests.parent / "domain.toml"
    assert tomllib.loads(config.read_text()) == {}

    config.unlink()  # a cache unpacked by an earlier version of the runner
    assert runner.unpack(sdist, cache)
    assert config.is_file()


def test_every_test_module_the_readme_runs_is_in_the_package(rendered: Path) -> None:
    """A `python -m tests.<module>` the README shows runs in the package, not
    only in the template's repository (as its benchmark does)."""
    readme = (rendered / "README.md").read_text()
    modules = set(re.findall(r"python -m (tests(?:\.\w+)+)", readme))
    assert "tests.protean_suite" in modules
    for module in modules:
        path = rendered / module.replace(".", "/")
        assert path.with_suffix(".py").is_file() or (path / "__main__.py").is_file(), (
            module
        )


def test_the_quick_start_installs_the_package_with_uv_poetry_or_pip(
    template_src: Path, tmp_path: Path
) -> None:
    """Not everyone has uv: the Quick start gives each install the generated
    README's "Develop and test" shows, written the same way."""
    readme = (REPO_ROOT / "README.md").read_text()
    quick_start = readme.split("\n## Quick start\n")[1].split("\n## ")[0]
    generated = (render(template_src, tmp_path / "pkg") / "README.md").read_text()
    develop = generated.split("\n## Develop and test\n")[1].split("\n## ")[0]
    for command in (
        "uv sync",
        "uv run pytest",
        "poetry install",
        "poetry run pytest",
        ".venv/bin/python -m pip install --upgrade pip",
        ".venv/bin/python -m pip install -e . --group dev",
        ".venv/bin/pytest",
    ):
        assert command in quick_start, command
        assert command in develop, command
    assert "pipx install copier" in quick_start


def test_every_test_the_readme_names_is_in_the_package(rendered: Path) -> None:
    """The skeleton's porting guide maps each promise to tests by name: a
    renamed or tier-less test would send an author looking for nothing (the
    other backends' READMEs also name Protean's own tests)."""
    if answers_of(rendered)["backend"] != "skeleton":
        pytest.skip("only the skeleton's README has a porting guide")
    readme = (rendered / "README.md").read_text()
    named = re.findall(r"`((?:tests/)?[\w/]*test_\w+\.py)(?:::(\w+))?`", readme)
    for path, test in named:
        module = rendered / (
            path if path.startswith("tests/") else f"tests/conformance/{path}"
        )
        assert module.is_file(), path
        if test:
            assert f"def {test}(" in module.read_text(), f"{path}::{test}"
