"""The generated suite catches the mistakes a port of the skeleton falls into.

Each bug below is one a transport author makes when replacing the skeleton's
in-process store (found porting it to a durable store). It is planted in a
copy of a generated skeleton package, one render per tier, and the conformance
tests of that tier must then fail; the same tests pass on the unpatched copy,
which proves the harness. The behaviours are promised from a tier on, so a bug
is planted only at the tiers that declare what it breaks.

No promise rests on one test: an author who lists a test in `UNPROMISED` (or
deletes it) must not lose the promise with it, so each bug names at least two
tests, checking it from different sides, and every one of them that runs at
the tier must fail.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import TIERS, make_venv, render, with_dev_tools

pytestmark = pytest.mark.package

GROUPS = TIERS[1:]  # CONSUMER_GROUPS and up
ACKS = TIERS[2:]  # ACK_NACK and DELIVERY_GUARANTEES and up
DEAD_LETTERS = ("enterprise_streaming",)  # below it `<stream>:dlq` is a stream


@dataclass(frozen=True)
class Bug:
    """Text replaced in the generated `broker.py`, and the conformance tests
    that catch it, each on its own; tests of capabilities the tier lacks skip."""

    name: str
    patch: tuple[tuple[str, str], ...]
    tests: tuple[str, ...]
    tiers: tuple[str, ...]


BUGS = (
    Bug(
        "writes never committed: each instance sees only its own",
        (("return _STORES.setdefault(name, _Store())", "return _Store()"),),
        (
            "test_durability.py::test_another_instance_reads_what_one_published",
            "test_durability.py::test_a_reset_on_one_instance_empties_the_others",
        ),
        ACKS,
    ),
    Bug(
        "message_timeout ignored",
        (
            (
                ">= self.settings.message_timeout",
                ">= self.settings.message_timeout * 10**9",
            ),
        ),
        (
            "test_ack_nack.py::test_an_unacked_delivery_comes_back_after_message_timeout",
            "test_durability.py::test_a_delivery_never_settled_comes_back_to_another_instance",
        ),
        ACKS,
    ),
    Bug(
        "a second nack of one delivery is True",
        (
            (
                "if group is None or group.in_flight.pop(identifier, None) is None:",
                "if group is None or (group.in_flight.pop(identifier, None) is None"
                " and identifier not in group.retry_at):",
            ),
        ),
        (
            "test_ack_nack.py::test_a_second_nack_of_one_delivery_is_false",
            "test_durability.py::test_a_nack_counts_once_whichever_instance_repeats_it",
            "test_dead_letter_queue.py::test_a_repeated_nack_does_not_bring_the_dead_letter_closer",
        ),
        ACKS,
    ),
    Bug(
        "a new group starts at the end of the stream",
        (
            (
                "return self._server.groups.setdefault((stream, group_name), _Group())",
                "return self._server.groups.setdefault((stream, group_name), _Group("
                "cursor=self._server.streams.get(stream, _Stream()).next_offset))",
            ),
        ),
        (
            "test_retrieval.py::test_read_returns_the_published_identifier_and_payload",
            "test_consumer_groups.py::test_every_group_receives_every_message",
        ),
        GROUPS,
    ),
    Bug(
        "the cursor is off by one",
        (
            (
                "record = log.records.get(group.cursor)",
                "record = log.records.get(group.cursor + 1)",
            ),
        ),
        (
            "test_retrieval.py::test_read_returns_the_published_identifier_and_payload",
            "test_consumer_groups.py::test_a_group_that_caught_up_reads_what_is_published_next",
        ),
        GROUPS,
    ),
    Bug(
        "ack ignores the group",
        (
            (
                "group = self._server.groups.get((stream, consumer_group))\n"
                "            if group is None:\n"
                "                return False\n"
                "            # A nacked",
                "group = next((g for (s, _), g in self._server.groups.items()"
                " if s == stream and identifier in g.in_flight), None)\n"
                "            if group is None:\n"
                "                return False\n"
                "            # A nacked",
            ),
        ),
        (
            "test_ack_nack.py::test_ack_of_an_unknown_identifier_or_foreign_group_is_false",
            "test_ack_nack.py::test_an_ack_settles_the_message_in_its_own_group_only",
        ),
        ACKS,
    ),
    Bug(
        "pending leaves out unacked messages",
        (('entry["pending"] += lag + group.unacked', 'entry["pending"] += lag'),),
        (
            "test_health.py::test_info_pending_counts_what_the_group_has_not_finished",
            "test_health.py::test_info_pending_keeps_messages_awaiting_their_retry",
        ),
        ACKS,
    ),
    Bug(
        "deliveries not recorded",
        (
            (
                "group.in_flight[identifier] = _Delivery(consumer, group.last_active)",
                "pass",
            ),
        ),
        (
            "test_ack_nack.py::test_ack_of_a_delivered_message_is_true_once",
            "test_ack_nack.py::test_acks_in_any_order_settle_each_message_once",
        ),
        ACKS,
    ),
    Bug(
        "stored times from a monotonic clock",
        (
            (
                "created_at: float = field(default_factory=time.time)",
                "created_at: float = field(default_factory=time.monotonic)",
            ),
            (
                "group.consumers.add(consumer)\n"
                "        group.last_active = time.time()",
                "group.consumers.add(consumer)\n"
                "        group.last_active = time.monotonic()",
            ),
        ),
        (
            "test_health.py::test_info_describes_each_group_as_protean_subscriptions_reads_it",
            "test_health.py::test_a_group_is_dated_by_the_wall_clock_when_it_is_created",
        ),
        GROUPS,
    ),
    Bug(
        "dead-letter streams matched loosely",
        (
            (
                'if name.endswith(":dlq")]',
                'if ":dlq" in name.lower()]',
            ),
        ),
        (
            "test_health.py::test_only_streams_named_exactly_stream_dlq_count_as_dead_letters",
            "test_health.py::test_a_stream_whose_name_holds_dlq_is_counted_as_a_stream",
        ),
        DEAD_LETTERS,
    ),
)

RUNNER = Path(__file__).with_name("planted_runner.py")


@pytest.fixture(scope="module")
def shared_bin(
    template_src: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """One environment for every copy: each runs with its own `src` first on
    `sys.path`, so the installed package only provides the entry point."""
    root = tmp_path_factory.mktemp("planted")
    package = render(
        template_src,
        root / "pkg",
        backend="skeleton",
        capability_tier="enterprise_streaming",
    )
    yield make_venv(root / "venv", *with_dev_tools(package))


def plant(package: Path, bug: Bug, destination: Path) -> Path:
    shutil.copytree(package, destination)
    [broker] = destination.glob("src/*/broker.py")
    source = broker.read_text()
    for old, new in bug.patch:
        assert source.count(old) == 1, f"{bug.name}: {old!r} is no longer in broker.py"
        source = source.replace(old, new)
    broker.write_text(source)
    return destination


def suites(
    bin_dir: Path, workdir: Path, runs: list[tuple[Path, tuple[str, ...]]]
) -> list[tuple[int, str]]:
    """Each copy's exit code and output for the conformance tests named."""
    jobs = [
        {
            "package": str(copy),
            "args": [
                "-q",
                "-p",
                "no:cacheprovider",
                *(f"tests/conformance/{name}" for name in tests),
            ],
            "log": str(workdir / f"run-{n}.log"),
        }
        for n, (copy, tests) in enumerate(runs)
    ]
    (workdir / "jobs.json").write_text(json.dumps(jobs))
    result = subprocess.run(
        [bin_dir / "python", RUNNER, workdir / "jobs.json"],
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    codes = json.loads(result.stdout)
    return [
        (code, Path(job["log"]).read_text())
        for code, job in zip(codes, jobs, strict=True)
    ]


@pytest.mark.parametrize("tier", TIERS)
def test_each_planted_bug_fails_the_suite_of_its_tier(
    template_src: Path, shared_bin: Path, tmp_path: Path, tier: str
) -> None:
    package = render(
        template_src, tmp_path / "pkg", backend="skeleton", capability_tier=tier
    )
    bugs = [bug for bug in BUGS if tier in bug.tiers]
    every_test = tuple(sorted({name for bug in bugs for name in bug.tests}))
    runs = [(package, every_test)] + [
        (plant(package, bug, tmp_path / f"bug-{n}"), bug.tests)
        for n, bug in enumerate(bugs)
    ]
    (code, output), *planted = suites(shared_bin, tmp_path, runs)
    assert code == 0, output[-3000:]
    missed = [
        bug.name
        for bug, (code, output) in zip(bugs, planted, strict=True)
        # 1: tests ran and failed; anything else is a harness problem.
        if code != 1 or not caught_by_every_test(output)
    ]
    assert not missed, f"the {tier} suite passes with: {missed}"


def caught_by_every_test(output: str) -> bool:
    """At least two tests failed and none of those that ran passed."""
    summaries = re.findall(r"^.*\d+ (?:failed|passed).* in [\d.]+s.*$", output, re.M)
    summary = summaries[-1] if summaries else ""
    failed = re.search(r"(\d+) failed", summary)
    return failed is not None and int(failed[1]) >= 2 and " passed" not in summary


def test_each_planted_bug_is_named_with_two_tests_or_more() -> None:
    for bug in BUGS:
        assert len(set(bug.tests)) >= 2, bug.name
        tiers = [t for t in bug.tiers if sum(runs_at(n, t) for n in bug.tests) < 2]
        assert not tiers, f"{bug.name}: one test at {tiers}"


def runs_at(test: str, tier: str) -> bool:
    """Whether the test's capability is declared at the tier (the dead-letter
    tests need enterprise_streaming, the durability ones reliable_messaging)."""
    if test.startswith("test_dead_letter_queue.py"):
        return tier in DEAD_LETTERS
    if test.startswith("test_durability.py"):
        return tier in ACKS
    return True
