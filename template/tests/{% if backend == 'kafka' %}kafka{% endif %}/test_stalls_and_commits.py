"""Stalls and lagging commits a close review found: dead-letter writes that
held the caller and the group, commits that waited for another partition or
for a blocking read to end, close() and reads that outlived their timeouts.
Bounds are generous (the machine may be busy); what each test pins is the
order of magnitude, a publish timeout against a moment."""

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from tests.consumers import drain, wait_for
from tests.kafka.conftest import BrokerFactory
from tests.kafka.helpers import committed, publishes
from tests.kafka.test_kafka import Names, aggregate_message, ids_of

# A dead-letter write that waited for Kafka would take this long.
SLOW_PUBLISH_MS = 15_000
# What a caller may wait instead, on a busy machine.
A_MOMENT = 3.0


def create_topic(admin: AdminClient, topic: str, compacted: bool = False) -> None:
    """Create ``topic`` as an operator would, for brokers that create none."""
    config = {"cleanup.policy": "compact"} if compacted else {}
    new = NewTopic(topic, num_partitions=1, replication_factor=1, config=config)
    admin.create_topics([new])[topic].result(20)
    wait_for(lambda: topic in admin.list_topics(timeout=10).topics, timeout=20)


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def dlq_errors(caplog: pytest.LogCaptureFixture, topic: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and topic in r.getMessage()
    ]


