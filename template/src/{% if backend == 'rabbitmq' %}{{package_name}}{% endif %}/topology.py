"""Declaring the exchanges and queues of streams and groups, and publishing.

Per stream: a durable fanout exchange whose alternate exchange routes to the
stream's holding queue, so a message published while no group's queue is bound
is kept (RabbitMQ drops an unrouted message) and handed to each group made
while it is held. Per (stream, group): a durable queue (quorum by default)
bound to the stream's exchange, whose server-side delivery limit dead-letters,
at least once, to the holding queue of ``stream:dlq``.

Everything here runs on the broker's loop thread (see `event_loop`).
"""

import asyncio
import logging
from collections.abc import Coroutine, Sequence
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractQueue
from aiormq import spec
from aiormq.abc import ConfirmationFrameType

from .client import Link, close_quietly
from .config import LENGTH_LIMITS, RabbitMQSettings
from .errors import (
    ExchangeMissing,
    PublishNotConfirmed,
    PublishRefused,
    PublishTimedOut,
    RabbitMQBrokerError,
    ServerUnreachable,
)
from .held import HeldCopies
from .messages import Outgoing
from .names import DLQ_SUFFIX, Names, dlq_stream_of

logger = logging.getLogger(__name__)


class Topology:
    """What exists on the server, declared once per connection."""

    def __init__(
        self,
        link: Link,
        publishing: Link,
        names: Names,
        settings: RabbitMQSettings,
    ) -> None:
        # Each connection and the channels opened on it.
        self._link = link
        self._channel: AbstractChannel | None = None
        self._inspector: AbstractChannel | None = None
        # Publishes go on a connection of their own: under a memory or disk
        # alarm RabbitMQ blocks the connections that publish, and acks and
        # reads must not wait with them.
        self._publishing = publishing
        self._publisher: AbstractChannel | None = None
        self.names = names
        self.settings = settings
        self._closing: set[asyncio.Task[None]] = set()
        self._streams: set[str] = set()
        self._groups: set[tuple[str, str]] = set()
        # Every group declared since the last data reset, across connections.
        self.declared_groups: set[tuple[str, str]] = set()
        self._warned: set[str] = set()
        # Holding queues found on a node that is down (see `ensure_stream`).
        self._unavailable: set[str] = set()
        self.copies = HeldCopies(
            link,
            names,
            self.send,
            self.send_each,
            lambda: self.settings.operation_timeout,
            self.length_limits,
        )

    def publishing_lost(self) -> None:
        """The publishing connection is gone: open a channel on the next."""
        self._publisher = None

    def forget(self) -> None:
        """The connection is gone, or something declared was deleted out of
        band: declare again on the next use."""
        self._streams.clear()
        self._groups.clear()
        for channel in (self._channel, self._publisher, self._inspector):
            if channel is not None and not channel.is_closed:
                self._close_later(channel)
        self._channel = None
        self._publisher = None
        self._inspector = None

    def _close_later(self, channel: AbstractChannel) -> None:
        """Close a channel given up, without waiting for it (on the loop)."""
        closing = asyncio.get_running_loop().create_task(close_quietly(channel))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    async def channel(self, timeout: float) -> AbstractChannel:
        """A channel for declarations; an error closes it, so it is renewed."""
        if self._channel is None or self._channel.is_closed:
            self._channel = await self._link.channel(timeout)
        return self._channel

    def holding_arguments(self, stream: str) -> dict[str, Any]:
        arguments: dict[str, Any] = {"x-queue-type": "classic"}
        if not stream.endswith(DLQ_SUFFIX):  # dead letters are kept until handled
            arguments["x-message-ttl"] = int(self.settings.unclaimed_retention * 1000)
        return arguments

    async def ensure_stream(self, stream: str, timeout: float) -> str:
        """Declare ``stream``'s exchange and holding queue; return the exchange."""
        exchange = self.names.exchange(stream)
        if stream in self._streams:
            return exchange
        channel = await self.channel(timeout)
        alternate = self.names.alternate_exchange(stream)
        holding = self.names.holding_queue(stream)
        await channel.declare_exchange(
            alternate, aio_pika.ExchangeType.FANOUT, durable=True, timeout=timeout
        )
        try:
            queue = await self._declare_queue(holding, self.holding_arguments(stream))
            await queue.bind(alternate, timeout=timeout)
            self._unavailable.discard(holding)
        except aiormq.exceptions.ChannelNotFoundEntity as exc:
            self._channel = None  # RabbitMQ closed it
            if not _on_a_node_that_is_down(exc):
                raise
            # A classic queue lives on one node of a cluster. Its stream's
            # groups read and publish on without it: only a group made now
            # needs what it holds (see `ensure_group`).
            if holding not in self._unavailable:
                self._unavailable.add(holding)
                logger.warning(
                    "Queue %r is on a RabbitMQ node that is down; streams go on "
                    "without it, new groups of %r wait for it (%s)",
                    holding,
                    stream,
                    exc,
                )
            channel = await self.channel(timeout)
        await channel.declare_exchange(
            exchange,
            aio_pika.ExchangeType.FANOUT,
            durable=True,
            arguments={"alternate-exchange": alternate},
            timeout=timeout,
        )
        self._streams.add(stream)
        return exchange

    async def rebind(self, stream: str, timeout: float) -> None:
        """Declare ``stream`` again and bind the groups declared for it: its
        exchange was deleted out of band, and with it their bindings (a queue
        that went too is declared again by its consumer)."""
        exchange = await self.ensure_stream(stream, timeout)
        for declared, group in list(self.declared_groups):
            if declared != stream:
                continue
            try:
                channel = await self.channel(timeout)
                queue = await channel.get_queue(
                    self.names.group_queue(stream, group), ensure=False
                )
                await queue.bind(exchange, timeout=timeout)
            except aiormq.exceptions.ChannelNotFoundEntity:
                self._channel = None  # RabbitMQ closed it

    async def bind_group(self, stream: str, group: str, timeout: float) -> None:
        """Bind the group's queue to its stream's exchange; an exchange that
        is missing is declared again first, with an ERROR."""
        queue_name = self.names.group_queue(stream, group)
        for attempt in range(2):
            channel = await self.channel(timeout)
            try:
                queue = await channel.get_queue(queue_name, ensure=False)
                await queue.bind(self.names.exchange(stream), timeout=timeout)
                return
            except aiormq.exceptions.ChannelNotFoundEntity as exc:
                self._channel = None  # RabbitMQ closed it
                if attempt or "no exchange" not in str(exc):
                    raise  # a queue deleted: its consumer was cancelled
            logger.error(
                "The exchange of %r was missing (deleted out of band?): declaring "
                "it again and binding %s to it. What %r received while it was "
                "unbound went only to the holding queue %r, not to this group.",
                stream,
                queue_name,
                stream,
                self.names.holding_queue(stream),
            )
            self._streams.discard(stream)
            await self.ensure_stream(stream, timeout)

    def group_arguments(self, stream: str, group: str) -> dict[str, Any]:
        settings = self.settings
        arguments: dict[str, Any] = {
            **settings.queue_arguments,
            "x-queue-type": settings.queue_type,
        }
        if settings.single_active_consumer:
            arguments["x-single-active-consumer"] = True
        if settings.queue_type == "quorum":
            # Set explicitly: the default is unlimited before RabbitMQ 4.0, 20 after.
            arguments["x-delivery-limit"] = settings.max_retries
        if settings.enable_dlq:
            exchange, routing_key = self.names.dead_letter_route(stream, group)
            arguments["x-dead-letter-exchange"] = exchange
            arguments["x-dead-letter-routing-key"] = routing_key
            if settings.queue_type == "quorum":
                arguments["x-dead-letter-strategy"] = "at-least-once"
                arguments["x-overflow"] = "reject-publish"
        if any(limit in arguments for limit in LENGTH_LIMITS):
            # Without it a full queue drops its oldest message, confirmed or not.
            arguments.setdefault("x-overflow", "reject-publish")
        return arguments

    def length_limits(self) -> str:
        """The length limits ``QUEUE_ARGUMENTS`` gives group queues, as set."""
        arguments = self.settings.queue_arguments
        limits = [
            f"{key}={arguments[key]}" for key in LENGTH_LIMITS if key in arguments
        ]
        return ", ".join(limits) or "set by a RabbitMQ policy"

    async def ensure_group(
        self, stream: str, group: str, timeout: float, copy_wait: float | None = None
    ) -> tuple[str, bool]:
        """Declare and bind the group's queue; return its name and whether it
        is new. A new group first receives what the stream's holding queue
        keeps (see `held`): waited for up to ``copy_wait`` (default
        ``timeout``), then `held.CopyUnderWay` is raised and the copy goes on.

        A queue this process declared before and finds missing was deleted out
        of band: it is declared again, empty, and is not new (the group had its
        copy; another would hand it out a second time)."""
        copy_wait = timeout if copy_wait is None else copy_wait
        queue_name = self.names.group_queue(stream, group)
        if (stream, group) in self._groups:
            return queue_name, False
        exchange = await self.ensure_stream(stream, timeout)
        await self.ensure_stream(dlq_stream_of(stream), timeout)
        created = not await self.exists(queue_name, timeout) and (
            (stream, group) not in self.declared_groups
        )
        holding = self.names.holding_queue(stream)
        if created and holding in self._unavailable:
            self._streams.discard(stream)  # declare it again on the next attempt
            raise RabbitMQBrokerError(
                f"the group {group!r} of {stream!r} is new, and the queue keeping "
                f"what {stream!r} received before it had a group ({holding!r}) is "
                "on a RabbitMQ node that is down: try again once that node is back"
            )
        log = self.names.copy_log(stream, group)
        if created:
            # Declared first: a copy is not finished while its log exists.
            await self._declare_queue(log, {"x-queue-type": "classic"})
        copying = created or await self.exists(log, timeout)
        queue = await self._declare_queue(
            queue_name, self.group_arguments(stream, group)
        )
        await queue.bind(exchange, timeout=timeout)
        self.declared_groups.add((stream, group))
        if copying:
            await self.copies.finish(stream, group, copy_wait)
        self._groups.add((stream, group))
        return queue_name, created

    async def _declare_queue(
        self, name: str, arguments: dict[str, Any]
    ) -> AbstractQueue:
        """Declare a durable queue; one that exists with other arguments (an
        earlier setting) is kept as it is, with a warning: RabbitMQ cannot
        change a queue's arguments, only a policy can."""
        timeout = self.settings.operation_timeout
        channel = await self.channel(timeout)
        try:
            return await channel.declare_queue(
                name, durable=True, arguments=arguments, timeout=timeout
            )
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            if name not in self._warned:
                self._warned.add(name)
                logger.warning(
                    "Queue %r exists with other arguments; keeping them (%s). "
                    "Change them with a RabbitMQ policy, or delete the queue.",
                    name,
                    exc,
                )
            self._channel = None  # RabbitMQ closed it
            channel = await self.channel(timeout)
            return await channel.declare_queue(name, passive=True, timeout=timeout)

    async def exists(self, queue_name: str, timeout: float) -> bool:
        return await self.inspect(queue_name, timeout) is not None

    async def inspect(self, queue_name: str, timeout: float) -> tuple[int, int] | None:
        """(ready messages, consumers) of a queue, None if it does not exist.

        Asked on a channel of its own: RabbitMQ closes a channel that asks
        for a queue it does not have, which must not cut short declarations
        (or a publish) under way on another.
        """
        for attempt in range(2):
            if self._inspector is None or self._inspector.is_closed:
                self._inspector = await self._link.channel(timeout)
            channel = self._inspector
            try:
                queue = await channel.declare_queue(
                    queue_name, passive=True, timeout=timeout
                )
            except aiormq.exceptions.ChannelNotFoundEntity:
                self._inspector = None  # RabbitMQ closed it
                return None
            except aiormq.exceptions.ChannelInvalidStateError:
                # Closed by another question's answer meanwhile: ask again.
                if attempt:
                    raise
                continue
            break
        result = queue.declaration_result
        return int(result.message_count or 0), int(result.consumer_count or 0)

    async def publisher(self, timeout: float) -> AbstractChannel:
        if self._publisher is None or self._publisher.is_closed:
            self._publisher = await self._publishing.channel(timeout, confirms=True)
        return self._publisher

    async def send(
        self,
        exchange: str,
        routing_key: str,
        messages: Sequence[Outgoing],
        timeout: float,
    ) -> None:
        """Publish persistent, mandatory messages and wait for every confirm.

        Past ``timeout`` the publishing channel is closed, so nothing still
        buffered for it goes out later beside the caller's retry.
        """
        results = await self._confirmed(exchange, routing_key, messages, timeout)
        failures = [result for result in results if result is not None]
        if failures:
            raise _publish_error(failures[0], len(failures), exchange or routing_key)

    async def send_each(
        self,
        exchange: str,
        routing_key: str,
        messages: Sequence[Outgoing],
        timeout: float,
    ) -> list[Exception | None]:
        """`send`, answering for each message: None once RabbitMQ confirmed
        it, else why not (`PublishRefused` for a full queue). Raises only
        when it cannot tell (`PublishTimedOut`)."""
        results = await self._confirmed(exchange, routing_key, messages, timeout)
        target = exchange or routing_key
        return [None if r is None else _publish_error(r, 1, target) for r in results]

    async def _confirmed(
        self,
        exchange: str,
        routing_key: str,
        messages: Sequence[Outgoing],
        timeout: float,
    ) -> list[BaseException | None]:
        """Each message's failure to be confirmed, None for those confirmed."""
        if not messages:
            return []
        try:
            async with asyncio.timeout(timeout):
                channel = await self.publisher(timeout)
                underlay = await channel.get_underlay_channel()
        except TimeoutError:
            self._publisher = None
            raise PublishTimedOut(
                f"RabbitMQ did not open a publishing channel within {timeout:.1f}s "
                "(PUBLISH_TIMEOUT_MS): a memory or disk alarm blocks publishers"
            ) from None
        publishes = [
            underlay.basic_publish(
                body,
                exchange=exchange,
                routing_key=routing_key,
                properties=spec.Basic.Properties(
                    message_id=identifier,
                    headers=headers,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    content_type="application/json",
                ),
                mandatory=True,
            )
            for body, identifier, headers in messages
        ]
        try:
            async with asyncio.timeout(timeout):
                results = await _settled(publishes)
        except TimeoutError:
            self._publisher = None
            # Closed behind the caller: a blocked connection reads no frame,
            # so waiting for the close would double the caller's wait.
            self._close_later(channel)
            raise PublishTimedOut(
                f"RabbitMQ did not confirm {len(messages)} message(s) within "
                f"{timeout:.1f}s (PUBLISH_TIMEOUT_MS); check the node's alarms "
                "(memory, disk) and its load"
            ) from None
        failures = [r if isinstance(r, BaseException) else None for r in results]
        if channel.is_closed and any(f is not None for f in failures):
            self._publisher = None
        return failures


