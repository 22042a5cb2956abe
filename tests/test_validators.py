"""Every bad answer is refused with a message naming the question, leaving nothing."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import BACKENDS, REPO_ROOT, TIERS, UNSUPPORTED, render

BAD_ANSWERS = [
    ("broker_name", "Kafka-Broker", "lowercase letter, then lowercase letters"),
    ("broker_name", "1kafka", 'starts with "1"'),
    ("broker_name", "inline", "built-in providers"),
    ("broker_name", "redis", "built-in providers"),
    ("broker_name", "class", "Python keyword"),
    ("broker_name", "../x", 'has ".".'),
    ("broker_name", "", "A broker name is required."),
    ("broker_name", "k", "2 to 30 characters"),
    ("broker_name", "k" * 40, "2 to 30 characters"),
    ("distribution_name", "Protean_Kafka", "not a normalised distribution name"),
    ("distribution_name", "protean--kafka", "not a normalised distribution name"),
    ("distribution_name", "d" * 51, "too long: use at most 50 characters"),
    ("package_name", "protean-kafka", 'use "_" instead'),
    ("package_name", "import", "Python keyword"),
    ("package_name", "p" * 41, "too long: use at most 40 characters"),
    ("package_name", "protean", "would shadow Protean itself"),
    ("package_name", "json", "module of Python's standard library"),
    ("package_name", "tests", "the package's test folder"),
    ("package_name", "confluent_kafka", "imported by the package or its tools"),
    ("package_name", "pytest", "imported by the package or its tools"),
    ("class_name", "kafkaBroker", "not a valid class name"),
    ("class_name", "Kafka Broker", "not a valid class name"),
    ("class_name", "C" * 41, "too long: use at most 40 characters"),
    ("class_name", "Engine", "already imported or defined beside the broker class"),
    ("author_email", "not-an-address", "not an e-mail address"),
    ("author_name", "", "non-empty line"),
    ("description", "", "non-empty line"),
    ("description", 'The "fast" adapter', "without double quotes"),
    ("description", "Kafka\\Redis bridge", "backslashes"),
    ("author_name", "Acme\\Ops", "backslashes"),
    ("repository_url", "github.com/acme/x", "repository's web address"),
    ("repository_url", "https://github.com/acme/x.git", 'without ".git"'),
    (
        "repository_url",
        "https://github.com/acme/x/",
        "without it (https://github.com/acme/x)",
    ),
    ("repository_url", "http://github.com/acme/x", "is not https"),
    ("license", "GPL-3.0", "GPL-3.0"),
    ("python_min", "3.10", "3.10"),
    ("backend", "nats", "nats"),
    ("capability_tier", "gold", "gold"),
]


@pytest.mark.parametrize(
    ("question", "answer", "explanation"),
    BAD_ANSWERS,
    ids=[f"{q}={a[:12]!r}" for q, a, _ in BAD_ANSWERS],
)
def test_a_bad_answer_is_refused_and_nothing_is_generated(
    template_src: Path, tmp_path: Path, question: str, answer: str, explanation: str
) -> None:
    destination = tmp_path / "pkg"
    with pytest.raises(ValueError, match=question) as refused:
        render(template_src, destination, **{question: answer})
    assert explanation in " ".join(str(refused.value).split())
    assert not destination.exists() or not any(destination.iterdir())


# What the prompt shows: the first line of the refusal only, so it names the rule
# that failed and, where it can, what to type instead.
HEADLINES = [
    ("broker_name", "", "required: type a name, e.g. kafka"),
    ("broker_name", "Sqlq", "no capitals: use a-z, 0-9 and _"),
    ("broker_name", "s", "1 character, at least 2"),
    ("broker_name", "k" * 33, "33 characters, at most 30"),
    ("broker_name", "rabbit-bus", "`-` is not allowed: use `_`"),
    ("broker_name", "kafka.bus", "`.` is not allowed: use a-z 0-9 _"),
    ("broker_name", "2kafka", "start with a lowercase letter"),
    ("broker_name", "nonlocal", '"nonlocal" is a Python keyword'),
    ("broker_name", "redis_pubsub", '"redis_pubsub" is taken by Protean'),
    ("distribution_name", "", "required: protean-<x>-broker"),
    ("distribution_name", "Protean-Kafka", "no capitals: a-z, 0-9 and -"),
    ("distribution_name", "protean_kafka", "`_` is not allowed: use `-`"),
    ("distribution_name", "d" * 51, "51 characters, at most 50"),
    ("package_name", "", "required, e.g. protean_kafka"),
    ("package_name", "protean-kafka", "`-` is not allowed: use `_`"),
    ("package_name", "1kafka", "a digit cannot come first"),
    ("package_name", "protean", "that is Protean's own name"),
    ("package_name", "_frozen_importlib_external", "shadows a standard library module"),
    ("package_name", "typing_extensions", "shadows a package it depends on"),
    ("package_name", "tests", "taken by the package's tests"),
    ("class_name", "", "required, e.g. KafkaBroker"),
    ("class_name", "Engine", "taken; try EngineBroker"),
    ("class_name", "BaseBroker", "taken; try MyBaseBroker"),
    ("class_name", "ConsumerGroupTopicPartitions", "taken by the generated code"),
    ("class_name", "C" * 41, "41 characters, at most 40"),
    ("repository_url", "https://github.com/acme/x/", "drop the trailing /"),
    ("repository_url", "http://github.com/acme/x", "use https://, not http://"),
    ("repository_url", "https://github.com/acme/x.git", 'drop the ".git"'),
]


@pytest.mark.parametrize(
    ("question", "answer", "headline"),
    HEADLINES,
    ids=[f"{q}={a[:12]!r}" for q, a, _ in HEADLINES],
)
def test_the_first_line_of_a_refusal_names_the_rule_and_fits_the_prompt(
    template_src: Path, tmp_path: Path, question: str, answer: str, headline: str
) -> None:
    with pytest.raises(ValueError, match=question) as refused:
        render(template_src, tmp_path / "pkg", **{question: answer})
    first = str(refused.value).splitlines()[0]
    assert first == f"Validation error for question '{question}': {headline}"
    assert len(first) < 80  # an 80-column terminal cuts the last column


def hidden_list(key: str) -> set[str]:
    questions = yaml.safe_load((REPO_ROOT / "copier.yml").read_text())
    assert questions[key]["when"] is False
    return set(yaml.safe_load(questions[key]["default"]))


def test_the_standard_library_names_include_the_running_pythons() -> None:
    """copier.yml holds 3.11's, 3.12's and 3.13's names; CI runs each of them."""
    missing = set(sys.stdlib_module_names) - hidden_list("stdlib_module_names")
    assert not missing, f"add to stdlib_module_names in copier.yml: {sorted(missing)}"


