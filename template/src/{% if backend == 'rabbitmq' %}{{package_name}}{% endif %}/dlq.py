"""Dead letters: listing, inspecting, replaying and purging them.

Every dead letter of a stream ``s`` lives in one classic queue, the holding
queue of the stream ``s:dlq`` (see `names`), whatever put it there:

* the adapter, when a group Protean's engine does not own ran out of retries or
  met a body that is not a JSON object (provenance in headers, body untouched);
* RabbitMQ, when a quorum queue's delivery limit was reached (an ``x-death``
  header names the queue, hence the group);
* Protean's engine, which publishes what its subscriptions give up on to the
  stream ``s:dlq`` (payload carries ``_dlq_metadata``).

Listing browses the queue with ``basic.get`` and then closes its channel, which
puts every entry back in order: a classic queue neither counts nor drops them.
A replay republishes the message to the target stream for the failed group only
(a header the other groups skip), confirmed, before the entry is acked away.

Runs on the broker's loop thread (see `client`).
"""

import base64
import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aio_pika.abc import AbstractIncomingMessage
from protean.port.broker import DLQEntry

from .client import Link
from .messages import (
    HEADER_ATTEMPTS,
    HEADER_ERROR,
    HEADER_FAILED_AT,
    HEADER_GROUP,
    HEADER_ONLY_GROUP,
    HEADER_ORIGINAL_ID,
    HEADER_STREAM,
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

    async def entries(self, dlq_stream: str) -> list[DLQEntry]:
        return [entry for entry, _ in await self._browse(dlq_stream, settle=None)]

    async def find(self, dlq_stream: str, dlq_id: str) -> DLQEntry | None:
        return next(
            (e for e in await self.entries(dlq_stream) if e.dlq_id == dlq_id), None
        )

    async def replay(
        self, dlq_stream: str, dlq_id: str | None, target_stream: str
    ) -> int:
        """Republish the entry ``dlq_id`` (every entry for None); the count."""
        replayed = await self._browse(
            dlq_stream,
            settle=lambda entry: dlq_id is None or entry.dlq_id == dlq_id,
            target_stream=target_stream,
        )
        return len(replayed)

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

    async def _browse(
        self,
        dlq_stream: str,
        settle: Callable[[DLQEntry], bool] | None,
        target_stream: str = "",
    ) -> list[tuple[DLQEntry, AbstractIncomingMessage]]:
        """Every entry, in order; those ``settle`` picks are replayed to
        ``target_stream`` and removed, the rest put back untouched."""
        timeout = self._timeout()
        queue_name = self._topology.names.dead_letter_queue(dlq_stream)
        if not await self._topology.exists(queue_name, timeout):
            return []
        channel = await self._link.channel(timeout)
        picked: list[tuple[DLQEntry, AbstractIncomingMessage]] = []
        try:
            queue = await channel.get_queue(queue_name, ensure=False)
            while True:
                message = await queue.get(no_ack=False, fail=False, timeout=timeout)
                if message is None:
                    break
                entry = self._entry(dlq_stream, message)
                if settle is None:
                    picked.append((entry, message))
                elif settle(entry):
                    await self._replay(entry, message, target_stream, timeout)
                    await message.ack()
                    picked.append((entry, message))
        finally:
            await channel.close()  # unsettled entries go back, in order
        return picked

    async def _replay(
        self,
        entry: DLQEntry,
        message: AbstractIncomingMessage,
        target_stream: str,
        timeout: float,
    ) -> None:
        body = message.body
        payload = decode_payload(body)
        if payload is not None and _SUBSCRIPTION_METADATA in payload:
            payload = {k: v for k, v in payload.items() if k != _SUBSCRIPTION_METADATA}
            body = encode_payload(payload)
        headers: dict[str, Any] = {HEADER_STREAM: target_stream}
        if entry.consumer_group:
            headers[HEADER_ONLY_GROUP] = entry.consumer_group
        exchange = await self._topology.ensure_stream(target_stream, timeout)
        await self._topology.send(
            exchange, "", [(body, new_identifier(), headers)], timeout
        )
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
            when = death.get("time")
            return DLQEntry(
                dlq_id=str(uuid.uuid5(_SERVER_IDS, f"{identifier}\n{queue}")),
                original_id=identifier,
                stream=owner[0] if owner else stream,
                consumer_group=owner[1] if owner else "",
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
