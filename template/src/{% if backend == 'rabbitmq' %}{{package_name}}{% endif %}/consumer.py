"""One consumer group's reading of one stream: deliveries, acks, retries.

A `GroupConsumer` holds an AMQP consumer on the group's queue, with at most
``PREFETCH`` unacked deliveries. Protean's ack and nack map onto them:

* an ack settles exactly that delivery, from the caller's thread: it answers
  at once and leaves the loop to write ``basic.ack`` (which has no reply),
  many acks in one frame where it can (see `acks`);
* a nack holds the delivery (still unacked on the server, so a crash gives it
  back) and hands it out again, same identifier, after the backoff, instead of
  requeueing it, which would loop without delay and lose its place;
* past ``max_retries`` nacks, for groups Protean's engine does not own, the
  message is copied to the dead-letter queue (confirmed) and then acked;
* the server counts deliveries too: a message that stopped every consumer it
  reached (each crash returns it) is dead-lettered by the queue's delivery limit.

The server closes a channel holding a delivery for ``consumer_timeout`` (30
min), so nothing stays unacked here past `HOLD_LIMIT`: a retry waiting out a
long backoff is put back at the end of its queue as a copy with its nack count,
then acked; prefetched deliveries never handed out go back to their places.

Runs on the broker's loop thread (see `event_loop`), except `GroupConsumer.ack`.
"""

import asyncio
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiormq
from aio_pika.abc import AbstractChannel
from aiormq.abc import DeliveredMessage

from .acks import Acks
from .client import Link, close_quietly
from .config import HOLD_LIMIT, RabbitMQSettings
from .errors import RabbitMQBrokerError
from .messages import (
    HEADER_ATTEMPTS,
    HEADER_ERROR,
    HEADER_FAILED_AT,
    HEADER_GROUP,
    HEADER_NOT_BEFORE,
    HEADER_ONLY_GROUP,
    HEADER_ORIGINAL_ID,
    HEADER_STREAM,
    Outgoing,
    decode_payload,
    header_int,
    header_text,
    new_identifier,
)
from .names import dlq_stream_of
from .topology import Topology

logger = logging.getLogger(__name__)

# Identifiers of deliveries given back to their queue remembered per group.
GIVEN_BACK_REMEMBERED = 10_000
# How often a group nobody reads is looked after.
SWEEP_INTERVAL = 30.0
# The longest a consumer stays after CONSUMER_IDLE_MS is up (see `_let_go`).
IDLE_CHECK_MAX = 5.0
# How often a consumer binds its queue to its stream's exchange again.
BIND_CHECK_INTERVAL = 30.0

Message = tuple[str, dict[str, Any]]


def headers_of(message: DeliveredMessage) -> dict[str, Any]:
    return dict(message.header.properties.headers or {})


def message_id(message: DeliveredMessage) -> str | None:
    return message.header.properties.message_id


@dataclass
class Delivery:
    """A delivery the group holds: handed out, or waiting for its retry."""

    message: DeliveredMessage
    identifier: str
    payload: dict[str, Any]
    attempts: int
    received_at: float
    handed_at: float = 0.0
    due: float | None = None  # set while held for a retry
    # Protean's engine published it to the dead-letter stream itself.
    dead_lettered_upstream: bool = False