def test_every_direct_dependency_is_a_name_package_name_refuses() -> None:
    """Protean, each backend's client library and each `dev` tool."""
    pyproject = (REPO_ROOT / "template/pyproject.toml.jinja").read_text()
    lists = re.findall(r"^(?:dependencies|dev) = \[\n(.*?)^\]", pyproject, re.M | re.S)
    for snippet in (REPO_ROOT / "template/_snippets").glob("*/pyproject.toml.jinja"):
        lists += re.findall(
            r"{% macro dependencies\(\) %}(.*?){%- endmacro %}",
            snippet.read_text(),
            re.S,
        )
    assert len(lists) >= 4
    requirements = re.findall(r'^\s*"([A-Za-z0-9_.-]+)', "\n".join(lists), re.M)
    import_names = {
        {"python_dateutil": "dateutil"}.get(name, name)
        for name in (r.lower().replace("-", "_") for r in requirements)
    }
    assert {"protean", "pytest", "confluent_kafka", "aio_pika"} <= import_names
    missing = import_names - hidden_list("imported_beside_the_package")
    assert not missing, f"add to imported_beside_the_package: {sorted(missing)}"


@pytest.mark.parametrize(
    ("tier", "extras", "explanation"),
    [
        ("basic_pubsub", ["blocking_read"], "needs consumer groups"),
        ("simple_queuing", ["dead_letter_queue"], "needs ack/nack"),
        ("enterprise_streaming", ["dead_letter_queue"], "already includes"),
    ],
)
def test_extras_the_tier_cannot_carry_are_refused(
    template_src: Path, tmp_path: Path, tier: str, extras: list[str], explanation: str
) -> None:
    destination = tmp_path / "pkg"
    with pytest.raises(ValueError, match="extra_capabilities") as refused:
        render(
            template_src, destination, capability_tier=tier, extra_capabilities=extras
        )
    assert explanation in " ".join(str(refused.value).split())
    assert not destination.exists() or not any(destination.iterdir())


def test_kafka_refuses_the_partitioning_tier(
    template_src: Path, tmp_path: Path
) -> None:
    destination = tmp_path / "pkg"
    with pytest.raises(ValueError, match="capability_tier") as refused:
        render(
            template_src,
            destination,
            backend="kafka",
            capability_tier="enterprise_streaming",
        )
    assert "does not implement partition leases" in str(refused.value)
    assert not destination.exists() or not any(destination.iterdir())


def test_rabbitmq_refuses_the_partitioning_tier(
    template_src: Path, tmp_path: Path
) -> None:
    destination = tmp_path / "pkg"
    with pytest.raises(ValueError, match="capability_tier") as refused:
        render(
            template_src,
            destination,
            backend="rabbitmq",
            capability_tier="enterprise_streaming",
        )
    assert "does not implement partition leases" in str(refused.value)
    assert "no key-ordered owners to lease" in " ".join(str(refused.value).split())
    assert not destination.exists() or not any(destination.iterdir())


def names_bound_beside(package: Path, class_name: str) -> set[str]:
    """Names imported anywhere, or defined at the top, in the modules of
    ``package`` that mention ``class_name``."""
    bound: set[str] = set()
    for module in package.rglob("*.py"):
        source = module.read_text()
        if class_name not in source:
            continue
        tree = ast.parse(source)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                bound |= {(a.asname or a.name).split(".")[0] for a in node.names}
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                bound.add(node.name)
            elif isinstance(node, ast.Assign):
                bound |= {t.id for t in node.targets if isinstance(t, ast.Name)}
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                bound.add(node.target.id)
    return bound - {class_name}


def test_the_names_class_name_refuses_are_those_the_generated_code_binds(
    template_src: Path, tmp_path: Path
) -> None:
    """A class named like an import beside it replaces it, or is replaced."""
    bound: set[str] = set()
    for backend in BACKENDS:  # each at the highest tier it takes: the most code
        tier = max(
            (t for t in TIERS if (backend, t) not in UNSUPPORTED), key=TIERS.index
        )
        package = render(
            template_src, tmp_path / backend, backend=backend, capability_tier=tier
        )
        bound |= names_bound_beside(package, "AcmeBroker")
    could_be_a_class = {n for n in bound if re.fullmatch("[A-Z][A-Za-z0-9]*", n)}
    questions = yaml.safe_load((template_src / "copier.yml").read_text())
    refused = set(yaml.safe_load(questions["names_beside_the_class"]["default"]))
    assert could_be_a_class == refused