def test_a_dead_letter_write_holds_up_neither_the_caller_nor_the_group(
    make_broker: BrokerFactory,
    admin: AdminClient,
    unique: Names,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With CREATE_TOPICS = false and the group's dead-letter topic missing,
    every write fails: nack, acks on another thread and short reads still
    return at once, the error is logged once, naming the topic and the key,
    and the message waits (uncommitted) until the topic exists."""
    broker = make_broker(
        CREATE_TOPICS=False,
        max_retries=0,
        COMMIT_INTERVAL_MS=0,
        PUBLISH_TIMEOUT_MS=SLOW_PUBLISH_MS,
    )
    stream, group = unique("shop::order"), unique("group")
    create_topic(admin, broker.names.stream_topic(stream))
    ids = broker.publish_many(stream, [{"n": n} for n in range(3)])
    drain(broker, stream, group, 3)
    caplog.set_level(logging.ERROR)

    nacked, nack_took = timed(lambda: broker.nack(stream, ids[2], group))
    acks: list[tuple[bool, float]] = []

    def ack_both() -> None:
        for identifier in ids[:2]:
            started = time.monotonic()
            acked = broker.ack(stream, identifier, group)
            acks.append((acked, time.monotonic() - started))

    acker = threading.Thread(target=ack_both)
    acker.start()
    reads = [
        timed(lambda: broker.read_blocking(stream, group, "c", 100)) for _ in range(20)
    ]
    acker.join(SLOW_PUBLISH_MS / 1000 * 2)
    print(
        f"nack {nack_took:.3f}s, acks {[round(t, 3) for _, t in acks]}, "
        f"slowest read {max(t for _, t in reads):.3f}s"
    )
    assert nacked and nack_took < A_MOMENT
    assert [ok for ok, _ in acks] == [True, True]
    assert all(took < A_MOMENT for _, took in acks)
    assert all(got == [] and took < A_MOMENT for got, took in reads)

    dlq_topic = broker.names.dlq_topic(f"{stream}:dlq", group)
    wait_for(lambda: dlq_errors(caplog, dlq_topic), timeout=10)
    (error,) = dlq_errors(caplog, dlq_topic)
    assert "CREATE_TOPICS" in error
    # The nacked message is not committed past: it waits for its topic.
    wait_for(lambda: committed(admin, broker, stream, group) == {0: 2})
    health = broker.health_stats()["details"]
    assert not health["healthy"] and dlq_topic in health["error"]

    create_topic(admin, dlq_topic, compacted=True)

    def written() -> bool:
        broker.read(stream, group, 1)  # reads bring held messages back
        return committed(admin, broker, stream, group) == {0: 3}

    wait_for(written, timeout=60)
    entries = broker.dlq_list([f"{stream}:dlq"])
    assert [e.original_id for e in entries] == [ids[2]]
    assert len(dlq_errors(caplog, dlq_topic)) == 1  # told once, not per attempt
    assert broker.health_stats()["details"]["healthy"]


def test_an_unparseable_record_waiting_for_its_dead_letter_topic_stalls_no_read(
    make_broker: BrokerFactory, admin: AdminClient, bootstrap: str, unique: Names
) -> None:
    """The reader hands a record it cannot parse to the dead-letter writer and
    goes on: later records are read at once and committed up to it."""
    broker = make_broker(
        CREATE_TOPICS=False, COMMIT_INTERVAL_MS=0, PUBLISH_TIMEOUT_MS=SLOW_PUBLISH_MS
    )
    stream, group = unique("shop::order"), unique("group")
    topic = broker.names.stream_topic(stream)
    create_topic(admin, topic)
    first = broker.publish_many(stream, [{"n": n} for n in range(2)])
    raw = Producer({"bootstrap.servers": bootstrap})
    raw.produce(topic, b"\xff not json")
    assert raw.flush(10) == 0
    later = broker.publish_many(stream, [{"n": n} for n in range(2, 4)])

    got: list[tuple[str, dict[str, Any]]] = []
    slowest = 0.0
    deadline = time.monotonic() + 30
    while len(got) < 4 and time.monotonic() < deadline:
        batch, took = timed(lambda: broker.read_blocking(stream, group, "c", 100, 4))
        got += batch
        slowest = max(slowest, took)
    print(f"slowest read {slowest:.3f}s")
    assert ids_of(got) == first + later
    assert slowest < A_MOMENT
    assert all(broker.ack(stream, identifier, group) for identifier in ids_of(got))
    broker.read(stream, group, 1)
    wait_for(lambda: committed(admin, broker, stream, group) == {0: 2})

    create_topic(admin, broker.names.dlq_topic(f"{stream}:dlq", group), compacted=True)

    def passed() -> bool:
        broker.read(stream, group, 1)
        return committed(admin, broker, stream, group) == {0: 5}

    wait_for(passed, timeout=60)


class SlowCommits:
    """A consumer whose asynchronous commits reach Kafka one at a time, a
    pause apart, in the order they were sent: what librdkafka's thread does
    on a busy machine. Everything else goes to the consumer unchanged."""

    def __init__(self, consumer: Any, pause: float) -> None:
        self._consumer = consumer
        self._pause = pause
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._send, daemon=True).start()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)

    def commit(self, **kwargs: Any) -> Any:
        if not kwargs.get("asynchronous", True):
            return self._consumer.commit(**kwargs)
        self._queue.put(kwargs)
        return None

    def _send(self) -> None:
        while True:
            kwargs = self._queue.get()
            time.sleep(self._pause)
            self._consumer.commit(**kwargs)


@pytest.mark.parametrize("commits_land", ["at once", "slowly"])
def test_a_careful_partition_leaves_the_other_partitions_commits_alone(
    make_broker: BrokerFactory, admin: AdminClient, unique: Names, commits_land: str
) -> None:
    """A partition taken over uncleanly commits at every finish for its first
    COMMIT_EVERY finishes; that must not reset the other partitions' count.

    Commits are asynchronous: the fast partition's commit at 49 is sent before
    the slow partition's last two, so seeing it land says nothing about them.
    Both are waited for ("slowly" makes commits land 0.2 s apart, as a loaded
    machine did once, which found a check that read the slow one too early)."""
    broker = make_broker(
        TOPIC_PARTITIONS=2, COMMIT_EVERY=10, COMMIT_INTERVAL_MS=600_000
    )
    stream, group = unique("shop::order"), unique("group")
    broker.publish_many(
        stream, [aggregate_message(f"a-{n % 20}", n) for n in range(200)]
    )
    drain(broker, stream, group, 200)
    consumer = broker._existing_consumer(stream, group)
    assert consumer is not None
    if commits_land == "slowly":
        consumer.consumer = SlowCommits(consumer.consumer, pause=0.2)  # type: ignore[assignment]
    by_partition: dict[int, list[str]] = {0: [], 1: []}
    for identifier, delivery in sorted(
        consumer._inflight.items(), key=lambda item: item[1].offset
    ):
        by_partition[delivery.partition].append(identifier)
    fast, slow = sorted(by_partition, key=lambda p: -len(by_partition[p]))
    assert len(by_partition[fast]) >= 55 and len(by_partition[slow]) >= 9

    fast_ids, slow_ids = iter(by_partition[fast]), iter(by_partition[slow])
    for _ in range(10):  # the fast partition's careful window, committed at once
        assert broker.ack(stream, next(fast_ids), group)
    for _ in range(9):  # the slow one is still careful meanwhile
        for _ in range(5):
            assert broker.ack(stream, next(fast_ids), group)
        assert broker.ack(stream, next(slow_ids), group)

    # 46 finishes on the fast partition since its last commit (at 9): four
    # full windows, the last of them committed at 49; the slow partition's
    # nine careful finishes each committed, the last at 9.
    wait_for(
        lambda: committed(admin, broker, stream, group) == {fast: 49, slow: 9},
        timeout=20,
        explain=lambda: str(committed(admin, broker, stream, group)),
    )


def test_acks_are_committed_within_the_interval_while_a_read_waits(
    make_broker: BrokerFactory, admin: AdminClient, unique: Names
) -> None:
    broker = make_broker(COMMIT_EVERY=1000, COMMIT_INTERVAL_MS=500)
    stream, group = unique("shop::order"), unique("group")
    ids = broker.publish_many(stream, [{"n": n} for n in range(5)])
    drain(broker, stream, group, 5)
    waiting = threading.Thread(
        target=broker.read_blocking, args=(stream, group, "c", 20_000)
    )
    waiting.start()
    time.sleep(0.5)  # the reader now polls the idle topic
    assert all(broker.ack(stream, identifier, group) for identifier in ids)
    started = time.monotonic()
    wait_for(lambda: committed(admin, broker, stream, group) == {0: 5}, timeout=15)
    print(f"committed {time.monotonic() - started:.3f}s after the acks")
    assert waiting.is_alive()  # the commit did not wait for the read to end
    broker.publish(stream, {"n": 5})  # ends the wait
    waiting.join(20)


def test_after_a_data_reset_an_empty_read_returns_at_once(
    make_broker: BrokerFactory, unique: Names
) -> None:
    """The ends the publisher remembers belong to the deleted topics."""
    broker = make_broker(READ_TIMEOUT_MS=30_000)
    stream, group = unique("shop::order"), unique("group")
    broker.publish_many(stream, [{"n": n} for n in range(5)])
    for identifier in ids_of(drain(broker, stream, group, 5)):
        assert broker.ack(stream, identifier, group)
    broker._data_reset()
    reads = [timed(lambda: broker.read(stream, group, 1)) for _ in range(3)]
    print(f"reads after the reset: {[round(t, 3) for _, t in reads]}s")
    assert all(got == [] and took < 10.0 for got, took in reads)


def test_close_keeps_its_timeout_while_another_thread_reads(
    make_broker: BrokerFactory, unique: Names
) -> None:
    broker = make_broker(OPERATION_TIMEOUT_MS=3000)
    stream, group = unique("shop::order"), unique("group")
    broker.publish(stream, {"n": 0})
    drain(broker, stream, group, 1)
    reader = threading.Thread(
        target=broker.read_blocking, args=(stream, group, "c", 30_000)
    )
    reader.start()
    time.sleep(0.5)
    _, took = timed(broker.close)
    print(f"close() took {took:.3f}s with OPERATION_TIMEOUT_MS=3000")
    assert took < 3.0 + A_MOMENT
    reader.join(40)
    assert not reader.is_alive()


def test_pending_counts_what_out_of_order_acks_left(
    make_broker: BrokerFactory, unique: Names
) -> None:
    """Acks after an unacked message commit nothing new (one commit is sent
    as the partition leaves its careful window); pending still drops."""
    broker = make_broker(COMMIT_EVERY=1, COMMIT_INTERVAL_MS=0)
    stream, group = unique("shop::order"), unique("group")
    ids = broker.publish_many(stream, [{"n": n} for n in range(10)])
    drain(broker, stream, group, 10)
    for identifier in ids[1:]:
        assert broker.ack(stream, identifier, group)
    assert broker.info()["consumer_groups"][group]["pending"] == 1
    assert broker.ack(stream, ids[0], group)
    wait_for(lambda: broker.info()["consumer_groups"][group]["pending"] == 0)


def delete_topic(admin: AdminClient, topic: str) -> None:
    """Delete ``topic`` as another instance's data reset or an operator would."""
    admin.delete_topics([topic])[topic].result(20)
    wait_for(lambda: topic not in admin.list_topics(timeout=10).topics, timeout=20)


def test_a_topic_someone_else_deleted_is_created_again(
    make_broker: BrokerFactory, admin: AdminClient, unique: Names
) -> None:
    """A write that finds its topic gone (unknown, or timed out) makes the
    next attempt create it again: publishes succeed again, and a dead letter
    is written, rather than waiting until the process restarts."""
    broker = make_broker(PUBLISH_TIMEOUT_MS=3000, max_retries=0, COMMIT_INTERVAL_MS=0)
    stream, group = unique("shop::order"), unique("group")
    broker.publish(stream, {"n": 0})
    delete_topic(admin, broker.names.stream_topic(stream))
    published = [publishes(broker, stream, {"n": n}) for n in range(1, 4)]
    print(f"publishes after the deletion: {published}")
    assert published[1:] == [True, True]

    other = unique("shop::other")
    (first,) = broker.publish_many(other, [{"n": 0}])
    drain(broker, other, group, 1)
    assert broker.nack(other, first, group)
    assert broker.dlq_depth(f"{other}:dlq") == 1
    delete_topic(admin, broker.names.dlq_topic(f"{other}:dlq", group))
    (second,) = broker.publish_many(other, [{"n": 1}])
    drain(broker, other, group, 1)
    assert broker.nack(other, second, group)

    def written() -> bool:
        broker.read(other, group, 1)  # reads bring held messages back
        return committed(admin, broker, other, group) == {0: 2}

    wait_for(written, timeout=30)
    entries = broker.dlq_list([f"{other}:dlq"])
    assert [e.original_id for e in entries] == [second]


def test_a_failing_dead_letter_topic_holds_up_no_other_group(
    make_broker: BrokerFactory, admin: AdminClient, unique: Names
) -> None:
    """Group A's dead-letter writes wait out PUBLISH_TIMEOUT_MS (its topic was
    deleted); group B's dead letter is still written at once, and neither
    B's dlq_depth() nor health_stats() waits for A's writes."""
    broker = make_broker(max_retries=0, PUBLISH_TIMEOUT_MS=5000)
    (stream_a, group_a), (stream_b, group_b) = [
        (unique(f"shop::{name}"), unique(f"group-{name}")) for name in "ab"
    ]
    (first,) = broker.publish_many(stream_a, [{"n": 0}])
    drain(broker, stream_a, group_a, 1)
    assert broker.nack(stream_a, first, group_a)
    assert broker.dlq_depth(f"{stream_a}:dlq") == 1
    delete_topic(admin, broker.names.dlq_topic(f"{stream_a}:dlq", group_a))

    ids_a = broker.publish_many(stream_a, [{"n": n} for n in range(1, 3)])
    (id_b,) = broker.publish_many(stream_b, [{"n": 0}])
    drain(broker, stream_a, group_a, 2)
    drain(broker, stream_b, group_b, 1)
    assert all(broker.nack(stream_a, identifier, group_a) for identifier in ids_a)
    started = time.monotonic()
    assert broker.nack(stream_b, id_b, group_b)
    depth, depth_took = timed(lambda: broker.dlq_depth(f"{stream_b}:dlq"))
    written = time.monotonic() - started
    _, health_took = timed(broker.health_stats)
    print(
        f"B's dead letter written {written:.3f}s after its nack; "
        f"dlq_depth {depth_took:.3f}s, health_stats {health_took:.3f}s"
    )
    assert depth == 1 and written < A_MOMENT
    assert health_took < A_MOMENT


def test_a_message_dead_lettered_again_keeps_one_entry(
    make_broker: BrokerFactory, admin: AdminClient, unique: Names
) -> None:
    """close() while a dead-letter write is in flight: the write lands, the
    record is not committed, and the next owner dead-letters it again. The
    second entry replaces the first: one entry, counted and replayed once."""
    stream, group = unique("shop::order"), unique("group")
    dlq_stream = f"{stream}:dlq"
    slow = make_broker(max_retries=0, PRODUCER_CONFIG={"linger.ms": 2000})
    slow.publish(stream, {"n": 0})
    ((identifier, _),) = drain(slow, stream, group, 1)
    assert slow.nack(stream, identifier, group)
    time.sleep(0.3)  # the write waits in the producer for linger.ms
    slow.close()
    broker = make_broker(max_retries=0, COMMIT_INTERVAL_MS=0)
    assert broker.dlq_depth(dlq_stream) == 1  # flushed by close()
    ((again, _),) = drain(broker, stream, group, 1)
    assert again == identifier
    assert broker.nack(stream, again, group)
    wait_for(lambda: committed(admin, broker, stream, group) == {0: 1})
    entries = broker.dlq_list([dlq_stream])
    print(f"entries for one message: {len(entries)}")
    assert [e.original_id for e in entries] == [identifier]
    assert broker.dlq_depth(dlq_stream) == 1
    assert broker.dlq_replay_all(dlq_stream, stream) == 1


def test_a_confirmed_dead_letter_is_committed_at_once(
    make_broker: BrokerFactory, admin: AdminClient, unique: Names
) -> None:
    """A crash between a confirmed dead-letter write and its commit would
    dead-letter the message again: its commit is not coalesced."""
    stream, group = unique("shop::order"), unique("group")
    first = make_broker()
    ids = first.publish_many(stream, [{"n": n} for n in range(2)])
    ((identifier, _),) = drain(first, stream, group, 1)
    assert first.ack(stream, identifier, group)
    first.close()  # a clean handover: the next owner coalesces its commits
    broker = make_broker(max_retries=0, COMMIT_EVERY=100, COMMIT_INTERVAL_MS=60_000)
    ((identifier, _),) = drain(broker, stream, group, 1)
    assert identifier == ids[1]
    assert broker.nack(stream, identifier, group)
    wait_for(lambda: broker.dlq_depth(f"{stream}:dlq") == 1)
    wait_for(
        lambda: committed(admin, broker, stream, group) == {0: 2},
        timeout=A_MOMENT,
        explain=lambda: str(committed(admin, broker, stream, group)),
    )


def test_dead_letters_of_a_topic_someone_else_deleted_are_not_counted(
    make_broker: BrokerFactory, admin: AdminClient, bootstrap: str, unique: Names
) -> None:
    """dlq_depth() keeps each topic's count between calls; a topic deleted and
    created again is counted afresh, even once it holds more records than the
    count had read (here three tombstones, so no live entry)."""
    broker = make_broker(max_retries=0)
    stream, group = unique("shop::order"), unique("group")
    dlq_stream = f"{stream}:dlq"
    broker.publish_many(stream, [{"n": n} for n in range(2)])
    for identifier in ids_of(drain(broker, stream, group, 2)):
        assert broker.nack(stream, identifier, group)
    wait_for(lambda: broker.dlq_depth(dlq_stream) == 2)

    dlq_topic = broker.names.dlq_topic(dlq_stream, group)
    delete_topic(admin, dlq_topic)
    create_topic(admin, dlq_topic, compacted=True)
    raw = Producer({"bootstrap.servers": bootstrap})
    for n in range(3):
        raw.produce(dlq_topic, None, key=f"gone-{n}".encode())
    assert raw.flush(10) == 0
    assert broker.dlq_depth(dlq_stream) == 0


def test_reads_of_a_topic_someone_else_made_again_do_not_wait(
    make_broker: BrokerFactory, admin: AdminClient, bootstrap: str, unique: Names
) -> None:
    """The end this instance's writes reached in a topic deleted and made
    again elsewhere is forgotten once a read reaches the new, lower end:
    non-blocking reads then return at once, not after READ_TIMEOUT_MS."""
    broker = make_broker(READ_TIMEOUT_MS=5000)
    stream, group = unique("shop::order"), unique("group")
    topic = broker.names.stream_topic(stream)
    broker.publish_many(stream, [{"n": n} for n in range(5)])
    delete_topic(admin, topic)
    create_topic(admin, topic)
    raw = Producer({"bootstrap.servers": bootstrap})
    raw.produce(topic, b'{"n": "new"}')
    assert raw.flush(10) == 0
    drain(broker, stream, group, 1)
    reads = [timed(lambda: broker.read(stream, group, 10)) for _ in range(3)]
    print(f"reads of the new topic: {[round(t, 3) for _, t in reads]}s")
    assert all(got == [] and took < A_MOMENT for got, took in reads)
