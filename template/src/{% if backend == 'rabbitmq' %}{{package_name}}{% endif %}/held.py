"""Giving a new group what its stream held before the group existed.

A stream with no group bound routes what it receives to its holding queue
(see `topology`). A group made later gets a copy of all of it: its queue is
declared and bound at once, so it misses nothing published from then on, and
the held messages are copied into it. Nobody consumes the group's queue until
the copy is done; what was published meanwhile comes first (the README says
so), then what the stream held, in its order.

The copy can be long (a holding queue keeps a day of messages by default), so
it runs as a task of its own, in confirmed chunks, never inside one read's
time budget; reads of the group return nothing until it is done. It survives
a timeout, a lost connection and a crash: the group's copy log (a classic
queue) records each chunk once it is confirmed, and the next attempt, in this
process or another, skips what it lists (a chunk confirmed but not yet logged
is copied twice). It records places, not contents: a held message counts as
the n-th with its id and body in the holding queue's order, which a re-read
keeps, so distinct messages with the same id and body are each copied. The
log's existence is the mark of a copy not finished; it is deleted last. A
group queue at its length limit stops the copy (see `HeldCopies.finish`). One
copy per stream runs at a time across processes, under an exclusive queue
RabbitMQ deletes with the connection that holds it: two browsing the holding
queue at once would each see only part of it.
"""

import asyncio
import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable, Sequence

import aiormq
from aio_pika.abc import AbstractChannel, AbstractQueue

from .client import Link, close_quietly
from .errors import PublishRefused, RabbitMQBrokerError
from .messages import Outgoing
from .names import Names

logger = logging.getLogger(__name__)

# Messages a chunk copies and confirms at once.
CHUNK = 500
# Seconds a chunk's confirmations (and its log record's) are awaited, at least:
# no caller waits on a copy, and a chunk given up while RabbitMQ was still
# storing it, on a busy node, would be copied again when the copy resumes.
CHUNK_PATIENCE = 60.0

Send = Callable[[str, str, Sequence[Outgoing], float], Awaitable[None]]
SendEach = Callable[
    [str, str, Sequence[Outgoing], float], Awaitable[list[Exception | None]]
]


class CopyUnderWay(RabbitMQBrokerError):
    """A new group's copy of what its stream held is not finished yet."""


