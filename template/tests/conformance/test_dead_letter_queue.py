"""Dead-letter queue: exhausted messages can be listed, inspected, replayed, purged."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from protean.port.broker import BaseBroker, BrokerCapabilities

from tests.conformance.reasons import (
    INLINE_SPLITS_GROUP_KEYS,
    REDIS_NEVER_DEAD_LETTERS,
)
from tests.conftest import ReadUntil

pytestmark = pytest.mark.requires(BrokerCapabilities.DEAD_LETTER_QUEUE)


def max_retries(broker: BaseBroker) -> int:
    """Nacks before a dead letter, where Protean's own brokers keep the setting."""
    return int(broker._max_retries)  # type: ignore[attr-defined]


def exhaust(broker: BaseBroker, stream: str, group: str, read_until: ReadUntil) -> str:
    """Nack one message until the broker gives up on it; return its identifier."""
    identifier = broker.publish(stream, {"order_id": 42})
    for _ in range(max_retries(broker) + 1):
        [(delivered, _)] = read_until(stream, group, 1)
        assert delivered == identifier
        assert broker.nack(stream, delivered, group) is True
    assert identifier is not None
    return identifier


@INLINE_SPLITS_GROUP_KEYS
@REDIS_NEVER_DEAD_LETTERS
def test_an_exhausted_message_moves_to_the_dlq(
    broker: BaseBroker, stream: str, group: str, read_until: ReadUntil, quiet: float
) -> None:
    identifier = exhaust(broker, stream, group, read_until)
    assert read_until(stream, group, 1, timeout=quiet) == []
    [entry] = broker.dlq_list([f"{stream}:dlq"])
    assert entry.original_id == identifier
    assert entry.stream == stream
    assert entry.consumer_group == group
    assert entry.payload["order_id"] == 42
    assert broker.dlq_inspect(f"{stream}:dlq", entry.dlq_id) == entry


@INLINE_SPLITS_GROUP_KEYS
@REDIS_NEVER_DEAD_LETTERS
def test_a_dead_letter_says_why_and_when_it_failed(
    broker: BaseBroker, stream: str, group: str, read_until: ReadUntil
) -> None:
    """`protean dlq` shows the reason and the time: a wall-clock time with its
    zone, which other processes and people read."""
    exhaust(broker, stream, group, read_until)
    [entry] = broker.dlq_list([f"{stream}:dlq"])
    assert entry.failure_reason not in ("", "unknown")
    assert entry.failed_at is not None
    failed_at = datetime.fromisoformat(entry.failed_at)
    assert failed_at.tzinfo is not None
    assert abs((datetime.now(UTC) - failed_at).total_seconds()) < 300
    assert entry.retry_count >= max_retries(broker)


@INLINE_SPLITS_GROUP_KEYS
@REDIS_NEVER_DEAD_LETTERS
def test_replay_puts_the_message_back_on_its_stream(
    broker: BaseBroker, stream: str, group: str, read_until: ReadUntil
) -> None:
    exhaust(broker, stream, group, read_until)
    [entry] = broker.dlq_list([f"{stream}:dlq"])
    assert broker.dlq_replay(f"{stream}:dlq", entry.dlq_id, stream) is True
    assert broker.dlq_list([f"{stream}:dlq"]) == []
    [(_, payload)] = read_until(stream, group, 1)
    assert payload == {"order_id": 42}


@INLINE_SPLITS_GROUP_KEYS
@REDIS_NEVER_DEAD_LETTERS
def test_replay_all_and_purge_empty_the_dlq(
    broker: BaseBroker, stream: str, group: str, read_until: ReadUntil
) -> None:
    exhaust(broker, stream, group, read_until)
    assert broker.dlq_replay_all(f"{stream}:dlq", stream) == 1
    [(_, payload)] = read_until(stream, group, 1)
    assert payload == {"order_id": 42}
    exhaust(broker, f"{stream}-2", group, read_until)
    assert broker.dlq_purge(f"{stream}-2:dlq") == 1
    assert broker.dlq_list([f"{stream}:dlq", f"{stream}-2:dlq"]) == []


@INLINE_SPLITS_GROUP_KEYS
@REDIS_NEVER_DEAD_LETTERS
@pytest.mark.beyond_protean(
    "redis",
    reason="RedisBroker's nack answers True again for a message it already "
    "released, which would count a second failed attempt",
)
def test_a_repeated_nack_does_not_bring_the_dead_letter_closer(
    broker: BaseBroker, stream: str, group: str, read_until: ReadUntil, quiet: float
) -> None:
    """Each delivery counts one failed attempt, however often it is nacked:
    the message comes back `max_retries` times before its dead letter."""
    identifier = broker.publish(stream, {"order_id": 7})
    for _ in range(max_retries(broker) + 1):
        assert broker.dlq_list([f"{stream}:dlq"]) == []
        [(delivered, _)] = read_until(stream, group, 1)
        assert delivered == identifier
        assert broker.nack(stream, delivered, group) is True
        assert broker.nack(stream, delivered, group) is False
    assert read_until(stream, group, 1, timeout=quiet) == []
    [entry] = broker.dlq_list([f"{stream}:dlq"])
    assert entry.original_id == identifier


