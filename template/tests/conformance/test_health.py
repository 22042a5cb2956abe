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
def test_without_ack_nack_nothing_is_in_flight_or_failed(
    broker: BaseBroker, stream: str, group: str, read_until: ReadUntil
) -> None:
    """A broker that cannot ack settles a message when it delivers it: the
    Observatory must never show it as in flight or failed."""
    if broker.has_capability(BrokerCapabilities.ACK_NACK):
        pytest.skip("the broker declares ACK_NACK: test_counts_follow_delivery_*")
    for n in range(2):
        broker.publish(stream, {"n": n})
    if broker.has_capability(BrokerCapabilities.CONSUMER_GROUPS):
        assert len(read_until(stream, group, 2)) == 2
    found = counts(broker)
    assert (found["in_flight"], found["failed"]) == (0, 0)


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
    names = [f"{stream}:DLQ", f"{stream}:dlq-audit", f"{stream}:dlq:2"]
    before = counts(broker)
    for name in names:
        broker.publish(name, {"n": 1})
    assert moved(before, counts(broker)) == {"total_messages": len(names)}


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
    broker: BaseBroker,
    stream: str,
    group: str,
    read_until: ReadUntil,
    patience: float,
) -> None:
    before = counts(broker)
    broker.publish(stream, {"n": 1})
    for _ in range(max_retries(broker) + 1):
        [(identifier, _)] = read_until(stream, group, 1)
        assert broker.nack(stream, identifier, group) is True
    # A transport may write the dead letter after the nack returns and count
    # it from the server once written: the count may lag a moment, but it
    # must show the dead letter once, never twice.
    deadline = time.monotonic() + patience
    while "dlq" not in (after := moved(before, counts(broker))):
        assert time.monotonic() < deadline, f"never counted: {after}"
        time.sleep(0.1)
    assert after.pop("dlq") == 1
    assert after.get("in_flight", 0) == after.get("failed", 0) == 0


@pytest.mark.requires(BrokerCapabilities.DEAD_LETTER_QUEUE)
@INLINE_SPLITS_GROUP_KEYS
@REDIS_NEVER_DEAD_LETTERS
def test_a_stream_whose_name_holds_dlq_is_counted_as_a_stream(
    broker: BaseBroker,
    stream: str,
    group: str,
    read_until: ReadUntil,
    patience: float,
) -> None:
    """`<stream>:dlq-retry` is a stream; only its own `:dlq` holds dead letters."""
    source = f"{stream}:dlq-retry"
    before = counts(broker)
    broker.publish(source, {"n": 1})
    for _ in range(max_retries(broker) + 1):
        [(identifier, _)] = read_until(source, group, 1)
        assert broker.nack(source, identifier, group) is True
    deadline = time.monotonic() + patience
    while "dlq" not in (after := moved(before, counts(broker))):
        assert time.monotonic() < deadline, f"never counted: {after}"
        time.sleep(0.1)
    assert after["dlq"] == 1, after
    [entry] = broker.dlq_list([f"{source}:dlq"])
    assert entry.stream == source


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
    assert all(entry["consumers"])  # each consumer by its name
    assert entry["consumer_count"] == len(entry["consumers"]) >= 1
    # Wall-clock seconds: a monotonic reading means nothing in another process.
    assert abs(entry["created_at"] - time.time()) < 600


@pytest.mark.requires(BrokerCapabilities.CONSUMER_GROUPS)
@INLINE_SPLITS_GROUP_KEYS
@REDIS_SPLITS_GROUP_KEYS
def test_a_group_is_dated_by_the_wall_clock_when_it_is_created(
    broker: BaseBroker, stream: str, group: str
) -> None:
    """`protean subscriptions` shows the age of a group from `created_at`."""
    before = time.time()
    broker._ensure_group(group, stream)
    after = time.time()
    created_at = broker.info()["consumer_groups"][group]["created_at"]
    assert before - 60 <= created_at <= after + 60, (before, created_at)


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


def variants(name: str) -> list[str]:
    """The name, one it is a prefix of, and one that differs only in case."""
    return [name, f"{name}x", name.upper()]


@pytest.mark.requires(BrokerCapabilities.CONSUMER_GROUPS)
@INLINE_SPLITS_GROUP_KEYS
@REDIS_SPLITS_GROUP_KEYS
def test_streams_and_groups_with_like_names_are_counted_apart(
    broker: BaseBroker, stream: str, group: str, read_until: ReadUntil
) -> None:
    streams, groups = variants(stream), variants(group)
    before = counts(broker)
    for n, name in enumerate(streams):
        for _ in range(n + 1):
            broker.publish(name, {"n": n})
    for name, each in zip(streams, groups, strict=True):
        assert len(read_until(name, each, 1)) == 1
    acking = broker.has_capability(BrokerCapabilities.ACK_NACK)
    expected = {"total_messages": 6, **({"in_flight": 3} if acking else {})}
    assert moved(before, counts(broker)) == expected
    found = details(broker)
    assert all(found["streams"]["names"].count(name) == 1 for name in streams)
    assert all(found["consumer_groups"]["names"].count(g) == 1 for g in groups)


