"""One Kafka consumer for one (consumer group, topic), with Protean's ack/nack.

Kafka only knows "this group has consumed up to offset N" per partition; Protean
acks and nacks single messages. A group consumer bridges the two:

* every fetched offset is tracked, and only the contiguous finished prefix of
  each partition is committed (`PartitionOffsets`), so acking one message
  never commits an unacked one before it;
* a delivered message stays in flight until acked or nacked, and is not handed
  out again meanwhile; a nacked one is held here and handed out again, with the
  same identifier, after the backoff ``retry_delay * backoff_multiplier**n``;
* for groups Protean's engine does not own, the retry count is enforced here:
  past ``max_retries`` the message is dead-lettered, and only finished once the
  dead-letter write is confirmed; the write runs on the broker's dead-letter
  writer thread, so neither the caller nor the group's lock waits for Kafka,
  and a failed write is tried again after a growing pause;
* commits are coalesced (every ``COMMIT_EVERY`` finished messages or
  ``COMMIT_INTERVAL_MS``), made synchronously when partitions are revoked, and
  flushed on close; a revoked partition's local state is dropped, so a late ack
  or nack for it returns False and its messages go to the new owner;
* a partition whose last owner did not leave cleanly (a crash, a lost
  session, a new group) is committed at every finish for its next
  ``COMMIT_EVERY`` finishes, each commit recording how often the record it
  points at was handed out unfinished (see `offsets`), and a read waits for
  that record to be confirmed before handing the record out: a record that
  kills every consumer it reaches is dead-lettered after ``max_retries``
  restarts.

Two locks keep acks from waiting on fetches: ``_polling`` lets one reader at a
time poll the consumer (a poll may wait for records), ``_lock`` guards the
bookkeeping and is only held for moments, also by the rebalance callbacks
librdkafka runs inside the poll. Nothing takes ``_polling`` while holding
``_lock``.

Whether a partition holds records not fetched yet is known locally, without
asking the cluster: librdkafka reports reaching a partition's end, and the
broker's publisher reports the end offsets its own writes reached.
"""

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from functools import partial
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from .config import KafkaSettings
from .credentials import Credentials
from .errors import OutOfLocalResources
from .offsets import CLEAN_HANDOVER, PartitionOffsets, handouts_metadata
from .reachability import Reachability, local_exhaustion
from .records import HEADER_ONLY_GROUP, IncomingRecord, read_record
from .retries import RetrySchedule, backoff

logger = logging.getLogger(__name__)


@dataclass
class Delivery:
    """A fetched record on its way through the group."""

    record: IncomingRecord
    partition: int
    offset: int
    payload: dict[str, Any]
    # Why the record cannot be delivered (not a JSON object); "" if it can.
    problem: str = ""
    attempts: int = 0
    delivered_at: float = 0.0
    # Handed out at least once by this consumer (counted in its partition).
    handed: bool = False
    # Why it goes to the dead-letter topic, once it must; "" until then.
    dead_letter_reason: str = ""
    # Failed dead-letter writes so far, for the pause before the next one.
    dead_letter_failures: int = 0


# Writes a delivery to the group's dead-letter topic; True once it is safe to
# finish the message (write confirmed, or dead-lettering is switched off).
# Called on the dead-letter writer's thread, never under a consumer's lock.
DeadLetter = Callable[[Delivery, str], bool]
# Runs a job on the dead-letter writer's thread.
Submit = Callable[[Callable[[], None]], None]
# The longest pause between two attempts to write one dead letter.
_DEAD_LETTER_PAUSE_MAX = 30.0
# The longest single poll of a waiting read: it then commits what was acked
# meanwhile, and notices close().
_POLL_SLICE = 0.5
_COMMIT_RETRY = 0.05
# The most records one consume call may ask for (confluent-kafka refuses more).
_CONSUME_MAX = 100_000
# What a handover commit hears when nothing is left to hand over: the group
# dropped the member (its session or max.poll.interval.ms ran out while
# nobody read), or the topic was deleted.
_GONE = {
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._UNKNOWN_PARTITION,
    KafkaError._UNKNOWN_TOPIC,
}


def gone(error: KafkaError) -> bool:
    return error.code() in _GONE


def commit_into(
    answer: "Future[list[TopicPartition]]",
    client: Consumer,
    offsets: list[TopicPartition],
) -> None:
    """Commit ``offsets`` synchronously and put Kafka's answer in ``answer``."""
    try:
        answer.set_result(client.commit(offsets=offsets, asynchronous=False) or [])
    except (KafkaException, RuntimeError) as exc:  # the waiter handles them
        answer.set_exception(exc)