@INLINE_SPLITS_GROUP_KEYS
@REDIS_NEVER_DEAD_LETTERS
def test_dead_letters_stay_with_their_group_and_stream(
    broker: BaseBroker, stream: str, group: str, read_until: ReadUntil, quiet: float
) -> None:
    """One group exhausting a message changes nothing for another group, nor
    for a stream whose name it starts or differs from only in case."""
    neighbours = [f"{stream}x", stream.upper()]
    identifier = broker.publish(stream, {"order_id": 1})
    others = [broker.publish(name, {"order_id": 2}) for name in neighbours]
    for _ in range(max_retries(broker) + 1):
        [(delivered, _)] = read_until(stream, group, 1)
        assert broker.nack(stream, delivered, group) is True
    assert read_until(stream, group, 1, timeout=quiet) == []
    patient = group.upper()
    [(kept, payload)] = read_until(stream, patient, 1)
    assert (kept, payload) == (identifier, {"order_id": 1})
    assert broker.ack(stream, kept, patient) is True
    for name, published in zip(neighbours, others, strict=True):
        [(other, _)] = read_until(name, group, 1)
        assert other == published
        assert broker.ack(name, other, group) is True
        assert broker.dlq_list([f"{name}:dlq"]) == []
    [entry] = broker.dlq_list([f"{stream}:dlq", *(f"{n}:dlq" for n in neighbours)])
    assert (entry.original_id, entry.stream) == (identifier, stream)
    assert entry.consumer_group == group


def engine_dead_letter(
    stream: str, group: str, original_id: str, failed_at: str
) -> dict[str, Any]:
    """A dead letter as Protean's engine (0.18) publishes it to `<stream>:dlq`
    for the groups it owns: the payload with `_dlq_metadata`, no reason."""
    return {
        "order_id": original_id,
        "_dlq_metadata": {
            "original_stream": stream,
            "original_id": original_id,
            "consumer_group": group,
            "consumer": f"{group}-consumer",
            "failed_at": failed_at,
            "retry_count": 3,
        },
    }


@INLINE_SPLITS_GROUP_KEYS
def test_dead_letters_protean_writes_are_listed_as_its_brokers_describe_them(
    broker: BaseBroker,
    stream: str,
    group: str,
    read_until: ReadUntil,
    patience: float,
) -> None:
    """`protean dlq` and the Observatory read what the engine wrote through
    `dlq_list`, newest first: the fields of its metadata, or for an entry
    without any (another tool wrote it) what Protean's own brokers assume."""
    neighbour = f"{stream}x"
    broker.publish(
        f"{stream}:dlq", engine_dead_letter(stream, group, "m-1", "2026-01-01T00:00")
    )
    broker.publish(
        f"{neighbour}:dlq",
        engine_dead_letter(neighbour, group, "m-2", "2026-02-01T00:00"),
    )
    broker.publish(f"{stream}:dlq", {"order_id": "bare"})
    queues = [f"{stream}:dlq", f"{neighbour}:dlq"]
    deadline = time.monotonic() + patience
    while len(entries := broker.dlq_list(queues)) < 3:
        assert time.monotonic() < deadline, entries
        time.sleep(0.1)
    newer, older, bare = entries
    assert [newer.original_id, older.original_id] == ["m-2", "m-1"]
    assert (newer.stream, newer.dlq_stream) == (neighbour, f"{neighbour}:dlq")
    assert (older.stream, older.dlq_stream) == (stream, f"{stream}:dlq")
    assert older.consumer_group == group
    assert older.failure_reason == "unknown"
    assert (older.failed_at, older.retry_count) == ("2026-01-01T00:00", 3)
    assert older.payload["order_id"] == "m-1"
    assert bare.original_id == bare.dlq_id
    assert (bare.stream, bare.dlq_stream) == (stream, f"{stream}:dlq")
    assert (bare.consumer_group, bare.failure_reason) == ("", "unknown")
    assert (bare.failed_at, bare.retry_count) == (None, 0)
    assert bare.payload == {"order_id": "bare"}
    assert broker.dlq_list(queues, limit=1) == [newer]
    assert broker.dlq_inspect(f"{stream}:dlq", bare.dlq_id) == bare
    # Found in its own queue only (an empty one: Redis ids repeat across streams).
    assert broker.dlq_inspect(f"{stream}y:dlq", bare.dlq_id) is None
    assert broker.dlq_replay(f"{stream}y:dlq", bare.dlq_id, stream) is False
    assert broker.dlq_replay(f"{stream}:dlq", older.dlq_id, stream) is True
    # Replayed without the metadata, as Protean's own brokers replay.
    [(_, payload)] = read_until(stream, group, 1)
    assert payload == {"order_id": "m-1"}
    assert [e.original_id for e in broker.dlq_list(queues)] == ["m-2", bare.dlq_id]


def test_unknown_dlq_entries_are_reported_as_missing(
    broker: BaseBroker, stream: str
) -> None:
    assert broker.dlq_inspect(f"{stream}:dlq", "no-such-entry") is None
    assert broker.dlq_replay(f"{stream}:dlq", "no-such-entry", stream) is False


@pytest.mark.beyond_protean(
    "inline",
    "redis",
    before="0.18",
    reason="Protean's engine owns the retries of its subscriptions from 0.18; "
    "earlier brokers have no `_mark_subscription_owned`",
)
def test_groups_owned_by_protean_are_never_dead_lettered(
    broker: BaseBroker, stream: str, group: str, read_until: ReadUntil
) -> None:
    # BaseBroker declares it from Protean 0.18, when the engine began to own retries.
    broker._mark_subscription_owned(stream, group)  # type: ignore[attr-defined,unused-ignore]
    identifier = broker.publish(stream, {"order_id": 1})
    for _ in range(max_retries(broker) + 2):
        [(delivered, _)] = read_until(stream, group, 1)
        assert delivered == identifier
        assert broker.nack(stream, delivered, group) is True
    assert broker.dlq_list([f"{stream}:dlq"]) == []
