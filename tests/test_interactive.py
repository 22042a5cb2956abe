"""Copier driven through a pseudo-terminal, as a person answers its prompts.

A person who accepts what is offered must get exactly the package that
`--defaults --data ...` gives (which the package tier installs and tests), at
every tier of both backends, on `copier copy` and on `copier update`.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import BACKENDS, TIERS, UNSUPPORTED, git, render
from tests.terminal import (
    COLUMNS,
    ENTER,
    QUESTION_MARK,
    VALIDATION_ERROR,
    Terminal,
    answer_prompts,
    questions,
)

MATRIX = [
    (backend, tier)
    for backend in BACKENDS
    for tier in TIERS
    if (backend, tier) not in UNSUPPORTED
]
# Tiers where extras are neither impossible nor already included.
TIERS_WITH_EXTRAS = {"simple_queuing", "reliable_messaging", "ordered_messaging"}


def tree(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): path.read_text()
        for path in sorted(root.rglob("*"))
        if path.is_file() and ".git" not in path.relative_to(root).parts
    }


def widest(expression: re.Match[str]) -> str:
    """What a `{{ ... }}` in a headline shows at its widest: a length three
    digits, a character one, a name 12 characters (a keyword or a built-in
    provider, the longest a headline quotes)."""
    if "| length" in expression[0]:
        return "9" * 3
    if expression[0].endswith("[0] }}"):
        return "x"
    return "x" * 12


def headlines(validator: str) -> list[str]:
    """The first line of each message a validator can give, at its widest.

    A headline computed whole by one expression is checked as rendered, in
    tests/test_validators.py, which renders every refusal the prompt can show.
    """
    lines = validator.splitlines()
    return [
        re.sub(r"\{\{.*?\}\}", widest, message)
        for tag, message in itertools.pairwise(lines)
        if tag.startswith(("{%- if", "{%- elif"))
        and not re.fullmatch(r"\{\{.*\}\}", message)
    ]


def test_every_prompt_line_fits_an_80_column_terminal() -> None:
    """prompt_toolkit cuts a line at the right edge instead of wrapping it."""
    last = COLUMNS - 1
    checked = 0
    for question in questions().values():
        for line in question.help:
            assert len(f"{QUESTION_MARK}  {line}") <= last, (question.key, line)
        refusal = f"{VALIDATION_ERROR} '{question.key}': "
        for headline in headlines(question.validator):
            assert len(refusal + headline) <= last, (question.key, headline)
        for choice in question.choices:
            assert len(f" » ○ {choice.label}") <= last, (question.key, choice.label)
            for headline in headlines(choice.validator):
                shown = f"   - {choice.label} ({headline})"
                assert len(shown) <= last, headline
                checked += 1
        checked += 1
    assert checked >= 15


@pytest.mark.terminal
@pytest.mark.parametrize(
    ("backend", "tier"), MATRIX, ids=[f"{b}-{t}" for b, t in MATRIX]
)
def test_accepting_the_offered_answers_gives_the_package_data_would(
    template_src: Path, tmp_path: Path, backend: str, tier: str
) -> None:
    terminal = Terminal(["copy", str(template_src), "pkg"], cwd=tmp_path)
    asked = answer_prompts(
        terminal, {"broker_name": "acme", "backend": backend, "capability_tier": tier}
    )
    assert terminal.finish() == 0, terminal.text()
    assert ("extra_capabilities" in asked) == (tier in TIERS_WITH_EXTRAS), asked
    assert "Your broker package is ready" in terminal.text()
    expected = render(
        template_src, tmp_path / "api", backend=backend, capability_tier=tier
    )
    assert tree(tmp_path / "pkg") == tree(expected)


@pytest.mark.terminal
@pytest.mark.parametrize(
    ("key", "bad", "shown"),
    [
        ("broker_name", "", "required: type a name, e.g. kafka"),
        ("broker_name", "Kafka-Broker", "no capitals: use a-z, 0-9 and _"),
        ("broker_name", "rabbit-bus", "`-` is not allowed: use `_`"),
        ("broker_name", "k" * 33, "33 characters, at most 30"),
        ("broker_name", "redis", '"redis" is taken by Protean'),
        ("broker_name", "class", '"class" is a Python keyword'),
        ("package_name", "json", "shadows a standard library module"),
        ("class_name", "Engine", "taken; try EngineBroker"),
    ],
    ids=["empty", "capitals", "dash", "too-long", "redis", "keyword", "json", "Engine"],
)
def test_a_bad_answer_is_refused_on_screen_and_the_corrected_one_taken(
    template_src: Path, tmp_path: Path, key: str, bad: str, shown: str
) -> None:
    terminal = Terminal(["copy", str(template_src), "pkg"], cwd=tmp_path)
    # Then what a person types instead: the offered value would be `bad` again.
    good = {"broker_name": "acme", "package_name": "protean_acme"}
    good["class_name"] = "AcmeBroker"
    answer_prompts(terminal, good, typed_first={key: bad})
    assert terminal.finish() == 0, terminal.text()
    # The rule that failed, and what to type, is on screen: nothing cut at the
    # right edge (the prompt shows the refusal's first line only).
    assert terminal.refusals == [f"{VALIDATION_ERROR} '{key}': {shown}"]
    assert len(terminal.refusals[0]) < COLUMNS
    assert (tmp_path / "pkg" / "src" / "protean_acme" / "broker.py").is_file()


@pytest.mark.terminal
def test_the_broker_name_field_starts_empty_and_enter_asks_for_a_name(
    template_src: Path, tmp_path: Path
) -> None:
    """No greyed-out name that reads as a default: Enter says a name is needed."""
    terminal = Terminal(["copy", str(template_src), "pkg"], cwd=tmp_path)
    broker_name = questions()["broker_name"]
    terminal.wait_for(lambda: terminal.showing(broker_name), "the first question")
    field = terminal.current_prompt()[len(broker_name.help)]
    assert field.strip() == "", terminal.text()
    terminal.send(ENTER)
    terminal.wait_for(lambda: VALIDATION_ERROR in terminal.text(), "a refusal")
    assert f"{VALIDATION_ERROR} 'broker_name': required: type a name, e.g. kafka" in (
        terminal.lines()
    )
    answer_prompts(terminal, {"broker_name": "acme"})
    assert terminal.finish() == 0, terminal.text()
    assert (tmp_path / "pkg" / "src" / "protean_acme" / "broker.py").is_file()


@pytest.mark.terminal
@pytest.mark.parametrize("backend", BACKENDS)
def test_copier_update_moves_through_every_tier_interactively(
    template_src: Path, tmp_path: Path, backend: str
) -> None:
    package = render(template_src, tmp_path / "pkg", backend=backend)
    git(package, "init", "-q", "-b", "main")
    tiers = [tier for tier in TIERS if (backend, tier) not in UNSUPPORTED]
    for tier in [*tiers[1:], tiers[0]]:
        git(package, "add", "-A")
        git(
            package, "-c", "user.name=t", "-c", "user.email=t@e.x", "commit", "-qm", "x"
        )
        terminal = Terminal(["update"], cwd=package)
        asked = answer_prompts(terminal, {"capability_tier": tier})
        assert terminal.finish() == 0, terminal.text()
        assert "capability_tier" in asked
        answers = yaml.safe_load((package / ".copier-answers.yml").read_text())
        assert answers["capability_tier"] == tier
        # Extras the person kept from the last answers, as a fresh copy takes them.
        expected = render(
            template_src,
            tmp_path / tier,
            **{key: value for key, value in answers.items() if key[0] != "_"},
        )
        # CHANGELOG.md is the author's from the first copy on (_skip_if_exists).
        updated, fresh = tree(package), tree(expected)
        del updated["CHANGELOG.md"], fresh["CHANGELOG.md"]
        assert updated == fresh, tier