# The end offset this process's own confirmed writes reached in a partition.
ProducedEnd = Callable[[str, int], int]
# Told the end a read reached in a partition, below a produced end: forget it.
StaleEnd = Callable[[str, int, int], None]


class GroupConsumer:
    """A consumer of one topic for one group, used serially under a lock."""

    def __init__(
        self,
        config: dict[str, Any],
        group: str,
        topic: str,
        settings: KafkaSettings,
        dead_letter: DeadLetter,
        submit: Submit,
        produced_end: ProducedEnd,
        auto_ack: bool,
        credentials: Credentials,
        reachability: Reachability,
        stale_end: StaleEnd,
    ) -> None:
        self._config = config
        # The librdkafka consumer, made by `join` at the first read and closed
        # by `let_go` when reads stop: a group member only while it reads.
        self.consumer: Consumer
        self._member = False
        # Bumped at each join and let-go: callbacks of a client that left are
        # ignored (its partitions were handed over when it let go).
        self._generation = 0
        # Clients that let go, closing on their own threads: close() waits
        # for them, or a process exiting after it could cut their LeaveGroup
        # short and the group would wait out their session.
        self._letting_go: list[threading.Thread] = []
        # A let-go's handover commit, until Kafka answers it.
        self._handover: tuple[
            Future[list[TopicPartition]] | None, list[tuple[int, int, str | None]]
        ] = (None, [])
        # Set when librdkafka declares this client unusable: the broker then
        # replaces it, as it replaces a failed producer.
        self.broken = False
        # Why this process cannot connect this client (out of open files),
        # until it receives anything again: reads raise it, health reports it.
        self.local_failure: str | None = None
        # Refused sign-ins are told once there, and end a read's wait at once.
        self._credentials = credentials
        # Failed connections are told once per outage there, not per attempt.
        self._reachability = reachability
        self.group = group
        self.topic = topic
        # Set when Protean's engine owns retries and dead-lettering for the group.
        self.owned = False
        self.created_at = time.time()
        self.client_id = str(config.get("client.id", ""))
        # Protean counts a group's consumers once they read, as Redis does: a
        # member that only joined (`_ensure_group`) is not one yet.
        self.has_read = False
        # When a caller last read, acked or nacked through this consumer.
        self.last_used = time.monotonic()
        self._settings = settings
        # Lower capability tiers never ack: a message is finished on delivery.
        self._auto_ack = auto_ack
        self._lock = threading.RLock()
        self._polling = threading.Lock()
        self._partitions: dict[int, PartitionOffsets] = {}
        # Each partition's committed offset when it was assigned, where a
        # rewind starts if nothing of it was received yet (`_rewind`).
        self._starts: dict[int, int] = {}
        # Where this process's own writes reached, beside the ends seen while
        # fetching (`_behind`).
        self._produced_end = produced_end
        self._stale_end = stale_end
        reset = str(config.get("auto.offset.reset", "latest"))
        self._reset_to = (
            OFFSET_BEGINNING
            if reset in ("earliest", "smallest", "beginning")
            else OFFSET_END
        )
        self._joined = False
        self._closed = False
        self._ready: deque[Delivery] = deque()
        # Delivered and not yet acked or nacked, oldest delivery first.
        self._inflight: dict[str, Delivery] = {}
        # Nacked (or waiting to retry a dead-letter write), by identifier.
        self._waiting: dict[str, Delivery] = {}
        self._schedule = RetrySchedule(time.monotonic)
        # Handed to the dead-letter writer, by identifier: open until written.
        self._parking: dict[str, Delivery] = {}
        self._dead_letter = dead_letter
        self._submit = submit

    def retune(self, settings: KafkaSettings) -> None:
        """Use ``settings`` from now on (retry limits, backoff, timeouts)."""
        self._settings = settings

    # -- group membership -------------------------------------------------

    @property
    def member(self) -> bool:
        """Whether this process is a member of the group (it reads)."""
        return self._member

    def join(self) -> None:
        """Make the librdkafka consumer and subscribe, without waiting for the
        group to assign partitions (called by the first read, under
        ``_polling``, or by a test that wraps the client before it reads).

        Only a reader joins: a member that never reads would keep its
        partitions, and their messages, from the processes that do. librdkafka
        joins in the background (at least the cluster's
        ``group.initial.rebalance.delay.ms``, 3 s by default); the read waits
        for the join, bounded by its timeout.
        """
        with self._lock:
            if self._member or self._closed:
                return
            self._generation += 1
            generation = self._generation

            def on_commit(
                error: KafkaError | None, partitions: list[TopicPartition]
            ) -> None:
                # A let-go's handover commit is synchronous, answered to
                # `_handover_committed` alone; an older client reports only
                # commits that handover covers, and the trackers now hold the
                # new client's partitions.
                if generation == self._generation:
                    self._on_commit(error, partitions)

            def on_error(error: KafkaError) -> None:
                if generation == self._generation:
                    self._on_error(error)
                else:  # a client closing after it let go: not this one's state
                    logger.debug(
                        "Kafka consumer of group %s, closing after it let go: %s",
                        self.group,
                        error,
                    )

            self.consumer = Consumer(
                {**self._config, "on_commit": on_commit, "error_cb": on_error}
            )
            self._member = True

        def on_assign(consumer: Consumer, partitions: list[TopicPartition]) -> None:
            if generation == self._generation:
                self._on_assign(consumer, partitions)

        def on_revoke(consumer: Consumer, partitions: list[TopicPartition]) -> None:
            if generation == self._generation:
                self._on_revoke(consumer, partitions)

        def on_lost(consumer: Consumer, partitions: list[TopicPartition]) -> None:
            if generation == self._generation:
                self._on_lost(consumer, partitions)

        self.consumer.subscribe(
            [self.topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost
        )

    def let_go(self, since: float) -> bool:
        """Leave the group if no caller read, acked or nacked since ``since``
        (monotonic); True if it left.

        What it fetched and had not handed out goes back to Kafka uncounted:
        the handover is committed, and waited for, before the partitions are
        dropped (a commit that fails, as during a rebalance, keeps the member
        until a later tick). A delivery in a handler's hands keeps it a
        member (its handler may still ack it), and so does a dead-letter
        write under way. One past ``message_timeout`` counts as a failed
        attempt, as at a read; a failed attempt waiting for its retry at a
        partition's commit point goes to the next owner counted (the commit
        records its attempts instead of a clean handover), so a message whose
        handler hangs or fails is dead-lettered after ``max_retries`` however
        often its group changes hands. The next read joins again.
        """
        if not self._polling.acquire(blocking=False):
            return False  # a reader polls: not idle
        try:
            with self._lock:
                if not self._member or self._closed or self.last_used >= since:
                    return False
                if self._reachability.down:
                    # A commit nobody answers would hold every other call on
                    # the client (reads, close) until the cluster is back.
                    return False
                self._expire_stale()
                if self._parking or self._inflight:
                    return False
                offsets = self._counting_waiting(
                    self._commit_offsets(list(self._partitions), CLEAN_HANDOVER)
                )
                generation = self._generation
        finally:
            self._polling.release()
        # Waited for without the locks: reads, acks and close() go on while
        # Kafka answers, which takes a session timeout when a node is gone.
        if offsets and not self._handover_committed(offsets):
            return False
        if not self._polling.acquire(blocking=False):
            return False
        try:
            with self._lock:
                if (
                    self._closed
                    or self._generation != generation
                    or self.last_used >= since
                    or self._parking
                    or self._inflight
                ):
                    return False  # used, closed or joined again meanwhile
                self._drop(set(self._partitions))
                self._ready.clear()
                self._waiting.clear()
                self._schedule = RetrySchedule(time.monotonic)
                self._starts.clear()
                self._joined = False
                self._member = False
                self.has_read = False
                self._generation += 1
                closer = threading.Thread(
                    target=self._close_client,
                    args=(self.consumer,),
                    name=f"let-go-{self.group}",
                    daemon=True,
                )
                # Started under the lock, so a close() that follows finds it.
                closer.start()
                self._letting_go = [
                    thread for thread in self._letting_go if thread.is_alive()
                ] + [closer]
        finally:
            self._polling.release()
        return True

    def _counting_waiting(self, offsets: list[TopicPartition]) -> list[TopicPartition]:
        """``offsets`` with the attempts of a failed delivery waiting for its
        retry at a commit point recorded, as an unclean owner's are, so the
        next owner counts them (its backoff starts again there)."""
        waiting = {(d.partition, d.offset): d for d in self._waiting.values()}
        counted = []
        for tp in offsets:
            delivery = waiting.get((tp.partition, tp.offset))
            if delivery is not None:
                note = handouts_metadata(tp.offset, delivery.attempts)
                tp = TopicPartition(tp.topic, tp.partition, tp.offset, metadata=note)
            counted.append(tp)
        return counted

    def _handover_committed(self, offsets: list[TopicPartition]) -> bool:
        """Commit a let-go's handover and wait, at most ``OPERATION_TIMEOUT_MS``,
        for Kafka's answer: True when every partition's offset was stored (the
        next owner starts there), or when the group no longer knows this member
        or its topic (nothing is left to hand over: staying would retry for
        ever). A commit not answered in time keeps the member, and is not sent
        again until answered."""
        pending, sent = self._handover
        points = [(tp.partition, tp.offset, tp.metadata) for tp in offsets]
        if pending is not None and not pending.done() and sent != points:
            return False  # acked since: the commit under way hands over less
        if pending is None or pending.done():
            pending = Future()
            self._handover = (pending, points)
            threading.Thread(
                target=commit_into,
                args=(pending, self.consumer, offsets),
                name=f"handover-{self.group}",
                daemon=True,
            ).start()
        try:
            stored = pending.result(timeout=self._settings.operation_timeout)
        except FutureTimeout:
            failed = "no answer within OPERATION_TIMEOUT_MS"
        except KafkaException as exc:
            if gone(exc.args[0]):
                return True
            failed = str(exc)
        except RuntimeError as exc:  # the client was closed meanwhile
            failed = str(exc)
        else:
            errors = [tp.error for tp in stored if tp.error is not None]
            if all(gone(error) for error in errors):
                return True
            failed = ", ".join(str(error) for error in errors)
        logger.info(
            "Kafka group %s stays a member a while longer: its handover commit "
            "failed (%s)",
            self.group,
            failed,
        )
        return False

    def _close_client(self, client: Consumer) -> None:
        """Close a client nobody polls any more (it let go); librdkafka sends
        its last commit and leaves the group."""
        try:
            client.close()
        except (KafkaException, RuntimeError) as exc:
            logger.warning("Closing Kafka consumer %s: %s", self.group, exc)

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._closed:
            # A join that completes while the consumer leaves (one the engine
            # ensured but never read): nothing will be read, and asking for
            # commit metadata now would hold close() for OPERATION_TIMEOUT_MS.
            return
        self._reachability.answered()
        self.local_failure = None
        metadata = self._commit_metadata(partitions)
        with self._lock:
            for tp in partitions:
                tracker = self._partitions.get(tp.partition)
                if tracker is None:
                    tracker = self._partitions[tp.partition] = PartitionOffsets()
                    tracker.last_commit = time.monotonic()
                tracker.taken_over(
                    metadata.get(tp.partition), self._settings.commit_every
                )
            self._joined = True

    def _commit_metadata(self, partitions: list[TopicPartition]) -> dict[int, str]:
        """The metadata of each partition's last commit; a partition missing
        here counts as left uncleanly."""
        try:
            found = self.consumer.committed(
                partitions, timeout=self._settings.operation_timeout
            )
        except (KafkaException, RuntimeError) as exc:
            logger.warning("Kafka consumer %s: no commit metadata: %s", self.group, exc)
            return {}
        self._starts.update({tp.partition: tp.offset for tp in found if tp.offset >= 0})
        return {tp.partition: tp.metadata for tp in found if tp.metadata is not None}

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        with self._lock:
            offsets = self._commit_offsets(
                [tp.partition for tp in partitions], CLEAN_HANDOVER
            )
            self._drop({tp.partition for tp in partitions})
        # Outside the lock: acks meanwhile find the partition gone and return False.
        self._send_commit(offsets, sync=True)

    def _on_error(self, error: KafkaError) -> None:
        exhausted = local_exhaustion(error)
        if exhausted is not None:
            if self.local_failure is None:
                logger.error(
                    "Kafka consumer of group %s on %s cannot connect: %s; raise "
                    "the open-file limit (ulimit -n) or read fewer streams in "
                    "this process (each group and stream has its own consumer)",
                    self.group,
                    self.topic,
                    exhausted,
                )
            self.local_failure = exhausted
            return
        if self._credentials.report(error) or self._reachability.report(error):
            return
        if error.fatal():
            self.broken = True
            logger.error("Kafka consumer of group %s failed: %s", self.group, error)
        else:
            logger.warning("Kafka consumer of group %s: %s", self.group, error)

    def _on_commit(
        self, error: KafkaError | None, partitions: list[TopicPartition]
    ) -> None:
        """A commit is only done once Kafka accepted it: a rejected partition
        forgets its committed point and counts as finished work again, so the
        next read or ack sends it once ``COMMIT_INTERVAL_MS`` has passed, even
        if no message is finished meanwhile."""
        failed = [tp.partition for tp in partitions if error or tp.error]
        if not failed:
            return
        logger.warning(
            "Kafka commit for group %s failed: %s", self.group, error or failed
        )
        with self._lock:
            for partition in failed:
                tracker = self._partitions.get(partition)
                if tracker is not None:
                    tracker.committed = None
                    tracker.uncommitted += 1
                    # Tried again after COMMIT_INTERVAL_MS, not at once.
                    tracker.last_commit = time.monotonic()

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Already owned by someone else: committing now would be rejected.
        with self._lock:
            self._drop({tp.partition for tp in partitions})

    def _drop(self, gone: set[int]) -> None:
        for partition in gone:
            self._partitions.pop(partition, None)
        self._ready = deque(d for d in self._ready if d.partition not in gone)
        self._inflight = {
            i: d for i, d in self._inflight.items() if d.partition not in gone
        }
        self._waiting = {
            i: d for i, d in self._waiting.items() if d.partition not in gone
        }
        self._parking = {
            i: d for i, d in self._parking.items() if d.partition not in gone
        }

    # -- reading ----------------------------------------------------------

    def take(
        self, count: int, wait: float, only_while_behind: bool
    ) -> list[tuple[str, dict[str, Any]]]:
        """Hand out up to ``count`` messages, waiting at most ``wait`` seconds.

        With ``only_while_behind`` the wait ends as soon as every partition's
        fetch position has reached the end this consumer knows of, so a
        non-blocking read returns at once on an idle stream but still waits for
        records already written. While another reader polls, only what is
        already fetched is handed out, and nothing of a careful partition: its
        handouts must be committed before they leave, which needs the poll.
        """
        self.has_read = True
        self.last_used = time.monotonic()
        deadline = time.monotonic() + wait
        if not self._polling.acquire(timeout=wait):
            # The reader polling now commits when done, and hands out the rest.
            return self._hand_out_ready(count, committing=False)
        try:
            self.join()
            batch = self._take(count, deadline, only_while_behind)
            # Before the batch leaves, careful partitions record its handouts
            # durably; no other thread polls this consumer meanwhile.
            self._maybe_commit(wait_for_careful=True)
        finally:
            self.last_used = time.monotonic()  # idle from when the read ended
            self._polling.release()
        failure = self.local_failure
        if not batch and failure is not None:
            # Not an empty stream: this client cannot reach the cluster.
            raise OutOfLocalResources(
                f"Kafka consumer of group {self.group} on {self.topic} cannot "
                f"connect: {failure}"
            )
        return batch

    def _take(
        self, count: int, deadline: float, only_while_behind: bool
    ) -> list[tuple[str, dict[str, Any]]]:
        while not self._closed:
            with self._lock:
                self._expire_stale()
                self._release_due()
                missing = count - len(self._ready)
            if missing > 0:
                batch_size = min(missing, _CONSUME_MAX)
                self._accept_all(
                    self._fetch(partial(self.consumer.consume, batch_size, 0))
                )
            batch = self._hand_out_ready(count)
            left = deadline - time.monotonic()
            if batch or left <= 0:
                return batch
            # Acks made meanwhile leave their commit to this reader, which
            # keeps COMMIT_INTERVAL_MS however long it waits.
            self._maybe_commit()
            with self._lock:
                if only_while_behind and self._joined and not self._behind():
                    return []
                # Polled in slices, so close() need not wait for the read.
                left = min(
                    left,
                    self._schedule.until_next(),
                    self._until_commit_due(),
                    _POLL_SLICE,
                )
            if self._credentials.refusal() is not None:
                return []  # nothing can arrive; the refusal was logged
            self._accept_all(self._fetch(partial(self._poll, left)))
        return []

    def _fetch(self, call: Callable[[], list[Message]]) -> list[Message]:
        """``consume`` or ``poll``, which also run callbacks (rebalances, logs,
        errors). When one of those raises, confluent-kafka drops the records
        the call fetched and raises, and librdkafka's position is already past
        them: rewind every partition to its first record not received here,
        or they would never be delivered."""
        try:
            return call()
        except Exception:
            self._rewind()
            raise

    def _poll(self, timeout: float) -> list[Message]:
        message = self.consumer.poll(timeout)
        return [] if message is None else [message]

    def _rewind(self) -> None:
        with self._lock:
            targets = [
                TopicPartition(
                    self.topic,
                    partition,
                    tracker.next_offset
                    if tracker.next_offset is not None
                    else self._starts.get(partition, self._reset_to),
                )
                for partition, tracker in self._partitions.items()
            ]
        for target in targets:
            try:
                self.consumer.seek(target)
            except KafkaException as exc:
                logger.warning(
                    "Kafka consumer %s: could not rewind partition %s: %s",
                    self.group,
                    target.partition,
                    exc,
                )

    def _hand_out_ready(
        self, count: int, committing: bool = True
    ) -> list[tuple[str, dict[str, Any]]]:
        """Hand out fetched messages in order; a caller not ``committing``
        before the batch leaves stops at the first of a careful partition."""
        with self._lock:
            handed: list[tuple[str, dict[str, Any]]] = []
            while self._ready and len(handed) < count:
                tracker = self._partitions.get(self._ready[0].partition)
                if not committing and tracker is not None and tracker.careful:
                    break
                delivery = self._ready.popleft()
                identifier = delivery.record.identifier
                if (
                    identifier in self._inflight
                    or identifier in self._waiting
                    or identifier in self._parking
                ):
                    # Another record with this message-id is still open (a
                    # mirror or a retried write copied it): finish the copy,
                    # or its offset would hold every later commit back.
                    logger.warning("Skipping duplicate of message %s", identifier)
                    self._finish(delivery)
                    continue
                if self._killed_its_consumers(delivery):
                    continue
                handed.append(self._hand_out(delivery))
            return handed

    def _killed_its_consumers(self, delivery: Delivery) -> bool:
        """Dead-letter a record earlier owners kept receiving and never
        finished, the sign of a record that stops its consumer."""
        tracker = self._partitions.get(delivery.partition)
        if delivery.handed or tracker is None:
            return False
        earlier = tracker.handouts(delivery.offset)
        delivery.attempts = max(delivery.attempts, earlier)
        limit = self._settings.max_retries
        if earlier <= limit:
            return False
        reason = (
            f"handed out {earlier} times to consumers that stopped before "
            f"finishing it (max_retries={limit})"
        )
        self._park(delivery, reason)
        return True

    def _accept_all(self, messages: list[Message]) -> None:
        if messages:  # fetched, or a partition's end reported: Kafka answers
            self._reachability.answered()
            self.local_failure = None
        with self._lock:
            for message in messages:
                self._accept(message)

    def _accept(self, message: Message) -> None:
        error = message.error()
        partition, offset = message.partition(), message.offset()
        tracker = self._partitions.get(partition) if partition is not None else None
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                logger.warning("Kafka consumer %s: %s", self.group, error)
            elif tracker is not None and partition is not None and offset is not None:
                tracker.reached_end(offset)
                if self._produced_end(self.topic, partition) > offset:
                    # Written before the topic was deleted and made again.
                    self._stale_end(self.topic, partition, offset)
            return
        if tracker is None or partition is None or offset is None:
            return
        tracker.fetched(offset)
        record = read_record(message)
        only_group = record.headers.get(HEADER_ONLY_GROUP)
        if record.value is None or only_group not in (None, self.group):
            # A tombstone, or a replay meant for another group.
            tracker.finish(offset)
            return
        delivery = Delivery(record, partition, offset, record.payload or {})
        if record.payload is None:
            delivery.problem = record.problem
            self._park(delivery, record.problem)
        else:
            self._ready.append(delivery)

    def _behind(self) -> bool:
        """Whether a partition may hold records this consumer has not fetched.

        Answered locally: the fetch position is unknown until the first record
        or end-of-partition event after an assignment; after that it is behind
        only if an end seen while fetching, or reached by this process's own
        confirmed writes, lies beyond it.
        """
        for partition, tracker in self._partitions.items():
            position = tracker.next_offset
            if position is None:
                return True
            if position < max(tracker.end, self._produced_end(self.topic, partition)):
                return True
        return False

    def _hand_out(self, delivery: Delivery) -> tuple[str, dict[str, Any]]:
        tracker = self._partitions.get(delivery.partition)
        if not delivery.handed and tracker is not None:
            delivery.handed = True
            tracker.handed_out(delivery.offset)
        if self._auto_ack:
            self._finish(delivery)
        else:
            delivery.delivered_at = time.monotonic()
            self._inflight[delivery.record.identifier] = delivery
        return delivery.record.identifier, delivery.payload

    # -- ack / nack -------------------------------------------------------

    def ack(self, identifier: str) -> bool:
        self.last_used = time.monotonic()
        with self._lock:
            delivery = self._inflight.pop(identifier, None) or self._waiting.pop(
                identifier, None
            )
            if delivery is None:
                return False
            self._finish(delivery)
        self._commit_unless_polled()
        return True

    def _commit_unless_polled(self) -> None:
        """Commit from an ack only while no reader polls: librdkafka can hold
        a commit until a poll on another thread returns. A polling reader
        commits when its poll is done."""
        if self._polling.acquire(blocking=False):
            try:
                self._maybe_commit()
            finally:
                self._polling.release()

    def nack(self, identifier: str) -> bool:
        self.last_used = time.monotonic()
        with self._lock:
            delivery = self._inflight.pop(identifier, None)
            if delivery is None:
                return False
            self._fail(delivery, "nacked")
            return True

    def _fail(self, delivery: Delivery, cause: str) -> None:
        delivery.attempts += 1
        limit = self._settings.max_retries
        if self.owned or delivery.attempts <= limit:
            self._hold(delivery, self._backoff(delivery.attempts - 1))
        else:
            reason = f"{cause}; gave up after {delivery.attempts} attempts"
            self._park(delivery, f"{reason} (max_retries={limit})")

    def _park(self, delivery: Delivery, reason: str) -> None:
        """Hand ``delivery`` to the dead-letter writer (under ``_lock``). It
        stays open, so no commit passes it, until the write is confirmed."""
        delivery.dead_letter_reason = reason
        self._parking[delivery.record.identifier] = delivery
        self._submit(partial(self._write_dead_letter, delivery))

    def _write_dead_letter(self, delivery: Delivery) -> None:
        """On the writer's thread: write, then finish the delivery, or hold
        it for another attempt after a pause that doubles up to 30 s."""
        if self._closed:
            return  # the next owner reads the record again
        written = self._dead_letter(delivery, delivery.dead_letter_reason)
        with self._lock:
            if self._parking.get(delivery.record.identifier) is not delivery:
                return  # its partition moved meanwhile: the new owner has it
            del self._parking[delivery.record.identifier]
            if written:
                self._finish(delivery)
                tracker = self._partitions.get(delivery.partition)
                if tracker is not None:
                    # Committed now, not coalesced: a crash before the commit
                    # dead-letters the message again.
                    tracker.last_commit = -math.inf
            else:
                failures = delivery.dead_letter_failures
                delivery.dead_letter_failures += 1
                pause = min(2.0**failures, _DEAD_LETTER_PAUSE_MAX)
                self._hold(delivery, pause)
        if written:
            self._commit_unless_polled()

    def _backoff(self, retries: int) -> float:
        settings = self._settings
        return backoff(retries, settings.retry_delay, settings.backoff_multiplier)

    def _hold(self, delivery: Delivery, delay: float) -> None:
        self._waiting[delivery.record.identifier] = delivery
        self._schedule.hold(delivery.record.identifier, delay)

    def _release_due(self) -> None:
        """Move held messages whose backoff has passed to the front of the queue."""
        released: list[Delivery] = []
        for identifier in self._schedule.due():
            delivery = self._waiting.pop(identifier, None)
            if delivery is None:
                continue  # acked meanwhile, or its partition was revoked
            if delivery.dead_letter_reason:
                self._park(delivery, delivery.dead_letter_reason)
            else:
                released.append(delivery)
        self._ready.extendleft(reversed(released))

    def _expire_stale(self) -> None:
        """Treat deliveries unacked for ``message_timeout`` as failed attempts."""
        limit = time.monotonic() - self._settings.message_timeout
        while self._inflight:
            identifier, delivery = next(iter(self._inflight.items()))
            if delivery.delivered_at > limit:
                return
            del self._inflight[identifier]
            logger.warning("Message %s not acked within message_timeout", identifier)
            self._fail(delivery, "not acked within message_timeout")

    # -- commits ----------------------------------------------------------

    def _finish(self, delivery: Delivery) -> None:
        tracker = self._partitions.get(delivery.partition)
        if tracker is not None:
            tracker.finish(delivery.offset)
            tracker.uncommitted += 1

    def _maybe_commit(self, wait_for_careful: bool = False) -> None:
        """Commit careful partitions now (waiting for Kafka to confirm when
        asked), each other one when its own coalescing window is full."""
        with self._lock:
            careful = [p for p, t in self._partitions.items() if t.careful]
            at_once = self._commit_offsets(careful)
            now = time.monotonic()
            due = [
                partition
                for partition, tracker in self._partitions.items()
                if not tracker.careful
                and tracker.uncommitted
                and (
                    tracker.uncommitted >= self._settings.commit_every
                    or now - tracker.last_commit >= self._settings.commit_interval
                )
            ]
            coalesced = self._commit_offsets(due)
        self._send_commit(at_once, sync=wait_for_careful)
        self._send_commit(coalesced, sync=False)

    def _until_commit_due(self) -> float:
        """Seconds until a partition's finished messages are due for commit
        (under ``_lock``; inf: nothing finished waits). Careful partitions
        are committed between any two slices of a poll."""
        interval = self._settings.commit_interval
        waits = [
            tracker.last_commit + interval - time.monotonic()
            for tracker in self._partitions.values()
            if tracker.uncommitted and not tracker.careful
        ]
        # Not sooner than _COMMIT_RETRY: a commit due now was just tried.
        return max(_COMMIT_RETRY, min(waits, default=math.inf))

    def _commit_offsets(
        self, partitions: Iterable[int], handover: str | None = None
    ) -> list[TopicPartition]:
        """Each partition's finished prefix, to commit.

        Usually only partitions whose point or metadata changed are sent; a
        failed commit is covered by the next one. A ``handover`` (on revoke or
        close, before the partitions change hands) sends every known point,
        with that metadata.
        """
        offsets: list[TopicPartition] = []
        for partition in partitions:
            tracker = self._partitions.get(partition)
            point = tracker.commit_point() if tracker is not None else None
            if tracker is None or point is None:
                continue
            metadata = tracker.commit_metadata() if handover is None else handover
            if handover or (point, metadata) != (
                tracker.committed,
                tracker.committed_metadata,
            ):
                offsets.append(
                    TopicPartition(self.topic, partition, point, metadata=metadata)
                )
            else:
                # Finished out of order: nothing new to commit until the
                # unfinished record before them is.
                tracker.uncommitted = 0
        return offsets

    def _send_commit(self, offsets: list[TopicPartition], sync: bool) -> None:
        if not offsets:
            return
        try:
            if sync:
                self.consumer.commit(offsets=offsets, asynchronous=False)
            else:
                self.consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as exc:
            logger.warning("Kafka commit for group %s failed: %s", self.group, exc)
            return
        with self._lock:
            now = time.monotonic()
            for tp in offsets:
                tracker = self._partitions.get(tp.partition)
                if tracker is not None:
                    tracker.committed = tp.offset
                    tracker.committed_metadata = tp.metadata or ""
                    tracker.uncommitted = 0
                    tracker.last_commit = now

    # -- lifecycle and figures ---------------------------------------------

    def close(self, wait: float) -> None:
        """Commit what is finished, leave the group, drop all local state.

        The final commit is asynchronous; librdkafka completes it before the
        consumer leaves. Leaving can take up to ``session.timeout.ms`` when the
        cluster is unreachable, so it runs on a helper thread and this returns
        after ``wait`` seconds at most; the group expires the member anyway.
        Clients that let go and are still leaving are waited for alike.
        """
        deadline = time.monotonic() + wait
        with self._lock:
            if self._closed:
                return
            self._closed = True
            closers = self._letting_go  # no let-go starts once closed
            member = self._member  # False: never read, or let go
            offsets: list[TopicPartition] = []
            if member:
                offsets = self._commit_offsets(list(self._partitions), CLEAN_HANDOVER)
                self._drop(set(self._partitions))
        if member:
            self._send_commit(offsets, sync=False)
            closer = threading.Thread(
                target=self._close_consumer, name=f"close-{self.group}", daemon=True
            )
            closer.start()
            closers = [*closers, closer]
        for closer in closers:
            closer.join(max(0.0, deadline - time.monotonic()))
        if any(closer.is_alive() for closer in closers):
            # Without a wait (an idle or broken consumer replaced), leaving
            # in the background is what the caller asked for.
            logger.log(
                logging.WARNING if wait > 0 else logging.DEBUG,
                "Kafka consumer of group %s did not close within %.1fs; "
                "it keeps leaving in the background",
                self.group,
                wait,
            )

    def _close_consumer(self) -> None:
        try:
            # A reader still polling finishes first: closing under it would crash.
            with self._polling:
                self.consumer.close()
        except (KafkaException, RuntimeError) as exc:
            logger.warning("Closing Kafka consumer %s: %s", self.group, exc)

    def finished_beyond(self, committed: dict[int, int]) -> int:
        """Finished records at or after the group's ``committed`` offsets
        (per partition): Kafka's lag counts them, though none needs work."""
        with self._lock:
            return sum(
                tracker.finished_uncommitted(committed[partition])
                for partition, tracker in self._partitions.items()
                if partition in committed
            )

    def figures(self) -> dict[str, Any]:
        with self._lock:
            return {
                "partitions": sorted(self._partitions),
                "in_flight": len(self._inflight),
                "waiting_retry": len(self._waiting),
                "dead_lettering": len(self._parking),
                "finished_uncommitted": sum(
                    t.uncommitted for t in self._partitions.values()
                ),
                "owned_by_engine": self.owned,
                "member": self._member,
            }