async def _settled(
    publishes: list[Coroutine[Any, Any, ConfirmationFrameType | None]],
) -> list[BaseException | ConfirmationFrameType | None]:
    """Each publish's confirmation or error, as `asyncio.gather` reports them.
    One publish is awaited in this task: gather would make it a task of its own."""
    if len(publishes) > 1:
        return await asyncio.gather(*publishes, return_exceptions=True)
    try:
        return [await publishes[0]]
    except (aiormq.exceptions.AMQPError, OSError, RuntimeError) as exc:
        return [exc]


def _on_a_node_that_is_down(exc: aiormq.exceptions.ChannelNotFoundEntity) -> bool:
    """Whether RabbitMQ refused a classic queue because its node is down: it
    answers 404 NOT_FOUND, "home node ... is down or inaccessible"."""
    return "is down or inaccessible" in str(exc)


def _publish_error(exc: BaseException, count: int, target: str) -> Exception:
    if isinstance(exc, RabbitMQBrokerError):
        return exc
    if isinstance(exc, aio_pika.exceptions.DeliveryError):
        return PublishRefused(
            f"RabbitMQ refused {count} message(s) for {target!r}: {exc}; a "
            "group's queue at its QUEUE_ARGUMENTS length limit refuses new "
            "messages until the group reads"
        )
    if isinstance(exc, aiormq.exceptions.ChannelNotFoundEntity):
        return ExchangeMissing(f"RabbitMQ has no exchange {target!r}: {exc}")
    if isinstance(exc, aiormq.exceptions.AMQPError | OSError | ConnectionError):
        return ServerUnreachable(f"connection to RabbitMQ lost while publishing: {exc}")
    return PublishNotConfirmed(f"publishing to {target!r} failed: {exc!r}")
