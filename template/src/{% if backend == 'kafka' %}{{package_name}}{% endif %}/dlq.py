"""Dead-letter topics: writing, listing, replaying and purging entries.

Two kinds of entries live under a dead-letter stream name ``{stream}:dlq``
(the name Protean's subscriptions, CLI and Observatory use):

* records Protean's own subscriptions published to the ``{stream}:dlq`` stream
  (payload carries ``_dlq_metadata``);
* records this adapter wrote to a per-group topic when a group Protean does not
  own ran out of retries or met bytes that are not a JSON object (provenance in
  headers; the value is the original bytes, untouched).

Kafka cannot delete one record, so replay and purge write a tombstone (null
value, same key) for the entry. Per-group topics are compacted, which lets
Kafka drop both in time; readers skip entries that have a tombstone.

A replay republishes the message under a new identifier with a header naming
the group that failed it: the other groups already processed the original and
skip the copy, so only the failed group sees it again.
"""

import base64
import logging
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from protean.port.broker import DLQEntry

from .cluster import Cluster
from .errors import KafkaBrokerError, RecordTooLarge
from .publisher import Publisher
from .records import (
    HEADER_ATTEMPTS,
    HEADER_DROPPED,
    HEADER_ERROR,
    HEADER_FAILED_AT,
    HEADER_GROUP,
    HEADER_ID,
    HEADER_ORIGINAL_ID,
    HEADER_STREAM,
    IncomingRecord,
    OutgoingRecord,
    encode_payload,
    message_record,
    new_identifier,
    read_record,
)
from .topics import TopicNames

if TYPE_CHECKING:
    from .consumer import Delivery

logger = logging.getLogger(__name__)

_SCAN_BATCH = 500
_SCAN_POLL = 0.1
_SUBSCRIPTION_METADATA = "_dlq_metadata"
# What the dead-letter writer keeps apart: (dead-letter stream, group).
# Names dead-letter identifiers derived from the record they park (uuid5).
_DEAD_LETTER_IDS = uuid.UUID("abd00df6-3114-4fc9-8657-2165216fb4bf")
DeadLetterKey = tuple[str, str]


def dead_letter_record(
    record: IncomingRecord,
    stream: str,
    group: str,
    attempts: int,
    reason: str,
    dropped: str = "",
) -> OutgoingRecord:
    """The record that parks ``record`` in ``group``'s dead-letter topic.

    With ``dropped`` (why and where the original value stays), the entry
    carries no value: the original was too large to copy.

    The entry's identifier (its key in the compacted topic) is derived from
    the group and the record's topic, partition and offset: a message
    dead-lettered again (its first entry was written, but its commit was not,
    before a crash, a close or a rebalance) replaces its first entry rather
    than adding a second one, which would be counted and replayed twice.
    """
    dlq_id = (
        str(uuid.uuid5(_DEAD_LETTER_IDS, f"{group}\n{record.position}"))
        if record.position
        else new_identifier()
    )
    headers = [
        (HEADER_ID, dlq_id),
        (HEADER_ORIGINAL_ID, record.identifier),
        (HEADER_STREAM, stream),
        (HEADER_GROUP, group),
        (HEADER_ATTEMPTS, str(attempts)),
        (HEADER_ERROR, reason),
        (HEADER_FAILED_AT, datetime.now(UTC).isoformat()),
    ]
    if dropped:
        headers.append((HEADER_DROPPED, dropped))
    body = b"" if dropped else record.value
    return OutgoingRecord(
        dlq_id, body, [(name, text.encode()) for name, text in headers]
    )


def write_dead_letter(
    names: TopicNames,
    cluster: Cluster,
    publisher: Publisher,
    stream: str,
    group: str,
    delivery: "Delivery",
    reason: str,
) -> None:
    """Park a delivery in ``group``'s dead-letter topic; return once confirmed.

    Raises `KafkaBrokerError` (`TopicMissing` when ``CREATE_TOPICS = false``
    and nobody created the topic) if it could not. A record too large to copy
    is parked without its value (headers say where the original stays while
    retention keeps it): keeping it open instead would hold the group's
    commit back forever.
    """
    topic = names.dlq_topic(f"{stream}:dlq", group)
    source = delivery.record
    try:
        publisher.check(topic)  # after a timed-out send, before creating again
        cluster.require_topic(topic, compacted=True)
        try:
            record = dead_letter_record(
                source, stream, group, delivery.attempts, reason
            )
            publisher.send(topic, [record])
        except RecordTooLarge:
            where = f"{len(source.value or b'')} bytes at {source.position}"
            record = dead_letter_record(
                source, stream, group, delivery.attempts, reason, where
            )
            publisher.send(topic, [record])
    except KafkaException as exc:
        raise KafkaBrokerError(str(exc)) from exc
    logger.warning(
        "Dead-lettered message %s of %s for group %s: %s",
        source.identifier,
        stream,
        group,
        reason,
    )


