"""Every bad answer is refused with a message naming the question, leaving nothing."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import render

BAD_ANSWERS = [
    ("broker_name", "Kafka-Broker", "lowercase letter first"),
    ("broker_name", "1kafka", "lowercase letter first"),
    ("broker_name", "inline", "built-in providers"),
    ("broker_name", "redis", "built-in providers"),
    ("broker_name", "class", "Python keyword"),
    ("broker_name", "../x", "lowercase letter first"),
    ("broker_name", "", "2 to 30 characters"),
    ("broker_name", "k", "2 to 30 characters"),
    ("broker_name", "k" * 40, "2 to 30 characters"),
    ("distribution_name", "Protean_Kafka", "normalised distribution name"),
    ("distribution_name", "protean--kafka", "normalised distribution name"),
    ("distribution_name", "d" * 51, "has 51 characters: use at most 50"),
    ("package_name", "protean-kafka", "not a valid package name"),
    ("package_name", "import", "Python keyword"),
    ("package_name", "p" * 41, "has 41 characters: use at most 40"),
    ("class_name", "kafkaBroker", "not a valid class name"),
    ("class_name", "Kafka Broker", "not a valid class name"),
    ("class_name", "C" * 41, "has 41 characters: use at most 40"),
    ("class_name", "Engine", "already imported or defined beside the broker class"),
    ("author_email", "not-an-address", "not an e-mail address"),
    ("author_name", "", "non-empty line"),
    ("description", "", "non-empty line"),
    ("description", 'The "fast" adapter', "without double quotes"),
    ("description", "Kafka\\Redis bridge", "backslashes"),
    ("author_name", "Acme\\Ops", "backslashes"),
    ("repository_url", "github.com/acme/x", "repository's web address"),
    ("repository_url", "https://github.com/acme/x.git", 'without ".git"'),
    ("repository_url", "https://github.com/acme/x/", "repository's web address"),
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
    for backend, tier in [
        ("skeleton", "enterprise_streaming"),
        ("kafka", "ordered_messaging"),
        ("rabbitmq", "ordered_messaging"),
    ]:
        package = render(
            template_src, tmp_path / backend, backend=backend, capability_tier=tier
        )
        bound |= names_bound_beside(package, "AcmeBroker")
    could_be_a_class = {n for n in bound if re.fullmatch("[A-Z][A-Za-z0-9]*", n)}
    questions = yaml.safe_load((template_src / "copier.yml").read_text())
    refused = set(yaml.safe_load(questions["names_beside_the_class"]["default"]))
    assert could_be_a_class == refused
