"""Dead-letter queue: exhausted messages can be listed, inspected, replayed, purged."""

from __future__ import annotations

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
    exhaust(broker, f"{stream}-2", group, read_until)
    assert broker.dlq_purge(f"{stream}-2:dlq") == 1
    assert broker.dlq_list([f"{stream}:dlq", f"{stream}-2:dlq"]) == []


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
