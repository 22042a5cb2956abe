"""Dead letters: listing, inspecting, replaying and purging them.

Every dead letter of a stream ``s`` lives in one classic queue, the holding
queue of the stream ``s:dlq`` (see `names`), whatever put it there:

* the adapter, when a group Protean's engine does not own ran out of retries or
  met a body that is not a JSON object (provenance in headers, body untouched);
* RabbitMQ, when a quorum queue's delivery limit was reached (an ``x-death``
  header names the queue, hence the group; a queue with a hashed name routes
  its dead letters by the group's name, see `names.Names.dead_letter_route`);
* Protean's engine, which publishes what its subscriptions give up on to the
  stream ``s:dlq`` (payload carries ``_dlq_metadata``).

RabbitMQ gives a queue's entries only in order, by handing them out: an entry
is read by getting it unacked, and closing the channel puts every entry got
back where it was (a classic queue neither counts nor drops them). Meanwhile
other readers, and the ready count `depth` reports, miss it. So an operation
reads no further than it must (a listing ``limit`` entries, an inspection or a
replay up to the entry it looks for), keeps only what it returns, and closes
its channel as soon as it is done. A replay republishes the message to the
target stream for the failed group only (a header the other groups skip),
confirmed, before the entry is acked away.

Runs on the broker's loop thread (see `event_loop`).
"""

import base64
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import aiormq
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from protean.port.broker import DLQEntry

from .client import Link
from .errors import RabbitMQBrokerError
from .messages import (
    HEADER_ATTEMPTS,
    HEADER_ERROR,
    HEADER_FAILED_AT,
    HEADER_GROUP,
    HEADER_ONLY_GROUP,
    HEADER_ORIGINAL_ID,
    HEADER_STREAM,
    Outgoing,
    decode_payload,
    encode_payload,
    header_int,
    header_text,
    new_identifier,
)
from .names import DLQ_SUFFIX
from .topology import Topology

logger = logging.getLogger(__name__)

_SUBSCRIPTION_METADATA = "_dlq_metadata"
_SERVER_IDS = uuid.UUID("c8a3e1d2-6b4f-5a7e-8d9c-0f1e2a3b4c5d")
# Entries `replay_all` republishes together, under one wait for confirms.
_REPLAY_BATCH = 100
_FAILURES = (RabbitMQBrokerError, aiormq.exceptions.AMQPError, OSError)


class _Browser:
    """Gets a dead-letter queue's entries in order, unacked, until the queue
    runs out or the operation's time is up."""

    def __init__(
        self, queue: AbstractQueue | None, timeout: float, deadline: float
    ) -> None:
        self.queue = queue
        self.ready = _ready_count(queue)
        self.read = 0
        self._timeout = timeout
        self._deadline = deadline
        self.out_of_time = False

    async def next(self) -> AbstractIncomingMessage | None:
        if self.queue is None:
            return None
        if time.monotonic() >= self._deadline:
            self.out_of_time = True
            return None
        message = await self.queue.get(no_ack=False, fail=False, timeout=self._timeout)
        self.read += message is not None
        return message


def _ready_count(queue: AbstractQueue | None) -> int:
    result = queue.declaration_result if queue is not None else None
    return int(result.message_count or 0) if result is not None else 0


