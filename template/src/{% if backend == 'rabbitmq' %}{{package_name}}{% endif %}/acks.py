"""The acks of a group's consumer channels, gathered and written in as few
frames as AMQP allows.

Protean acks each message from its own threads and expects no wait. Waking the
loop and writing one ``basic.ack`` frame per message cost more than reading the
message did, so acks queue here and the loop writes all that queued since it
last woke: per channel, the unbroken run at the start of what that channel has
outstanding as one ``basic.ack`` with ``multiple`` set, and each other ack
alone. ``multiple`` settles every outstanding delivery up to its tag on its
channel, so the run is taken only over deliveries noted as outstanding on that
very channel: every delivery is noted on arrival, and every ack of the channel
goes through here.

All but `Acks.ack_soon` run on the broker's loop thread.
"""

import asyncio
import logging
import threading
from collections import defaultdict

import aiormq
from aiormq.abc import AbstractChannel, DeliveredMessage

logger = logging.getLogger(__name__)


class Acks:
    """Outstanding deliveries per channel, and the acks still to write."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._queued: list[DeliveredMessage] = []
        self._wake_scheduled = False
        # Per channel, delivery tags not acked yet, in the order they arrived
        # (tags only grow on a channel). Only the loop thread touches it.
        self._outstanding: dict[AbstractChannel, dict[int, None]] = {}
        self._writing = asyncio.Lock()
        self._requeuing = asyncio.Lock()
        self._flushes: set[asyncio.Task[None]] = set()

    def delivered(self, message: DeliveredMessage) -> None:
        """Note a delivery as outstanding on its channel."""
        if message.delivery_tag is not None:
            tags = self._outstanding.setdefault(message.channel, {})
            tags[message.delivery_tag] = None

    def reset(self) -> None:
        """The channels are gone: the server gave their deliveries back."""
        with self._lock:
            self._queued.clear()
        self._outstanding.clear()

    def ack_soon(self, message: DeliveredMessage) -> bool:
        """Queue an ack from any thread; the loop writes it when it next wakes.
        False if the loop has stopped."""
        with self._lock:
            self._queued.append(message)
            wake = not self._wake_scheduled
            self._wake_scheduled = True
        if wake:
            try:
                self._loop.call_soon_threadsafe(self._flush_soon)
            except RuntimeError:  # the broker closed, and its channels with it
                return False
        return True

    def _flush_soon(self) -> None:
        task = self._loop.create_task(self.flush())
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def ack(self, message: DeliveredMessage) -> bool:
        """Ack one delivery and wait for the write; False if its channel is gone."""
        with self._lock:
            self._queued.append(message)
        await self.flush()
        return self.is_open(message)

    async def requeue(self, messages: list[DeliveredMessage]) -> None:
        """Give deliveries back to their queue, in order, unsettled: each goes
        back to its place (on a quorum queue, one more delivery counted).
        Calls give back in the order they are made, never interleaved."""
        async with self._requeuing:
            for message in messages:
                outstanding = self._outstanding.get(message.channel, {})
                tag = message.delivery_tag
                if tag not in outstanding or message.channel.is_closed:
                    continue
                del outstanding[tag]
                try:
                    await message.channel.basic_nack(tag, multiple=False, requeue=True)
                except (aiormq.exceptions.AMQPError, RuntimeError, OSError) as exc:
                    logger.debug("requeue on a closing channel failed: %s", exc)
                    return

    async def drained(self, timeout: float) -> None:
        """Return once every ack queued so far is written, or after ``timeout``
        (a write cut short is not lost: it goes on in the background)."""
        self._flush_soon()
        await asyncio.wait(list(self._flushes), timeout=timeout)

    async def flush(self) -> None:
        """Write every queued ack, in as few frames as each channel's
        outstanding deliveries allow."""
        async with self._writing:
            with self._lock:
                queued, self._queued = self._queued, []
                self._wake_scheduled = False
            by_channel: dict[AbstractChannel, set[int]] = defaultdict(set)
            for message in queued:
                if message.delivery_tag is not None and self.is_open(message):
                    by_channel[message.channel].add(message.delivery_tag)
            for channel, tags in by_channel.items():
                await self._write(channel, self._outstanding[channel], tags)
            for channel in [c for c in self._outstanding if c.is_closed]:
                del self._outstanding[channel]

    @staticmethod
    async def _write(
        channel: AbstractChannel, outstanding: dict[int, None], tags: set[int]
    ) -> None:
        run = []
        for tag in outstanding:
            if tag not in tags:
                break
            run.append(tag)
        frames = [(run[-1], len(run) > 1)] if run else []
        for tag in run:
            del outstanding[tag]
            tags.discard(tag)
        for tag in sorted(t for t in tags if t in outstanding):
            del outstanding[tag]
            frames.append((tag, False))
        try:
            for tag, multiple in frames:
                await channel.basic_ack(tag, multiple=multiple)
        except (aiormq.exceptions.AMQPError, RuntimeError, OSError) as exc:
            # The channel closed under the write: the server requeues
            # what it holds, as if the acks had not been sent.
            logger.debug("ack on a closing channel failed: %s", exc)

    def is_open(self, message: DeliveredMessage) -> bool:
        """Whether ``message`` came on a channel still in use, and it is open."""
        return message.channel in self._outstanding and not message.channel.is_closed
