"""The broker instance's one idempotent producer, with confirmed sends."""

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from .credentials import Credentials
from .errors import (
    ClusterUnreachable,
    CredentialsRefused,
    KafkaBrokerError,
    PublishTimedOut,
    RecordTooLarge,
)
from .reachability import Reachability
from .records import OutgoingRecord

logger = logging.getLogger(__name__)

# librdkafka fails a record itself after message.timeout.ms; waiting a little
# longer lets its own, more precise error arrive first.
_GRACE = 1.0
# Delivery errors that mean librdkafka gave up after message.timeout.ms.
_TIMEOUTS = (KafkaError._MSG_TIMED_OUT, KafkaError._TIMED_OUT)
# Errors that mean the topic is not there (any more).
_UNKNOWN_TOPIC = (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC)
# The longest one wait lasts before the caller's confirmation is checked again.
_POLL_SLICE = 0.05


class Publisher:
    """Produces records and returns only once Kafka acknowledged every one.

    ``acks=all`` with idempotence means an acknowledged record is on every
    in-sync replica, and librdkafka's retries can neither duplicate nor reorder
    it. A send that Kafka does not confirm within ``timeout`` raises
    `KafkaBrokerError`, so no caller ever holds an identifier of a lost record;
    one that Kafka cannot take because it refuses the producer's credentials
    raises `CredentialsRefused` as soon as ``credentials`` knows, without
    waiting out the timeout.

    After a send timed out because no broker answers, further sends would each
    wait out the timeout too, and Protean's outbox publishes one message after
    another on the engine's event loop. So until a broker answers again, a send
    first asks for its topic's metadata, within ``probe_timeout``; after a
    question nobody answered, sends raise at once for that long again, and once
    ``reachability`` confirmed the outage they raise at once until it ends,
    leaving the question to that watch, which asks in the background.

    A send that finds its topic unknown, or times out, calls ``forget_topic``
    with it: the topic may have been deleted by someone else, and the next
    send's caller checks it with the cluster (and creates it) again.
    """

    def __init__(
        self,
        config: dict[str, Any],
        timeout: float,
        credentials: Credentials,
        probe_timeout: float,
        reachability: Reachability,
        forget_topic: Callable[[str], None],
    ) -> None:
        self._forget_topic = forget_topic
        self._config = {
            "linger.ms": 0,  # a confirmed send waits anyway; do not add latency
            **config,
            "enable.idempotence": True,
            "acks": "all",
            "message.timeout.ms": int(timeout * 1000),
            "error_cb": self._on_error,
        }
        self._timeout = timeout
        self._credentials = credentials
        # Failed connections are told once per outage there, not per attempt.
        self._reachability = reachability
        self._probe_timeout = probe_timeout
        # A send timed out since the last confirmed record: the next one asks
        # first whether a broker answers. librdkafka does not always report
        # every broker down by then (a killed node's connection can look open).
        self._unreachable = False
        self._probe_after = -math.inf
        self._lock = threading.Lock()
        self._fatal: KafkaError | None = None
        # (topic, partition) -> the offset after this producer's last confirmed
        # record: readers of this process know records are there without asking.
        self._ends: dict[tuple[str, int], int] = {}
        self._producer: Producer | None = Producer(self._config)

    def _on_error(self, error: KafkaError) -> None:
        if self._credentials.report(error) or self._reachability.report(error):
            return
        if error.fatal():
            self._fatal = error
            logger.error("Kafka producer failed fatally: %s", error)
        else:
            logger.warning("Kafka producer error: %s", error)

    def _current(self) -> Producer:
        """The producer, replaced if librdkafka declared it unusable, made
        again on first use after `close`."""
        with self._lock:
            if self._fatal is not None:
                logger.warning("Replacing Kafka producer after: %s", self._fatal)
                self._fatal = None
                self._producer = None
            if self._producer is None:
                self._producer = Producer(self._config)
            return self._producer

    def produced_end(self, topic: str, partition: int) -> int:
        """The offset after the last record this producer wrote there (0: none)."""
        return self._ends.get((topic, partition), 0)

    def forget_end(self, topic: str, partition: int, end: int) -> None:
        """A reader reached the partition's end at ``end``: an end recorded
        beyond it belongs to a topic deleted since (by anyone) and made again,
        and would make readers wait for records that are gone."""
        key = (topic, partition)
        if self._ends.get(key, 0) > end:
            del self._ends[key]

    def forget_ends(self) -> None:
        """Forget the ends of every partition written: their topics were
        deleted, and a recreated topic starts again at offset 0."""
        self._ends.clear()

    def send(
        self,
        topic: str,
        records: Sequence[OutgoingRecord],
        deadline: float | None = None,
    ) -> None:
        """Produce ``records`` to ``topic`` and wait until all are confirmed,
        at most until ``deadline`` (monotonic; default: the publish timeout)."""
        producer = self._current()
        self.check(topic, producer)
        limit = time.monotonic() + self._timeout + _GRACE
        deadline = limit if deadline is None else min(deadline, limit)
        # Appending is atomic, so callbacks served by another thread's poll
        # cannot lose an outcome.
        outcomes: list[KafkaError | None] = []

        def on_delivery(error: KafkaError | None, message: Message) -> None:
            partition, offset = message.partition(), message.offset()
            if error is None and partition is not None and offset is not None:
                self._credentials.accepted()
                self._reachability.answered()
                self._unreachable = False
                key = (topic, partition)
                self._ends[key] = max(self._ends.get(key, 0), offset + 1)
            outcomes.append(error)

        for record in records:
            self._produce(producer, topic, record, on_delivery, deadline)
        refused: CredentialsRefused | None = None
        while len(outcomes) < len(records):
            refused = self._credentials.refusal()
            left = deadline - time.monotonic()
            if refused is not None or left <= 0:
                break
            producer.poll(min(left, _POLL_SLICE))
        errors = [error for error in outcomes if error is not None]
        failures = [str(error) for error in errors]
        missing = len(records) - len(outcomes)
        too_large = any(e.code() == KafkaError.MSG_SIZE_TOO_LARGE for e in errors)
        if missing and refused is None:
            refused = self._credentials.last_refusal()
        if missing and refused is not None:
            # The caller is told they failed: drop what is still queued, or it
            # could land once the cluster accepts the credentials, besides the
            # copy a retry writes.
            producer.purge(in_queue=True, in_flight=False, blocking=False)
            raise CredentialsRefused(
                f"Kafka did not confirm {missing} of {len(records)} record(s) to "
                f"topic {topic!r}: {refused}"
            )
        timed_out = missing or any(e.code() in _TIMEOUTS for e in errors)
        if timed_out:
            self._unreachable = True
        if timed_out or any(e.code() in _UNKNOWN_TOPIC for e in errors):
            self._forget_topic(topic)
        if failures or missing:
            kind = RecordTooLarge if too_large else KafkaBrokerError
            raise (PublishTimedOut if timed_out and not too_large else kind)(
                f"Kafka did not confirm {len(failures) + missing} of {len(records)} "
                f"record(s) to topic {topic!r} within {self._timeout:g}s"
                + (f": {failures[0]}" if failures else ": timed out")
            )

    def check(self, topic: str, producer: Producer | None = None) -> None:
        """After a send timed out, ask whether a broker answers before anything
        else is tried for ``topic`` (creating it again included): raises
        `ClusterUnreachable` at once while none does (see `_probe`)."""
        if self._unreachable:
            self._probe(self._current() if producer is None else producer, topic)

    def known_unreachable(self) -> bool:
        """Whether a send timed out and the last question whether a broker
        answers again, less than ``probe_timeout`` ago, went unanswered: asking
        again so soon would only wait once more."""
        return self._unreachable and time.monotonic() < self._probe_after

    def _probe(self, producer: Producer, topic: str) -> None:
        """Return if a broker answers for ``topic``, raise if none does."""
        # Asked without waiting, one question at a time; an answer ends `down`.
        self._reachability.check()
        if not self._reachability.down and time.monotonic() >= self._probe_after:
            try:
                producer.list_topics(topic=topic, timeout=self._probe_timeout)
            except KafkaException:
                self._probe_after = time.monotonic() + self._probe_timeout
                # The watch confirms it, says so once, and notices the end.
                self._reachability.suspect()
                self._reachability.check()
            else:
                self._unreachable = False
                self._reachability.answered()
                return
        raise ClusterUnreachable(
            f"Kafka is unreachable: a send timed out and no broker has answered "
            f"since; nothing was sent to topic {topic!r}"
        )

    def _produce(
        self,
        producer: Producer,
        topic: str,
        record: OutgoingRecord,
        on_delivery: Any,
        deadline: float,
    ) -> None:
        while True:
            try:
                producer.produce(
                    topic,
                    value=record.value,
                    key=record.key.encode(),
                    headers=record.headers,
                    on_delivery=on_delivery,
                )
                return
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                code = error.code() if isinstance(error, KafkaError) else None
                too_large = code == KafkaError.MSG_SIZE_TOO_LARGE
                if code in _UNKNOWN_TOPIC:
                    self._forget_topic(topic)
                raise (RecordTooLarge if too_large else KafkaBrokerError)(
                    f"Kafka refused a record for topic {topic!r}: {exc}"
                ) from exc
            except BufferError:
                # The local queue is full: serve deliveries to make room.
                if time.monotonic() >= deadline:
                    raise KafkaBrokerError(
                        f"Kafka producer queue stayed full for {self._timeout:g}s"
                    ) from None
                producer.poll(_POLL_SLICE)

    def close(self, timeout: float) -> None:
        """Wait (bounded) for anything still queued, then let the producer go,
        so its librdkafka threads and connections end now: its error callback
        refers back here, a cycle the garbage collector never frees. Sends are
        synchronous, so normally nothing is queued; nothing is waited for
        while Kafka refuses the credentials, as nothing queued can be written."""
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is None:
            return
        producer.poll(0)
        if self._credentials.refusal() is not None:
            timeout = 0.0
        remaining = producer.flush(timeout)
        if remaining:
            logger.warning("%d Kafka record(s) unconfirmed at close", remaining)
            producer.purge(in_queue=True, in_flight=False, blocking=False)