class DeadLetters:
    """The DLQ operations of Protean's broker port, over dead-letter queues."""

    def __init__(
        self,
        link: Link,
        topology: Topology,
        group_of_queue: Callable[[str], tuple[str, str] | None],
        timeout: Callable[[], float],
    ) -> None:
        self._link = link
        self._topology = topology
        self._group_of_queue = group_of_queue
        self._timeout = timeout

    def _deadline(self) -> float:
        """When an operation stops reading: it must return, with what it has,
        within the broker's wait for it (three ``OPERATION_TIMEOUT_MS``)."""
        return time.monotonic() + 2 * self._timeout()

    async def listing(self, dlq_streams: list[str], limit: int) -> list[DLQEntry]:
        """The first ``limit`` entries of each queue (its oldest), newest
        first, at most ``limit`` in all: the newest of a queue are behind all
        the others, and reading those would hold the whole queue."""
        deadline = self._deadline()
        found: list[DLQEntry] = []
        for dlq_stream in dict.fromkeys(dlq_streams):
            async with self._browsing(dlq_stream, deadline) as browser:
                while browser.read < limit:
                    message = await browser.next()
                    if message is None:
                        break
                    found.append(self._entry(dlq_stream, message))
                self._report_cut_short(browser, dlq_stream, "listing")
        found.sort(key=lambda e: e.failed_at or "", reverse=True)
        return found[:limit]

    async def find(self, dlq_stream: str, dlq_id: str) -> DLQEntry | None:
        async with self._browsing(dlq_stream, self._deadline()) as browser:
            while (message := await browser.next()) is not None:
                entry = self._entry(dlq_stream, message)
                if entry.dlq_id == dlq_id:
                    return entry
            self._report_cut_short(browser, dlq_stream, f"looking for {dlq_id}")
        return None

    async def replay(self, dlq_stream: str, dlq_id: str, target_stream: str) -> bool:
        """Republish the entry ``dlq_id`` and remove it; False if not found."""
        timeout = self._timeout()
        async with self._browsing(dlq_stream, self._deadline()) as browser:
            while (message := await browser.next()) is not None:
                entry = self._entry(dlq_stream, message)
                if entry.dlq_id == dlq_id:
                    await self._replay([(entry, message)], target_stream, timeout)
                    await message.ack()
                    return True
            self._report_cut_short(browser, dlq_stream, f"looking for {dlq_id}")
        return False

    async def replay_all(self, dlq_stream: str, target_stream: str) -> int:
        """Republish and remove the entries the queue held when called, in
        batches (one confirm each); the count. What the replay sends back to
        the queue (failing again) waits for the next call."""
        timeout = self._timeout()
        replayed = 0
        async with self._browsing(dlq_stream, self._deadline()) as browser:
            while replayed < browser.ready:
                batch: list[tuple[DLQEntry, AbstractIncomingMessage]] = []
                while len(batch) < min(_REPLAY_BATCH, browser.ready - replayed):
                    message = await browser.next()
                    if message is None:
                        break
                    batch.append((self._entry(dlq_stream, message), message))
                if not batch:
                    break
                try:
                    await self._replay(batch, target_stream, timeout)
                    await batch[-1][1].ack(multiple=True)  # only these are unacked
                except _FAILURES as exc:
                    if not replayed:
                        raise
                    logger.warning(
                        "Replayed %d entries of %s, then failed; the rest stay: %s",
                        replayed,
                        dlq_stream,
                        exc,
                    )
                    break
                replayed += len(batch)
            self._report_cut_short(browser, dlq_stream, "replaying")
        return replayed

    async def purge(self, dlq_stream: str) -> int:
        queue_name = self._topology.names.dead_letter_queue(dlq_stream)
        if not await self._topology.exists(queue_name, self._timeout()):
            return 0
        channel = await self._topology.channel(self._timeout())
        queue = await channel.get_queue(queue_name, ensure=False)
        result = await queue.purge(timeout=self._timeout())
        return int(result.message_count or 0)

    async def depth(self, dlq_stream: str) -> int:
        found = await self._topology.inspect(
            self._topology.names.dead_letter_queue(dlq_stream), self._timeout()
        )
        return found[0] if found else 0

    @asynccontextmanager
    async def _browsing(
        self, dlq_stream: str, deadline: float
    ) -> AsyncIterator[_Browser]:
        """A browser of the queue on a channel of its own: closing the channel
        at the end puts back, in order, every entry got and not acked."""
        timeout = self._timeout()
        channel = await self._link.channel(timeout)
        try:
            queue_name = self._topology.names.dead_letter_queue(dlq_stream)
            try:
                queue: AbstractQueue | None = await channel.declare_queue(
                    queue_name, passive=True, timeout=timeout
                )
            except aiormq.exceptions.ChannelNotFoundEntity:
                queue = None  # no dead letter yet; RabbitMQ closed the channel
            yield _Browser(queue, timeout, deadline)
        finally:
            if not channel.is_closed:
                await channel.close()

    def _report_cut_short(self, browser: _Browser, dlq_stream: str, doing: str) -> None:
        if browser.out_of_time:
            logger.warning(
                "Stopped %s in %s after %d entries (twice OPERATION_TIMEOUT_MS): "
                "RabbitMQ reaches an entry only through every entry before it",
                doing,
                dlq_stream,
                browser.read,
            )

    async def _replay(
        self,
        batch: list[tuple[DLQEntry, AbstractIncomingMessage]],
        target_stream: str,
        timeout: float,
    ) -> None:
        """Republish ``batch`` to ``target_stream``, each entry for its
        failed group only, and wait for every confirm."""
        outgoing: list[Outgoing] = []
        for entry, message in batch:
            body = message.body
            payload = decode_payload(body)
            if payload is not None and _SUBSCRIPTION_METADATA in payload:
                payload = {
                    k: v for k, v in payload.items() if k != _SUBSCRIPTION_METADATA
                }
                body = encode_payload(payload)
            headers: dict[str, Any] = {HEADER_STREAM: target_stream}
            if entry.consumer_group:
                headers[HEADER_ONLY_GROUP] = entry.consumer_group
            outgoing.append((body, new_identifier(), headers))
        exchange = await self._topology.ensure_stream(target_stream, timeout)
        await self._topology.send(exchange, "", outgoing, timeout)
        for entry, _ in batch:
            logger.info(
                "Replayed dead letter %s to %s for group %s",
                entry.dlq_id,
                target_stream,
                entry.consumer_group or "(all groups)",
            )

    def _entry(self, dlq_stream: str, message: AbstractIncomingMessage) -> DLQEntry:
        headers = dict(message.headers or {})
        stream = dlq_stream.removesuffix(DLQ_SUFFIX)
        payload = decode_payload(message.body)
        shown = (
            payload
            if payload is not None
            else {"_raw_base64": base64.b64encode(message.body).decode("ascii")}
        )
        identifier = message.message_id or ""
        if HEADER_ORIGINAL_ID in headers:  # written by the adapter
            return DLQEntry(
                dlq_id=identifier,
                original_id=header_text(headers, HEADER_ORIGINAL_ID) or "",
                stream=header_text(headers, HEADER_STREAM) or stream,
                consumer_group=header_text(headers, HEADER_GROUP) or "",
                payload=shown,
                failure_reason=header_text(headers, HEADER_ERROR) or "unknown",
                failed_at=header_text(headers, HEADER_FAILED_AT),
                retry_count=header_int(headers, HEADER_ATTEMPTS),
                dlq_stream=dlq_stream,
            )
        deaths = headers.get("x-death")
        if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
            death = deaths[0]  # by RabbitMQ: the queue's delivery limit
            queue = header_text(death, "queue") or ""
            owner = self._group_of_queue(queue)
            group = self._topology.names.group_of_dead_letter(
                dlq_stream, message.exchange or "", message.routing_key or ""
            )
            when = death.get("time")
            return DLQEntry(
                dlq_id=str(uuid.uuid5(_SERVER_IDS, f"{identifier}\n{queue}")),
                original_id=identifier,
                stream=owner[0] if owner else stream,
                consumer_group=group or (owner[1] if owner else ""),
                payload=shown,
                failure_reason=f"RabbitMQ: {header_text(death, 'reason')}",
                failed_at=when.isoformat() if isinstance(when, datetime) else None,
                retry_count=header_int(headers, "x-delivery-count"),
                dlq_stream=dlq_stream,
            )
        raw_meta = shown.get(_SUBSCRIPTION_METADATA)
        meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
        return DLQEntry(
            dlq_id=identifier,
            original_id=str(meta.get("original_id", identifier)),
            stream=str(meta.get("original_stream", stream)),
            consumer_group=str(meta.get("consumer_group", "")),
            payload=shown,
            failure_reason=str(meta.get("failure_reason", "unknown")),
            failed_at=meta.get("failed_at"),
            retry_count=int(meta.get("retry_count", 0) or 0),
            dlq_stream=dlq_stream,
        )
