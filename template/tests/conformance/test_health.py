"""Health and info: what Protean's Observatory, metrics and CLI read from a broker.

Protean reads these by key (`server/observatory/metrics.py`, `api.py`,
`subscription_status.py`), in the shapes its own brokers return, so a missing
key shows as a zero on a dashboard rather than as an error.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from protean.port.broker import BaseBroker, BrokerCapabilities

from tests.conformance.reasons import (
    INLINE_SPLITS_GROUP_KEYS,
    PENDING_IS_THE_BACKLOG,
    REDIS_NEVER_DEAD_LETTERS,
    REDIS_SPLITS_GROUP_KEYS,
)
from tests.conformance.test_dead_letter_queue import max_retries
from tests.conftest import ReadUntil

PUBLISH = pytest.mark.requires(BrokerCapabilities.PUBLISH)
COUNTS = ("total_messages", "in_flight", "failed", "dlq")


def details(broker: BaseBroker) -> dict[str, Any]:
    stats = broker.health_stats()
    assert stats["status"] == "healthy", stats
    result: dict[str, Any] = stats["details"]
    return result


def counts(broker: BaseBroker) -> dict[str, int]:
    message_counts = details(broker)["message_counts"]
    return {key: message_counts[key] for key in COUNTS}


def moved(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """How each count changed; only the changes, so other streams do not matter."""
    return {key: after[key] - before[key] for key in COUNTS if after[key] - before[key]}


@PUBLISH
def test_ping_succeeds_when_connected(broker: BaseBroker) -> None:
    assert broker.ping() is True


@PUBLISH
def test_health_stats_carry_the_keys_protean_reads(broker: BaseBroker) -> None:
    stats = broker.health_stats()
    assert stats["status"] == "healthy"
    assert stats["connected"] is True
    found = stats["details"]
    assert found["healthy"] is True
    assert "error" not in found
    assert all(type(found["message_counts"][key]) is int for key in COUNTS)
    for section in ("streams", "consumer_groups"):
        assert type(found[section]["count"]) is int
        assert isinstance(found[section]["names"], list)
        assert found[section]["count"] == len(found[section]["names"])
    assert isinstance(found["configuration"], dict)


@PUBLISH
@pytest.mark.beyond_protean(
    "redis",
    reason="RedisBroker counts only streams that have a consumer group or a "
    "subscriber; Protean's metrics show this count as the messages a broker holds",
)
def test_published_messages_are_counted_and_their_stream_named(
    broker: BaseBroker, stream: str
) -> None:
    before = counts(broker)
    for n in range(3):
        broker.publish(stream, {"n": n})
    assert moved(before, counts(broker)) == {"total_messages": 3}
    streams = details(broker)["streams"]
    assert stream in streams["names"]


@PUBLISH
@pytest.mark.beyond_protean(
    "redis",
    reason="RedisBroker counts only streams that have a consumer group or a "
    "subscriber; Protean's metrics show this count as the messages a broker holds",
)
def test_only_streams_named_exactly_stream_dlq_count_as_dead_letters(
    broker: BaseBroker, stream: str
) -> None:
    """Protean writes dead letters to `<stream>:dlq`; other names are streams."""
    before = counts(broker)
    for name in (f"{stream}:DLQ", f"{stream}:dlq-audit", f"{stream}:dlq:2"):
        broker.publish(name, {"n": 1})
    assert moved(before, counts(broker)) == {"total_messages": 3}


@pytest.mark.requires(BrokerCapabilities.ACK_NACK)
@pytest.mark.beyond_protean(
    "redis",
    reason="RedisBroker keeps a nacked message in its pending list and reports "
    "`failed` as 0; the suite asks for the count Protean's InlineBroker keeps",
)
@INLINE_SPLITS_GROUP_KEYS
def test_counts_follow_delivery_ack_and_nack(
    broker: BaseBroker, stream: str, group: str, read_until: ReadUntil
) -> None:
    before = counts(broker)
    broker.publish(stream, {"n": 1})
    broker.publish(stream, {"n": 2})
    [(first, _), (second, _)] = read_until(stream, group, 2)
    assert moved(before, counts(broker)) == {"total_messages": 2, "in_flight": 2}
    assert details(broker)["consumer_groups"]["names"].count(group) == 1

    assert broker.ack(stream, first, group) is True
    assert moved(before, counts(broker)) == {"total_messages": 2, "in_flight": 1}

    assert broker.nack(stream, second, group) is True
    assert moved(before, counts(broker)) == {"total_messages": 2, "failed": 1}


@pytest.mark.requires(BrokerCapabilities.DEAD_LETTER_QUEUE)
@REDIS_NEVER_DEAD_LETTERS
def test_dead_lettered_messages_are_counted(
    broker: BaseBroker, stream: str, group: str, read_until: ReadUntil
) -> None:
    before = counts(broker)
    broker.publish(stream, {"n": 1})
    for _ in range(max_retries(broker) + 1):
        [(identifier, _)] = read_until(stream, group, 1)
        assert broker.nack(stream, identifier, group) is True
    after = moved(before, counts(broker))
    assert after.pop("dlq") == 1
    assert after.get("in_flight", 0) == after.get("failed", 0) == 0


@PUBLISH
def test_info_is_a_dictionary_of_consumer_groups(broker: BaseBroker) -> None:
    assert isinstance(broker.info()["consumer_groups"], dict)


@pytest.mark.requires(BrokerCapabilities.CONSUMER_GROUPS)
@INLINE_SPLITS_GROUP_KEYS
@REDIS_SPLITS_GROUP_KEYS
def test_info_describes_each_group_as_protean_subscriptions_reads_it(
    broker: BaseBroker, stream: str, group: str, read_until: ReadUntil
) -> None:
    broker.publish(stream, {"n": 1})
    read_until(stream, group, 1)
    entry = broker.info()["consumer_groups"][group]
    assert isinstance(entry["consumers"], list)
    assert entry["consumer_count"] == len(entry["consumers"]) >= 1
    # Wall-clock seconds: a monotonic reading means nothing in another process.
    assert abs(entry["created_at"] - time.time()) < 600


@pytest.mark.requires(BrokerCapabilities.CONSUMER_GROUPS)
@PENDING_IS_THE_BACKLOG
def test_info_pending_counts_what_the_group_has_not_finished(
    broker: BaseBroker, stream: str, group: str, read_until: ReadUntil
) -> None:
    for n in range(3):
        broker.publish(stream, {"n": n})
    read_until(stream, group, 1)
    pending = broker.info()["consumer_groups"][group]["pending"]
    # Two undelivered, and the delivered one until it is acked; without
    # ACK_NACK a message is done once delivered.
    assert pending == (3 if broker.has_capability(BrokerCapabilities.ACK_NACK) else 2)


RETRY_NAMES = ("max_retries", "retry_delay", "message_timeout", "enable_dlq")


@pytest.mark.requires(BrokerCapabilities.ACK_NACK)
def test_retry_settings_sit_where_protean_reads_them(broker: BaseBroker) -> None:
    """Protean's own brokers keep them as `broker._max_retries` and so on, and
    its tests compare those with `configuration`; a change shows there too."""
    configuration = details(broker)["configuration"]
    for name in RETRY_NAMES:
        assert configuration[name] == getattr(broker, f"_{name}"), name
    broker._max_retries = 7  # type: ignore[attr-defined]
    assert details(broker)["configuration"]["max_retries"] == 7


@pytest.mark.requires(BrokerCapabilities.CONSUMER_GROUPS)
@pytest.mark.beyond_protean(
    "inline",
    "redis",
    reason="Protean calls `trim` from 0.18, when a subscription sets "
    "`retention_maxlen`; InlineBroker keeps the default, which trims nothing, "
    "and earlier releases have no `trim`",
)
def test_trim_keeps_what_a_group_still_needs(
    broker: BaseBroker, stream: str, group: str, read_until: ReadUntil
) -> None:
    """Without `trim` a durable stream grows forever; with a careless one a
    group loses messages it has not finished."""
    published = [broker.publish(stream, {"n": n}) for n in range(5)]
    delivered = [identifier for identifier, _ in read_until(stream, group, 3)]
    acking = broker.has_capability(BrokerCapabilities.ACK_NACK)
    for identifier in delivered[:2]:
        broker.ack(stream, identifier, group)  # False, and not needed, without ACK_NACK
    before = counts(broker)
    # The two acked (or, without ACK_NACK, the three read) are all it may remove.
    done = 2 if acking else 3
    assert broker.trim(stream, 1) == done  # type: ignore[attr-defined,unused-ignore]
    assert moved(before, counts(broker)) == {"total_messages": -done}
    rest = [identifier for identifier, _ in read_until(stream, group, 2)]
    assert rest == published[3:]
