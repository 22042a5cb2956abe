"""Answer Copier's prompts through a pseudo-terminal, the way a person does.

`pexpect` runs the real `copier` command on a pseudo-terminal of 80 columns and
`pyte` keeps the screen a person would see, so the tests read what is actually
displayed (a help line cut at the right edge is visible as such) and answer with
keystrokes: Enter for a default, arrows to move in a list, Ctrl-U to clear a
pre-filled answer.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pexpect
import pyte
import yaml

from tests.conftest import REPO_ROOT

COLUMNS, ROWS = 80, 40
ENTER, CLEAR_LINE = "\r", "\x15"
UP, DOWN = "\x1b[A", "\x1b[B"
QUESTION_MARK = "🎤"
POINTER = "»"
VALIDATION_ERROR = "Validation error for question"
COPIER = Path(sys.executable).parent / "copier"


@dataclass(frozen=True)
class Choice:
    label: str
    value: Any
    validator: str  # empty when the choice is always offered


@dataclass(frozen=True)
class Question:
    key: str
    help: tuple[str, ...]
    validator: str
    choices: tuple[Choice, ...]  # empty for free text

    @property
    def title(self) -> str:
        """The first line of its help: what identifies it on screen."""
        return self.help[0]


def questions() -> dict[str, Question]:
    """The questions of copier.yml a person can be asked, in order."""
    spec = yaml.safe_load((REPO_ROOT / "copier.yml").read_text())
    asked: dict[str, Question] = {}
    for key, details in spec.items():
        if key.startswith("_") or details.get("when") is False:
            continue
        choices = details.get("choices", {})
        if isinstance(choices, list):
            choices = {str(choice): choice for choice in choices}
        asked[key] = Question(
            key,
            tuple(details["help"].splitlines()),
            details.get("validator", ""),
            tuple(
                Choice(label, value["value"], value.get("validator", ""))
                if isinstance(value, dict)
                else Choice(label, value, "")
                for label, value in choices.items()
            ),
        )
    return asked


Answer = str | Sequence[str] | None  # None: accept what is offered


@dataclass
class Terminal:
    """One `copier` run on a pseudo-terminal, with the screen a person sees."""

    argv: Sequence[str]
    cwd: Path
    timeout: float = 60.0
    program: str = str(COPIER)  # "bash" with ["-c", line] runs a README line
    screen: pyte.Screen = field(init=False)
    transcript: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)  # as shown on screen

    def __post_init__(self) -> None:
        self.screen = pyte.Screen(COLUMNS, ROWS)
        self.stream = pyte.Stream(self.screen)
        env = {**os.environ, "TERM": "xterm-256color", "PROMPT_TOOLKIT_NO_CPR": "1"}
        env.pop("CI", None)  # the prompts are what is under test
        self.child = pexpect.spawn(
            self.program,
            list(self.argv),
            cwd=str(self.cwd),
            env=env,
            dimensions=(ROWS, COLUMNS),
            encoding="utf-8",
            codec_errors="replace",
        )

    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.screen.display]

    def text(self) -> str:
        return "\n".join(line for line in self.lines() if line)

    def _read(self, wait: float) -> str | None:
        """Feed what the program printed to the screen: "" if nothing came
        within `wait` seconds, None once it has exited."""
        try:
            chunk: str = self.child.read_nonblocking(65536, timeout=wait)
        except pexpect.TIMEOUT:
            return ""
        except pexpect.EOF:
            return None
        self.transcript.append(chunk)
        self.stream.feed(chunk)
        return chunk

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        """Read until `condition` holds, then until the redraw is complete."""
        deadline = time.monotonic() + self.timeout
        while not condition():
            ended = self._read(0.2) is None
            if (ended or time.monotonic() > deadline) and not condition():
                raise AssertionError(f"waited for {what}; the screen:\n{self.text()}")
        while self._read(0.15):
            pass

    def current_prompt(self) -> list[str]:
        """The lines from the lowest question mark down."""
        lines = self.lines()
        starts = [i for i, line in enumerate(lines) if line.startswith(QUESTION_MARK)]
        return lines[starts[-1] :] if starts else []

    def showing(self, question: Question) -> bool:
        prompt = self.current_prompt()
        return bool(prompt) and prompt[0] == f"{QUESTION_MARK} {question.title}"

    def pointed_label(self) -> str:
        for line in self.current_prompt()[1:]:
            stripped = line.strip()
            if stripped.startswith(POINTER):
                return stripped.removeprefix(POINTER).strip()
        raise AssertionError(f"no choice is pointed at:\n{self.text()}")

    def send(self, keys: str) -> None:
        self.child.send(keys)

    def finish(self) -> int:
        """Wait for the program to end; its exit status."""
        deadline = time.monotonic() + self.timeout
        while self._read(0.5) is not None:
            if time.monotonic() > deadline:
                self.child.terminate(force=True)
                raise AssertionError(f"copier did not finish:\n{self.text()}")
        self.child.close()
        status: int = self.child.exitstatus if self.child.exitstatus is not None else -1
        return status


def choose(terminal: Terminal, question: Question, value: Any) -> None:
    """Move the pointer to the choice whose value is `value`, then confirm."""
    labels = [choice.label for choice in question.choices]
    [target] = [choice.label for choice in question.choices if choice.value == value]
    for _ in range(2 * len(labels)):
        pointed = terminal.pointed_label()
        if pointed.startswith(target):
            terminal.send(ENTER)
            return
        index = next(i for i, label in enumerate(labels) if pointed.startswith(label))
        terminal.send(DOWN if labels.index(target) > index else UP)
        terminal.wait_for(
            lambda was=pointed: not terminal.pointed_label().startswith(was),
            "the pointer to move",
        )
    raise AssertionError(f"could not reach {target!r}:\n{terminal.text()}")


def answer_prompts(
    terminal: Terminal,
    answers: Mapping[str, Answer],
    typed_first: Mapping[str, str] | None = None,
) -> list[str]:
    """Answer every question Copier shows; return the keys that were asked.

    `answers` gives the value to enter for a key (a choice's value for a list);
    keys not in it are accepted as offered. `typed_first` gives a bad value to
    type before the real one: the prompt must refuse it and stay.
    """
    pending = list(questions().values())
    asked: list[str] = []
    typed_first = dict(typed_first or {})
    while True:
        terminal.wait_for(
            lambda waiting=pending: (
                not terminal.child.isalive()
                or any(terminal.showing(q) for q in waiting)
            ),
            "the next question",
        )
        current = next((q for q in pending if terminal.showing(q)), None)
        if current is None:
            return asked
        pending = pending[pending.index(current) + 1 :]
        asked.append(current.key)
        if current.key in typed_first:
            refuse(terminal, current, typed_first.pop(current.key))
        answer = answers.get(current.key)
        if answer is None:
            terminal.send(ENTER)
        elif current.choices:
            choose(terminal, current, answer)
        else:
            terminal.send(CLEAR_LINE + str(answer) + ENTER)
        terminal.wait_for(
            lambda q=current: not terminal.showing(q) or not terminal.child.isalive(),
            "the answer to be taken",
        )


def refuse(terminal: Terminal, question: Question, bad: str) -> None:
    """Type `bad`, press Enter, and check the prompt refuses it and stays."""
    terminal.send(CLEAR_LINE + bad + ENTER)
    terminal.wait_for(lambda: VALIDATION_ERROR in terminal.text(), "a refusal")
    assert terminal.showing(question), terminal.text()
    terminal.refusals += [
        line for line in terminal.lines() if line.startswith(VALIDATION_ERROR)
    ]