@pytest.mark.requires(BrokerCapabilities.CONSUMER_GROUPS)
@PENDING_IS_THE_BACKLOG
@INLINE_SPLITS_GROUP_KEYS
@REDIS_SPLITS_GROUP_KEYS
def test_info_adds_up_a_group_over_its_streams(
    broker: BaseBroker, stream: str, group: str, read_until: ReadUntil
) -> None:
    """A subscription's pending is what its group has not finished in every
    stream it reads; groups of like names keep their own."""
    streams, groups = variants(stream), variants(group)
    for n, name in enumerate(streams):
        for _ in range(n + 1):
            broker.publish(name, {"n": n})
    for name in streams:
        assert len(read_until(name, group, 1)) == 1
    assert len(read_until(streams[2], groups[1], 1)) == 1
    found = broker.info()["consumer_groups"]
    acking = broker.has_capability(BrokerCapabilities.ACK_NACK)
    assert found[group]["pending"] == (6 if acking else 3)
    per_stream = [found[group]["streams"][name]["pending"] for name in streams]
    assert per_stream == ([1, 2, 3] if acking else [0, 1, 2])
    assert len(found[group]["streams"]) == 3
    assert found[groups[1]]["pending"] == (3 if acking else 2)
    assert list(found[groups[1]]["streams"]) == [streams[2]]
    assert groups[2] not in found


@pytest.mark.requires(BrokerCapabilities.ACK_NACK)
@INLINE_SPLITS_GROUP_KEYS
@REDIS_SPLITS_GROUP_KEYS
def test_info_pending_keeps_messages_awaiting_their_retry(
    broker: BaseBroker, stream: str, group: str, read_until: ReadUntil
) -> None:
    for n in range(2):
        broker.publish(stream, {"n": n})
    [(first, _), (second, _)] = read_until(stream, group, 2)
    assert broker.nack(stream, first, group) is True
    assert broker.ack(stream, second, group) is True
    assert broker.info()["consumer_groups"][group]["pending"] == 1


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


TRIMS = pytest.mark.beyond_protean(
    "inline",
    "redis",
    reason="Protean calls `trim` from 0.18, when a subscription sets "
    "`retention_maxlen`; InlineBroker keeps the default, which trims nothing, "
    "and earlier releases have no `trim`",
)


def trim(broker: BaseBroker, stream: str, maxlen: int) -> int:
    """`broker.trim`, which `BaseBroker` declares only from Protean 0.18."""
    removed: int = broker.trim(stream, maxlen)  # type: ignore[attr-defined,unused-ignore]
    return removed


@pytest.mark.requires(BrokerCapabilities.CONSUMER_GROUPS)
@TRIMS
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
    assert trim(broker, stream, 1) == done
    assert moved(before, counts(broker)) == {"total_messages": -done}
    rest = [identifier for identifier, _ in read_until(stream, group, 2)]
    assert rest == published[3:]


def read_and_finish(
    broker: BaseBroker, stream: str, group: str, count: int, read_until: ReadUntil
) -> None:
    """Read `count` messages in `group` and ack them (reading is enough without
    ACK_NACK)."""
    received = read_until(stream, group, count)
    assert len(received) == count
    for identifier, _ in received:
        broker.ack(stream, identifier, group)


@pytest.mark.requires(BrokerCapabilities.CONSUMER_GROUPS)
@TRIMS
def test_trim_waits_for_the_slowest_group_and_keeps_maxlen(
    broker: BaseBroker, stream: str, group: str, read_until: ReadUntil
) -> None:
    """Every group of the stream counts, and only those: a group of a stream
    whose name starts the same holds nothing back."""
    for n in range(6):
        broker.publish(stream, {"n": n})
    read_and_finish(broker, stream, f"{group}-fast", 6, read_until)
    read_and_finish(broker, stream, f"{group}-slow", 2, read_until)
    neighbour = f"{stream}x"
    broker.publish(neighbour, {"n": 0})
    broker._ensure_group(f"{group}-idle", neighbour)
    assert trim(broker, stream, 10) == 0  # fewer than maxlen
    assert trim(broker, stream, 6) == 0  # exactly maxlen
    assert trim(broker, stream, 1) == 2  # what the slow group finished
    read_and_finish(broker, stream, f"{group}-slow", 4, read_until)
    assert trim(broker, stream, 1) == 3  # all it may, keeping one
    assert trim(broker, neighbour, 0) == 0  # its group has read nothing
    assert trim(broker, f"{stream}-never-published", 5) == 0


@pytest.mark.requires(BrokerCapabilities.CONSUMER_GROUPS)
@TRIMS
def test_trim_of_a_stream_no_group_reads_keeps_the_newest(
    broker: BaseBroker, stream: str, group: str, read_until: ReadUntil
) -> None:
    published = [broker.publish(stream, {"n": n}) for n in range(3)]
    assert trim(broker, stream, 1) == 2
    assert [i for i, _ in read_until(stream, group, 1)] == published[2:]


@pytest.mark.requires(BrokerCapabilities.ACK_NACK)
@TRIMS
def test_trim_keeps_a_message_awaiting_its_retry(
    broker: BaseBroker, stream: str, group: str, read_until: ReadUntil
) -> None:
    published = [broker.publish(stream, {"n": n}) for n in range(2)]
    [(first, _), (second, _)] = read_until(stream, group, 2)
    assert broker.nack(stream, first, group) is True
    assert broker.ack(stream, second, group) is True
    assert trim(broker, stream, 0) == 0  # the nacked one comes first
    assert [i for i, _ in read_until(stream, group, 1)] == [published[0]]
    assert broker.ack(stream, first, group) is True
    assert trim(broker, stream, 0) == 2