class DeadLetterWriter:
    """Writes dead letters off the callers' threads: one thread per key (a
    group's dead-letter topic), each writing its jobs one after another.

    A write waits for Kafka's confirmation, up to ``PUBLISH_TIMEOUT_MS``; made
    by ``nack`` it would hold the caller (Protean's event loop), made by a
    reader it would hold the group's lock, and with it every ack, nack and
    read of the group. A topic whose writes keep failing holds back only its
    own jobs, never another group's. A key's thread ends when its jobs are
    done; the next `submit` starts another. Jobs report back to their
    consumer themselves.
    """

    def __init__(self) -> None:
        # Jobs not started yet, for each key that has a thread.
        self._jobs: dict[DeadLetterKey, deque[Callable[[], None]]] = {}
        # Jobs submitted and not done yet, per key, for `settle`.
        self._pending: Counter[DeadLetterKey] = Counter()
        self._done = threading.Condition()

    def submit(self, key: DeadLetterKey, job: Callable[[], None]) -> None:
        with self._done:
            self._pending[key] += 1
            jobs = self._jobs.get(key)
            if jobs is None:
                jobs = self._jobs[key] = deque()
                threading.Thread(
                    target=self._run,
                    args=(key, jobs),
                    name=f"dead-letters-{key[1]}",
                    daemon=True,
                ).start()
            jobs.append(job)

    def settle(self, timeout: float, dlq_streams: Collection[str] = ()) -> None:
        """Wait, at most ``timeout`` seconds, until every job submitted so far
        for ``dlq_streams`` (all of them if none is named) is done: DLQ
        operations then see the dead letters of earlier nacks."""

        def settled() -> bool:
            return not any(
                not dlq_streams or dlq_stream in dlq_streams
                for dlq_stream, _group in +self._pending
            )

        with self._done:
            self._done.wait_for(settled, timeout)

    def close(self, wait: float) -> None:
        """Wait at most ``wait`` seconds for the jobs already submitted; a
        later `submit` starts new threads."""
        self.settle(wait)

    def _run(self, key: DeadLetterKey, jobs: deque[Callable[[], None]]) -> None:
        while True:
            with self._done:
                if not jobs:
                    del self._jobs[key]
                    return
                job = jobs.popleft()
            try:
                job()
            except Exception:  # one failed job must not end the writer; logged
                logger.exception("Dead-letter write failed")
            finally:
                with self._done:
                    self._pending[key] -= 1
                    self._done.notify_all()


class _Tally:
    """The live entries of one dead-letter topic, and how far it was read."""

    def __init__(self, topic_id: str | None) -> None:
        # Which topic of that name was read: one deleted and created again
        # (by anyone) is counted afresh.
        self.topic_id = topic_id
        self.positions: dict[int, int] = {}
        self.starts: dict[int, int] = {}
        # Identifier -> (partition, offset) of its entry.
        self.live: dict[str, tuple[int, int]] = {}

    def position(self, partition: int) -> int:
        return self.positions.get(partition, 0)

    def read(self, partition: int, offset: int, record: IncomingRecord) -> None:
        self.live.pop(record.identifier, None)
        if record.value is not None:
            self.live[record.identifier] = (partition, offset)

    def forget_before(self, partition: int, start: int) -> None:
        """Drop entries retention removed (before the partition's start)."""
        if start <= self.starts.get(partition, 0):
            return
        self.starts[partition] = start
        gone = [i for i, (p, o) in self.live.items() if p == partition and o < start]
        for identifier in gone:
            del self.live[identifier]


@dataclass(frozen=True)
class _Stored:
    """A live dead-letter entry and the topic it is stored in."""

    topic: str
    record: IncomingRecord