class HeldCopies:
    """The copies this process runs, one task per group queue."""

    def __init__(
        self,
        link: Link,
        names: Names,
        send: Send,
        send_each: SendEach,
        timeout: Callable[[], float],
        length_limits: Callable[[], str],
    ) -> None:
        self._link = link
        self._names = names
        self._send = send
        self._send_each = send_each
        self._timeout = timeout
        self._length_limits = length_limits
        self._tasks: dict[str, asyncio.Task[None]] = {}
        # Group queues whose length limit stopped their copy in this process.
        self._stopped: set[str] = set()
        # Within this process: an exclusive queue locks out other connections.
        self._streams: dict[str, asyncio.Lock] = {}

    async def finish(self, stream: str, group: str, wait: float) -> None:
        """Run (or resume) the group's copy, waiting for it up to ``wait``.

        Raises `CopyUnderWay` if it is still running then; it goes on.

        A group queue at its length limit refuses the copy: it stops, with an
        ERROR, and the group reads what it has (what it reads makes room for
        the stream's publishes). Its log is kept: the next process to start
        the group resumes it, this one does not.
        """
        queue_name = self._names.group_queue(stream, group)
        if queue_name in self._stopped:
            return
        task = self._tasks.get(queue_name)
        if task is None or task.done():
            task = asyncio.get_running_loop().create_task(self._copy(stream, group))
            self._tasks[queue_name] = task
            task.add_done_callback(lambda done: _log_failure(done, queue_name))
        try:
            await asyncio.wait_for(asyncio.shield(task), max(wait, 0.001))
        except TimeoutError:
            raise CopyUnderWay(
                f"the group {group!r} of {stream!r} is new: it is receiving what "
                f"{stream!r} held before it had a group; reads start once done"
            ) from None

    def cancel(self) -> None:
        """The broker closes: stop every copy (the log resumes it later)."""
        for task in self._tasks.values():
            task.cancel()
        self._tasks.clear()

    async def _copy(self, stream: str, group: str) -> None:
        async with self._streams.setdefault(stream, asyncio.Lock()):
            await self._copy_locked(stream, group)

    async def _copy_locked(self, stream: str, group: str) -> None:
        timeout = self._timeout()
        queue_name = self._names.group_queue(stream, group)
        log_name = self._names.copy_log(stream, group)
        lock_name = self._names.copy_lock(stream)
        lock = await self._link.channel(timeout)
        try:
            await self._lock(lock, lock_name, stream, timeout)
        except BaseException:
            await close_quietly(lock)
            raise
        try:
            seen = await self._read_log(log_name, timeout)
            browser = await self._link.channel(timeout)
            try:
                holding = await browser.get_queue(
                    self._names.holding_queue(stream), ensure=False
                )
                await self._pass(holding, queue_name, log_name, seen, timeout)
            except PublishRefused:
                self._stopped.add(queue_name)
                logger.error(
                    "RabbitMQ refused copying what %r held into %s: the queue is "
                    "at its length limit (%s). The copy stops and the group "
                    "reads what it has; the rest stays in %s for "
                    "UNCLAIMED_RETENTION_MS. Raise the limit with a RabbitMQ "
                    "policy (a queue keeps its arguments) and restart a process "
                    "reading the group: the copy goes on where it stopped.",
                    stream,
                    queue_name,
                    self._length_limits(),
                    self._names.holding_queue(stream),
                )
                return
            finally:
                # Puts every browsed message back, in order.
                await close_quietly(browser)
            await lock.queue_delete(log_name, timeout=timeout)
            logger.info("copied %d held messages into %s", len(seen), queue_name)
        finally:
            # Deleted whatever happened: other processes wait for it.
            with contextlib.suppress(
                aiormq.exceptions.AMQPError, OSError, RuntimeError
            ):
                await lock.queue_delete(lock_name, timeout=timeout)
            await close_quietly(lock)

    async def _lock(
        self, channel: AbstractChannel, lock_name: str, stream: str, timeout: float
    ) -> None:
        try:
            await channel.declare_queue(lock_name, exclusive=True, timeout=timeout)
        except aiormq.exceptions.ChannelLockedResource:
            raise CopyUnderWay(
                f"another process is copying what {stream!r} held into a new "
                "group; this one waits for it"
            ) from None

    async def _read_log(self, log_name: str, timeout: float) -> set[str]:
        """The places (see `_place`) of the messages already copied."""
        seen: set[str] = set()
        browser = await self._link.channel(timeout)
        try:
            log = await browser.get_queue(log_name, ensure=False)
            while True:
                record = await log.get(no_ack=False, fail=False, timeout=timeout)
                if record is None:
                    return seen
                seen.update(map(_upgraded, json.loads(record.body)))
        finally:
            await close_quietly(browser)

    async def _pass(
        self,
        holding: AbstractQueue,
        queue_name: str,
        log_name: str,
        seen: set[str],
        timeout: float,
    ) -> None:
        """Copy what the holding queue has and ``seen`` lacks, chunk by chunk."""
        occurrences: dict[str, int] = {}
        while True:
            chunk: list[Outgoing] = []
            keys: list[str] = []
            exhausted = False
            while len(chunk) < CHUNK:
                message = await holding.get(no_ack=False, fail=False, timeout=timeout)
                if message is None:
                    exhausted = True
                    break
                key = _place(message.message_id, message.body, occurrences)
                if key not in seen:
                    seen.add(key)
                    keys.append(key)
                    identifier = message.message_id or ""
                    chunk.append((message.body, identifier, dict(message.headers)))
            if chunk:
                # What was confirmed is logged, even when the rest was not: a
                # group queue at its length limit takes part of a chunk.
                patience = max(timeout, CHUNK_PATIENCE)
                failures = await self._send_each("", queue_name, chunk, patience)
                confirmed = [
                    key
                    for key, failure in zip(keys, failures, strict=True)
                    if failure is None
                ]
                if confirmed:
                    await self._record(log_name, confirmed, patience)
                refused = [failure for failure in failures if failure is not None]
                if refused:
                    raise refused[0]
            if exhausted:
                return

    async def _record(self, log_name: str, keys: list[str], timeout: float) -> None:
        body = json.dumps(keys).encode()
        await self._send("", log_name, [(body, "", {})], timeout)


def _place(identifier: str | None, body: bytes, occurrences: dict[str, int]) -> str:
    """A held message's place: its id and body (other producers may repeat or
    leave out ``message_id``), then how many before it in this pass had both.
    Only for resuming: messages alike are all copied, each once."""
    key = f"{identifier or ''}/{hashlib.blake2b(body, digest_size=12).hexdigest()}"
    occurrence = occurrences.get(key, 0)
    occurrences[key] = occurrence + 1
    return f"{key}/{occurrence}"


def _upgraded(place: str) -> str:
    """A log written by 0.9.0 lists id/body keys: the first of each."""
    return f"{place}/0" if _OLD_KEY.search(place) else place


_OLD_KEY = re.compile(r"/[0-9a-f]{24}$")


def _log_failure(task: "asyncio.Task[None]", queue_name: str) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None and not isinstance(exc, CopyUnderWay):
        logger.warning(
            "copying held messages into %s stopped; the next read resumes it: %s",
            queue_name,
            exc,
        )