class OpenDeliveries:
    """The deliveries a group holds, by identifier, behind a lock: acks take
    from it on Protean's threads, everything else on the loop thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[str, Delivery] = {}

    def __contains__(self, identifier: str) -> bool:
        with self._lock:
            return identifier in self._by_id

    def add(self, delivery: Delivery) -> None:
        with self._lock:
            self._by_id[delivery.identifier] = delivery

    def get(self, identifier: str) -> Delivery | None:
        with self._lock:
            return self._by_id.get(identifier)

    def pop(self, identifier: str) -> Delivery | None:
        with self._lock:
            return self._by_id.pop(identifier, None)

    def snapshot(self) -> list[Delivery]:
        with self._lock:
            return list(self._by_id.values())

    def clear(self) -> None:
        with self._lock:
            self._by_id.clear()


class GroupConsumer:
    """The AMQP consumer of one (stream, group) and the deliveries it holds."""

    def __init__(
        self,
        link: Link,
        topology: Topology,
        settings: RabbitMQSettings,
        stream: str,
        group: str,
        auto_ack: bool,
        dead_letters_enabled: Callable[[], bool],
        last_published: Callable[[], tuple[str, float] | None],
    ) -> None:
        self.stream = stream
        self.group = group
        self.settings = settings
        # Set when Protean's engine owns retries and dead-lettering for the group.
        self.owned = False
        self.created_at = time.time()
        self.consumers: set[str] = set()
        # The AMQP consumer: its channel, on the broker's connection.
        self._link = link
        self._topology = topology
        self.queue_name = ""
        self._channel: AbstractChannel | None = None
        self._tag = ""
        self._narrow = False
        self._starting = asyncio.Lock()
        # What it delivered: waiting to be read, or held until settled.
        self._loop = asyncio.get_running_loop()
        self._acks = Acks(self._loop)
        self._auto_ack = auto_ack
        self._ready: deque[DeliveredMessage] = deque()
        self._received: dict[int, float] = {}
        self._arrived = asyncio.Event()
        self._open = OpenDeliveries()
        # Identifiers that arrived lately, to tell whether this process's own
        # last publish to the stream has (see `_behind`).
        self._last_published = last_published
        self._arrivals: deque[str] = deque(maxlen=1024)
        self._bound_at = math.inf
        self._bind_checked = 0.0
        self._sweeper: asyncio.Task[None] | None = None
        self._housekeeping_lock = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()
        # Given back to the queue and not yet delivered again (see
        # `_housekeeping`): deliveries sent before them go back too.
        self._returning: set[str] = set()
        self._returning_until = 0.0
        self._set_aside: list[DeliveredMessage] = []
        # Identifiers given back once already: a second time, they are put
        # back as copies instead (see `_give_back`).
        self._given_back: dict[str, None] = {}
        self._dead_letters_enabled = dead_letters_enabled
        self.dead_lettered = 0
        # When a caller last read, acked or nacked through this consumer: one
        # nobody uses for ``CONSUMER_IDLE_MS`` cancels (see `_let_go`).
        self.last_used = time.monotonic()
        # Reads waiting on this consumer now.
        self._reading = 0

    # -- the AMQP consumer --------------------------------------------------

    @property
    def started(self) -> bool:
        return self._channel is not None and not self._channel.is_closed

    async def start(self, timeout: float, copy_wait: float | None = None) -> None:
        """Declare the group's queue and consume from it, unless already done.

        Single-flight: reads of one group from several threads at once share
        one channel and one consumer, so an ack of one never settles another's.
        """
        if self.started:
            return
        async with self._starting:
            if not self.started:
                await self._start(timeout, copy_wait)

    async def declare(self, timeout: float) -> None:
        """Declare and bind the group's queue, without consuming from it."""
        self.queue_name, _ = await self._topology.ensure_group(
            self.stream, self.group, timeout
        )

    async def _start(self, timeout: float, copy_wait: float | None) -> None:
        self.forget()
        self.queue_name, _ = await self._topology.ensure_group(
            self.stream, self.group, timeout, copy_wait
        )
        self._bound_at = self._bind_checked = time.monotonic()
        channel = await self._link.channel(timeout)
        # One delivery at first: if the head of the queue is a message that
        # kills consumers, a crash returns (and counts) it alone, not the
        # PREFETCH messages behind it (see `_widen`). Not with a single active
        # consumer: widening consumes again, which hands the queue to another
        # process's waiting consumer while this one still works on a message.
        self._narrow = not self.settings.single_active_consumer
        prefetch = 1 if self._narrow else self.settings.prefetch
        await channel.set_qos(prefetch_count=prefetch, timeout=timeout)
        self._tag = await self._consume(channel, timeout)
        self._channel = channel
        channel.close_callbacks.add(self._channel_closed)
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _widen(self) -> None:
        """Consume again with the full ``PREFETCH`` (a prefetch applies to
        consumers made after it is set) once what the queue gave back has been
        worked through: a delivery arrives that was never delivered before, or
        one is nacked (held, it would stop a prefetch of one). Until then each
        redelivered message comes alone, so a crash counts only the message it
        was handed. Deliveries that arrived meanwhile stay valid: the channel
        stays open."""
        channel = self._channel
        if not self._narrow or channel is None or channel.is_closed:
            return
        self._narrow = False
        timeout = self.settings.operation_timeout
        underlay = await channel.get_underlay_channel()
        await underlay.basic_cancel(self._tag, timeout=timeout)
        await channel.set_qos(prefetch_count=self.settings.prefetch, timeout=timeout)
        self._tag = await self._consume(channel, timeout)

    async def _consume(self, channel: AbstractChannel, timeout: float) -> str:
        """Consume the group's queue on aiormq's channel under aio-pika's:
        aio-pika would wrap each delivery in a message object and a task of its
        own, the largest cost of reading after aiormq's decoding."""
        underlay = await channel.get_underlay_channel()
        underlay.on_consumer_cancel_callbacks.add(self._cancelled)
        started = await underlay.basic_consume(
            self.queue_name, self._on_message, no_ack=False, timeout=timeout
        )
        return started.consumer_tag or ""

    async def _widen_quietly(self) -> None:
        """`_widen`, whose failure costs only speed: reads go on with one."""
        try:
            await self._widen()
        except (aiormq.exceptions.AMQPError, RuntimeError, OSError) as exc:
            logger.debug("consuming %s again failed: %s", self.queue_name, exc)

    async def _sweep(self) -> None:
        """Housekeeping while nobody reads: a group left alone must not hold
        deliveries into ``consumer_timeout`` either, nor keep its queue from
        the processes that read (see `_let_go`)."""
        while True:
            idle_check = min(IDLE_CHECK_MAX, self.settings.consumer_idle / 4)
            await asyncio.sleep(min(SWEEP_INTERVAL, idle_check))
            if self.started:
                try:
                    await self._housekeeping()
                    await self._let_go()
                except (RabbitMQBrokerError, aiormq.exceptions.AMQPError, OSError):
                    logger.debug("housekeeping of %s failed", self.queue_name)

    async def _let_go(self) -> None:
        """Cancel the consumer once nobody read, acked or nacked through it
        for ``CONSUMER_IDLE_MS`` and it holds no delivery a handler may still
        settle (one handed out longer than ``message_timeout`` ago already
        counts as failed, see `_look_after`): with a single active consumer,
        a consumer that stopped reading would keep the whole queue from the
        processes that read. Its channel closes, so the server gives back what
        it had prefetched or held for a retry; the next read consumes again."""
        if self._reading or (
            time.monotonic() - self.last_used < self.settings.consumer_idle
        ):
            return
        if any(d.due is None for d in self._open.snapshot()):
            return
        await self._acks.drained(self.settings.operation_timeout)
        if self._reading or (
            time.monotonic() - self.last_used < self.settings.consumer_idle
        ):
            return  # read meanwhile
        channel, self._channel = self._channel, None
        self.forget()
        self.consumers.clear()
        if channel is not None:
            await close_quietly(channel)
        logger.info(
            "Consumer of %s unused for CONSUMER_IDLE_MS: cancelled", self.queue_name
        )

    async def _on_message(self, message: DeliveredMessage) -> None:
        self._acks.delivered(message)
        identifier = message_id(message) or ""
        self._arrivals.append(identifier)
        self._received[id(message)] = time.monotonic()
        if self._returning and identifier not in self._returning:
            # Sent before the server took back what was given back: it waits
            # here, behind them, so queue order holds (see `_give_back`).
            self._set_aside.append(message)
        else:
            self._returning.discard(identifier)
            self._ready.append(message)
        self._release_set_aside()
        self._arrived.set()

    def _release_set_aside(self) -> None:
        """Once all that was given back is here again (or its time is up:
        the server may have dead-lettered one), what waited behind it follows."""
        if self._returning and time.monotonic() < self._returning_until:
            return
        self._returning.clear()
        self._ready.extend(self._set_aside)
        self._set_aside.clear()

    async def _cancelled(self, frame: Any) -> None:
        """RabbitMQ ended the consumer: its queue was deleted out of band.
        Declare everything again and consume anew at the next read."""
        if frame.consumer_tag != self._tag:
            return
        logger.warning(
            "RabbitMQ cancelled the consumer of %s (queue deleted?): declaring "
            "it again at the next read; what it held is gone, and what the "
            "stream held is not copied to it again",
            self.queue_name,
        )
        self._topology.forget()
        channel, self._channel = self._channel, None
        self.forget()
        if channel is not None:
            # Not from here: this runs inside the channel's own frame reader.
            closing = self._loop.create_task(close_quietly(channel))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    def _channel_closed(self, channel: object, *_: Any) -> None:
        """RabbitMQ closed the consumer's channel: an ack still to come for one
        of its deliveries must answer False, not write to a closed channel."""
        if channel is self._channel:
            self.forget()

    def forget(self) -> None:
        """The channel is gone: the server gives its deliveries back, and a
        late ack or nack of one answers False."""
        self._ready.clear()
        self._received.clear()
        self._returning.clear()
        self._set_aside.clear()
        self._open.clear()
        self._acks.reset()
        self._channel = None

    async def stop(self) -> None:
        """Write the acks answered so far, then give back the rest."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        await self._acks.drained(self.settings.operation_timeout)
        channel, self._channel = self._channel, None
        self.forget()
        if channel is not None:
            await close_quietly(channel)

    # -- reading ------------------------------------------------------------

    async def take(
        self, count: int, wait: float, only_while_behind: bool, consumer_name: str
    ) -> list[Message]:
        """Up to ``count`` messages: retries that are due first, then new ones
        (see `_take`). A consumer is never idle while a read waits on it, however
        long the read's wait is."""
        self._reading += 1
        try:
            return await self._take(count, wait, only_while_behind, consumer_name)
        finally:
            self._reading -= 1
            self.last_used = time.monotonic()

    async def _take(
        self, count: int, wait: float, only_while_behind: bool, consumer_name: str
    ) -> list[Message]:
        """Up to ``count`` messages: retries that are due first, then new ones.

        Waits up to ``wait`` for the first; with ``only_while_behind`` (a
        non-blocking read) only while the queue has messages ready that have
        not arrived yet.
        """
        # The acks answered on Protean's threads go out first: what an ack
        # settled is on the wire before the next read of the group returns,
        # as if the ack had waited (a process that crashes right after a read
        # then gets back only what it had not acked).
        await self._acks.drained(self.settings.operation_timeout)
        # Declaring a new group's queue may take longer than a read waits; a
        # new group's copy of what its stream held is waited for only as long.
        await self.start(self.settings.operation_timeout, copy_wait=wait)
        deadline = time.monotonic() + wait
        await self._housekeeping()
        taken = self._due_retries(count)
        while len(taken) < count:
            # Cleared before looking: a delivery that arrives from here on,
            # even while `_behind` asks the server, wakes the wait below.
            self._arrived.clear()
            taken += await self._ready_messages(count - len(taken))
            if taken:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if only_while_behind and not await self._behind(left):
                break
            retry_in = self._next_due()
            try:
                await asyncio.wait_for(self._arrived.wait(), min(left, retry_in))
            except TimeoutError:
                taken += self._due_retries(count)
        if taken:
            self.consumers.add(consumer_name or f"{self.group}-reader")
        return taken

    async def _behind(self, left: float) -> bool:
        """Whether the queue holds messages for this consumer not yet here.

        A message this process published (confirmed) after the group's queue
        was bound is on its way until it arrives. Otherwise the queue's count
        of ready messages tells, asked on the consumer's own channel, where
        RabbitMQ answers after the deliveries it already sent on it.
        """
        if self._ready or self._channel is None:
            return bool(self._ready)
        published = self._last_published()
        if published is not None:
            identifier, confirmed_at = published
            if confirmed_at > self._bound_at and identifier not in self._arrivals:
                return True
        queue = await self._channel.declare_queue(
            self.queue_name, passive=True, timeout=left
        )
        await asyncio.sleep(0)  # let delivery callbacks run
        ready = int(queue.declaration_result.message_count or 0)
        return ready > 0 or bool(self._ready)

    def _next_due(self) -> float:
        dues = [d.due for d in self._open.snapshot() if d.due is not None]
        return max(0.0, min(dues) - time.monotonic()) if dues else 3600.0

    def _due_retries(self, count: int) -> list[Message]:
        now = time.monotonic()
        due = sorted(
            (d for d in self._open.snapshot() if d.due is not None and d.due <= now),
            key=lambda d: d.due or 0.0,
        )[:count]
        for delivery in due:
            delivery.due = None
            delivery.handed_at = now
        return [(d.identifier, d.payload) for d in due]

    async def _ready_messages(self, count: int) -> list[Message]:
        taken: list[Message] = []
        while self._ready and len(taken) < count:
            message = self._ready.popleft()
            received = self._received.pop(id(message), time.monotonic())
            delivery = await self._admit(message, received)
            if delivery is not None:
                taken.append((delivery.identifier, delivery.payload))
            if not message.redelivered:
                await self._widen_quietly()
        return taken

    async def _admit(
        self, message: DeliveredMessage, received: float
    ) -> Delivery | None:
        """A delivery to hand out, or None when it is settled here: not for
        this group, a second copy of one still open, or not a JSON object.

        Other producers may leave ``message_id`` out, or give several messages
        the same one: those get an identifier of their own. Only the same id
        with the same body is a copy (an outbox that published twice).
        """
        headers = headers_of(message)
        only = header_text(headers, HEADER_ONLY_GROUP)
        if only and only != self.group:
            await self._acks.ack(message)
            return None
        identifier = message_id(message) or ""
        open_delivery = self._open.get(identifier) if identifier else None
        if open_delivery is not None:
            if open_delivery.message.body == message.body:
                logger.info(
                    "Settled a second copy of message %s of %s for group %s: "
                    "the first is still being handled",
                    identifier,
                    self.stream,
                    self.group,
                )
                await self._acks.ack(message)
                return None
            identifier = ""  # another message under an id already in use
        identifier = identifier or new_identifier()
        payload = decode_payload(message.body)
        attempts = header_int(headers, "x-delivery-count") + header_int(
            headers, HEADER_ATTEMPTS
        )
        if payload is None:
            await self._dead_letter_message(
                message, identifier, attempts, "not a JSON object"
            )
            return None
        if self._auto_ack:
            await self._acks.ack(message)
            return Delivery(message, identifier, payload, attempts, received)
        wait = header_int(headers, HEADER_NOT_BEFORE) / 1000 - time.time()
        if wait > 0:  # put back while waiting for its retry: wait on
            due = time.monotonic() + wait
            self._open.add(
                Delivery(message, identifier, payload, attempts, received, due=due)
            )
            return None
        delivery = Delivery(
            message, identifier, payload, attempts, received, handed_at=time.monotonic()
        )
        self._open.add(delivery)
        return delivery

    # -- settling -----------------------------------------------------------

    def ack(self, identifier: str) -> bool:
        """Settle ``identifier``; safe from any thread, and does not wait.

        True once the delivery is taken from those held: the loop then writes
        ``basic.ack``, which RabbitMQ never answers (waiting for the write cost
        Protean's loop about 0.4 ms an ack), before the group's next read
        returns. A connection lost before the write gives the message back,
        as it would had the write gone out unread.
        """
        self.last_used = time.monotonic()
        delivery = self._open.pop(identifier)
        return delivery is not None and self._acks.ack_soon(delivery.message)

    def dead_lettered_upstream(self, identifier: str) -> None:
        """Protean's engine dead-lettered ``identifier`` itself: it does so,
        without settling it, for a message it cannot deserialize. Settled
        after ``message_timeout`` instead of being handed out again (and
        dead-lettered again) for ever."""
        delivery = self._open.get(identifier)
        if delivery is not None and self.owned:
            delivery.dead_lettered_upstream = True

    async def nack(self, identifier: str) -> bool:
        self.last_used = time.monotonic()
        delivery = self._open.get(identifier)
        if delivery is None or delivery.due is not None:
            return False
        await self._fail(delivery, "nacked")
        return True

    async def _fail(self, delivery: Delivery, reason: str) -> None:
        delivery.attempts += 1
        if self.owned or delivery.attempts <= self.settings.max_retries:
            delivery.due = time.monotonic() + self.settings.backoff(delivery.attempts)
            await self._widen_quietly()  # the process survived the message
            return
        self._open.pop(delivery.identifier)
        if not await self._dead_letter_message(
            delivery.message,
            delivery.identifier,
            delivery.attempts,
            f"{reason} {delivery.attempts} times (max_retries="
            f"{self.settings.max_retries})",
        ):
            # Kept: retried again after the backoff, dead-lettered later.
            delivery.due = time.monotonic() + self.settings.backoff(delivery.attempts)
            self._open.add(delivery)

    async def _dead_letter_message(
        self,
        message: DeliveredMessage,
        identifier: str,
        attempts: int,
        reason: str,
    ) -> bool:
        """Copy to the stream's dead-letter queue (confirmed), then ack; without
        dead letters, drop with a warning. True once settled."""
        if not self._dead_letters_enabled():
            logger.warning(
                "Dropping message %s of %s for group %s: %s",
                identifier,
                self.stream,
                self.group,
                reason,
            )
            return await self._acks.ack(message)
        headers: dict[str, Any] = {
            HEADER_ORIGINAL_ID: identifier,
            HEADER_STREAM: self.stream,
            HEADER_GROUP: self.group,
            HEADER_ATTEMPTS: attempts,
            HEADER_ERROR: reason,
            HEADER_FAILED_AT: datetime.now(UTC).isoformat(),
        }
        queue = self._topology.names.dead_letter_queue(dlq_stream_of(self.stream))
        try:
            await self._topology.ensure_stream(
                dlq_stream_of(self.stream), self.settings.operation_timeout
            )
            await self._topology.send(
                "",
                queue,
                [(message.body, new_identifier(), headers)],
                self.settings.publish_timeout,
            )
        except (RabbitMQBrokerError, aiormq.exceptions.AMQPError, OSError) as exc:
            logger.error(
                "Could not dead-letter message %s; keeping it: %s", identifier, exc
            )
            return False
        logger.warning(
            "Dead-lettered message %s of %s for group %s: %s",
            identifier,
            self.stream,
            self.group,
            reason,
        )
        self.dead_lettered += 1
        return await self._acks.ack(message)

    # -- staying under consumer_timeout -----------------------------------------

    async def _housekeeping(self) -> None:
        """Count deliveries unsettled past ``message_timeout`` as failed, and
        put back whatever was held past `HOLD_LIMIT`. One at a time: reads
        from several threads would each count the same failure."""
        async with self._housekeeping_lock:
            await self._look_after()
            await self._check_binding()

    async def _check_binding(self) -> None:
        """Every `BIND_CHECK_INTERVAL`, bind the group's queue to its stream's
        exchange again (RabbitMQ ignores a binding it has). An exchange deleted
        out of band is declared again by the next process to publish, bound
        only to the groups that process declared; the others are bound here."""
        now = time.monotonic()
        if now - self._bind_checked < BIND_CHECK_INTERVAL:
            return
        self._bind_checked = now
        try:
            await self._topology.bind_group(
                self.stream, self.group, self.settings.operation_timeout
            )
        except (RabbitMQBrokerError, aiormq.exceptions.AMQPError, OSError) as exc:
            logger.debug("binding %s again failed: %s", self.queue_name, exc)

    async def _look_after(self) -> None:
        now = time.monotonic()
        for delivery in self._open.snapshot():
            if (
                delivery.due is None
                and now - delivery.handed_at > self.settings.message_timeout
            ):
                if delivery.dead_lettered_upstream:
                    # As Protean's Redis broker: never handed out again.
                    self._open.pop(delivery.identifier)
                    await self._acks.ack(delivery.message)
                    continue
                await self._fail(delivery, "not settled within message_timeout")
        # A retry waiting its backoff is put back as a copy. A delivery being
        # handled is not: message_timeout (refused at or above HOLD_LIMIT)
        # turns it into a retry first.
        stale = [
            d
            for d in self._open.snapshot()
            if d.due is not None and now - d.received_at > HOLD_LIMIT
        ]
        for delivery in stale:
            self._open.pop(delivery.identifier)
            not_before = time.time() + max(0.0, (delivery.due or now) - now)
            if not await self._put_back(
                delivery.message, delivery.identifier, delivery.attempts, not_before
            ):
                self._open.add(delivery)  # still held: tried again next time
        if (
            self._ready
            and now - self._received.get(id(self._ready[0]), now) > HOLD_LIMIT
        ):
            await self._give_back(now)
        self._release_set_aside()

    async def _give_back(self, now: float) -> None:
        """Prefetched deliveries that waited `HOLD_LIMIT` go back to their
        places in the queue, ahead of what followed them. On a quorum queue a
        return counts as a delivery, so each message goes back so only once:
        a second time it is put back as a copy at the end of the queue, out of
        order (PREFETCH times the handling time is past `HOLD_LIMIT`)."""
        waiting = list(self._ready) + self._set_aside
        logger.warning(
            "%d deliveries of %s waited in the prefetch buffer for %.0fs: "
            "given back to the queue; a lower PREFETCH suits handlers this slow",
            len(waiting),
            self.queue_name,
            now - self._received.get(id(waiting[0]), now),
        )
        self._ready.clear()
        self._set_aside.clear()
        self._received.clear()
        again = [m for m in waiting if (message_id(m) or "") in self._given_back]
        first = [m for m in waiting if (message_id(m) or "") not in self._given_back]
        for message in first:
            self._given_back[message_id(message) or ""] = None
        while len(self._given_back) > GIVEN_BACK_REMEMBERED:
            del self._given_back[next(iter(self._given_back))]
        self._returning |= {message_id(m) or "" for m in first}
        self._returning_until = now + self.settings.operation_timeout
        await self._acks.requeue(first)
        if again:
            named = [message_id(m) or "(no message_id)" for m in again]
            logger.warning(
                "%d of them waited that long twice: put back at the end of %s, "
                "behind what followed them, so out of order (PREFETCH times a "
                "message's handling time must stay below %.0fs): %s",
                len(again),
                self.queue_name,
                HOLD_LIMIT,
                ", ".join(named[:20]) + (", ..." if len(named) > 20 else ""),
            )
        for message in again:
            attempts = header_int(headers_of(message), HEADER_ATTEMPTS)
            if not await self._put_back(
                message, message_id(message) or new_identifier(), attempts
            ):
                await self._acks.requeue([message])

    async def _put_back(
        self,
        message: DeliveredMessage,
        identifier: str,
        attempts: int,
        not_before: float = 0.0,
    ) -> bool:
        """Send a copy to the end of the queue, then ack; False if not sent."""
        headers = {
            **headers_of(message),
            HEADER_ATTEMPTS: attempts,
            HEADER_NOT_BEFORE: int(not_before * 1000),
        }
        headers.pop("x-delivery-count", None)
        outgoing: Outgoing = (message.body, identifier, headers)
        try:
            await self._topology.send(
                "", self.queue_name, [outgoing], self.settings.publish_timeout
            )
        except (RabbitMQBrokerError, aiormq.exceptions.AMQPError, OSError) as exc:
            logger.warning("Could not put %s back in its queue: %s", identifier, exc)
            return False
        await self._acks.ack(message)
        return True

    # -- figures --------------------------------------------------------------

    def figures(self) -> dict[str, int]:
        deliveries = self._open.snapshot()
        held = sum(1 for d in deliveries if d.due is not None)
        return {
            "in_flight": len(deliveries) - held,
            "waiting_retry": held,
            "prefetched": len(self._ready),
            "dead_lettered": self.dead_lettered,
        }