class DeadLetters:
    """The DLQ operations of Protean's broker port, over Kafka topics."""

    def __init__(
        self,
        names: TopicNames,
        cluster: Cluster,
        publisher: Publisher,
        consumer_config: dict[str, Any],
        timeout: float,
    ) -> None:
        self._names = names
        self._cluster = cluster
        self._publisher = publisher
        self._consumer_config = consumer_config
        self._timeout = timeout
        # Topic -> its live entries, kept between counts (see `count`).
        self._tallies: dict[str, _Tally] = {}
        self._tallies_lock = threading.Lock()

    def entries(self, dlq_stream: str) -> list[DLQEntry]:
        return [self._entry(dlq_stream, item.record) for item in self._live(dlq_stream)]

    def find(self, dlq_stream: str, dlq_id: str) -> DLQEntry | None:
        stored = self._find(dlq_stream, dlq_id)
        return None if stored is None else self._entry(dlq_stream, stored.record)

    def replay(self, dlq_stream: str, dlq_id: str, target_stream: str) -> bool:
        stored = self._find(dlq_stream, dlq_id)
        if stored is None:
            return False
        self._replay(stored, target_stream)
        return True

    def replay_all(self, dlq_stream: str, target_stream: str) -> int:
        live = self._live(dlq_stream)
        for stored in live:
            self._replay(stored, target_stream)
        return len(live)

    def purge(self, dlq_stream: str) -> int:
        live = self._live(dlq_stream)
        for stored in live:
            self._bury(stored)
        return len(live)

    def _find(self, dlq_stream: str, dlq_id: str) -> _Stored | None:
        return next(
            (s for s in self._live(dlq_stream) if s.record.identifier == dlq_id), None
        )

    def _replay(self, stored: _Stored, target_stream: str) -> None:
        """Republish for the failed group only, then bury the entry.

        The copy is confirmed before the tombstone is written, so a crash in
        between repeats the replay rather than losing the message.
        """
        record = stored.record
        if HEADER_ORIGINAL_ID in record.headers or record.payload is None:
            value = record.value or b""
            group = record.headers.get(HEADER_GROUP)
        else:
            payload = dict(record.payload)
            metadata = payload.pop(_SUBSCRIPTION_METADATA, None)
            value = encode_payload(payload)
            group = (
                metadata.get("consumer_group") if isinstance(metadata, dict) else None
            )
        topic = self._names.stream_topic(target_stream)
        self._cluster.ensure_topic(topic)
        copy = message_record(new_identifier(), target_stream, value, group or None)
        self._publisher.send(topic, [copy])
        self._bury(stored)
        logger.info(
            "Replayed dead letter %s to %s for group %s",
            record.identifier,
            target_stream,
            group or "(all groups)",
        )

    def _bury(self, stored: _Stored) -> None:
        dlq_id = stored.record.identifier
        tombstone = OutgoingRecord(dlq_id, None, [(HEADER_ID, dlq_id.encode())])
        self._publisher.send(stored.topic, [tombstone])

    def count(self, dlq_stream: str) -> int:
        """Live entries across the stream's DLQ topics, without reading them
        all again: each topic's count is kept, and only records written since
        the last count (past the stored position, up to the end watermark)
        are read. Nothing is read when no watermark moved."""
        with self._tallies_lock:
            return sum(self._tally(topic) for topic in self._topics(dlq_stream))

    def forget(self) -> None:
        """Drop every kept count: the topics were deleted."""
        with self._tallies_lock:
            self._tallies.clear()

    def _tally(self, topic: str) -> int:
        parts = [TopicPartition(topic, p) for p in self._cluster.partitions(topic)]
        low = self._cluster.start_offsets(parts)
        high = self._cluster.end_offsets(parts)
        topic_id = self._cluster.topic_id(topic)
        tally = self._tallies.get(topic)
        if (
            tally is None
            or tally.topic_id != topic_id
            or any(high[p] < tally.position(p) for p in high)
        ):
            # New, or deleted and made again.
            tally = self._tallies[topic] = _Tally(topic_id)
        for partition, start in low.items():
            tally.forget_before(partition, start)  # removed by retention
        starts = {
            p: max(low[p], tally.position(p))
            for p in high
            if high[p] > max(low[p], tally.position(p))
        }
        for partition, offset, record in self._read(topic, starts, high):
            tally.read(partition, offset, record)
        tally.positions.update({p: high[p] for p in starts})
        return len(tally.live)

    def _topics(self, dlq_stream: str) -> list[str]:
        prefix = self._names.dlq_topic_prefix(dlq_stream)
        subscription_topic = self._names.stream_topic(dlq_stream)
        return sorted(
            t
            for t in self._cluster.topic_names()
            if t == subscription_topic or t.startswith(prefix)
        )

    def _live(self, dlq_stream: str) -> list[_Stored]:
        """Every entry without a tombstone, across the stream's DLQ topics."""
        return [
            _Stored(topic, record)
            for topic in self._topics(dlq_stream)
            for record in self._scan(topic).values()
        ]

    def _scan(self, topic: str) -> dict[str, IncomingRecord]:
        """Read ``topic`` from its start to its current end; drop tombstoned keys."""
        consumer = self._reader()
        try:
            starts: dict[int, int] = {}
            ends: dict[int, int] = {}
            for partition in self._cluster.partitions(topic):
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=self._timeout
                )
                if high > low:
                    starts[partition], ends[partition] = low, high
        finally:
            consumer.close()
        live: dict[str, IncomingRecord] = {}
        for _partition, _offset, record in self._read(topic, starts, ends):
            live.pop(record.identifier, None)
            if record.value is not None:
                live[record.identifier] = record
        return live

    def _reader(self) -> Consumer:
        return Consumer(
            {
                **self._consumer_config,
                # Reads by assignment: the group id is required but never joins.
                "group.id": f"protean-dlq-scan-{uuid.uuid4()}",
                "enable.auto.commit": False,
            }
        )

    def _read(
        self, topic: str, starts: dict[int, int], ends: dict[int, int]
    ) -> list[tuple[int, int, IncomingRecord]]:
        """The records of each partition from ``starts`` up to ``ends``.

        Raises `KafkaBrokerError` if no record arrives for ``OPERATION_TIMEOUT_MS``.
        """
        if not starts:
            return []
        ends = {p: ends[p] for p in starts}
        consumer = self._reader()
        found: list[tuple[int, int, IncomingRecord]] = []
        try:
            consumer.assign([TopicPartition(topic, p, o) for p, o in starts.items()])
            # The timeout bounds a stall, not the read: a large dead-letter
            # topic takes as long as it takes to read while records keep
            # coming. Only time spent waiting for records counts, never the
            # time this process takes with a batch (long on a busy machine).
            silent = 0.0
            while ends:
                asked = time.monotonic()
                messages = consumer.consume(_SCAN_BATCH, timeout=_SCAN_POLL)
                if messages:
                    silent = 0.0
                else:
                    silent += time.monotonic() - asked
                    if silent > self._timeout:
                        raise KafkaBrokerError(
                            f"reading dead letters from {topic!r} stalled for "
                            f"{self._timeout:.1f}s"
                        )
                for message in messages:
                    part, offset = message.partition(), message.offset()
                    if message.error() or part is None or offset is None:
                        continue
                    if offset < ends.get(part, 0):
                        found.append((part, offset, read_record(message)))
                for position in consumer.position(
                    [TopicPartition(topic, p) for p in ends]
                ):
                    if position.offset >= ends[position.partition]:
                        del ends[position.partition]
            return found
        finally:
            consumer.close()

    def _entry(self, dlq_stream: str, record: IncomingRecord) -> DLQEntry:
        headers = record.headers
        if HEADER_ORIGINAL_ID in headers:
            return DLQEntry(
                dlq_id=record.identifier,
                original_id=headers[HEADER_ORIGINAL_ID],
                stream=headers.get(HEADER_STREAM, dlq_stream.removesuffix(":dlq")),
                consumer_group=headers.get(HEADER_GROUP, ""),
                payload=_payload_or_raw(record),
                failure_reason=headers.get(HEADER_ERROR, "unknown"),
                failed_at=headers.get(HEADER_FAILED_AT),
                retry_count=_int(headers.get(HEADER_ATTEMPTS)),
                dlq_stream=dlq_stream,
            )
        payload = _payload_or_raw(record)
        metadata = payload.get(_SUBSCRIPTION_METADATA)
        meta: dict[str, Any] = metadata if isinstance(metadata, dict) else {}
        return DLQEntry(
            dlq_id=record.identifier,
            original_id=str(meta.get("original_id", record.identifier)),
            stream=str(meta.get("original_stream", dlq_stream.removesuffix(":dlq"))),
            consumer_group=str(meta.get("consumer_group", "")),
            payload=payload,
            failure_reason=str(meta.get("failure_reason", "unknown")),
            failed_at=meta.get("failed_at"),
            retry_count=_int(meta.get("retry_count")),
            dlq_stream=dlq_stream,
        )


def _payload_or_raw(record: IncomingRecord) -> dict[str, Any]:
    """The JSON payload, or the undecodable bytes in base64 so nothing is hidden."""
    if record.payload is not None:
        return record.payload
    return {"_raw_base64": base64.b64encode(record.value or b"").decode("ascii")}


def _int(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0
