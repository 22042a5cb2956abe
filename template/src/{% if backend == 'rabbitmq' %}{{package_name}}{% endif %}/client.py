"""The broker's connections to RabbitMQ, owned by its event loop's thread.

aio-pika is an asyncio library: every broker runs one event loop on a thread of
its own (see `event_loop`) and its connections live there. That loop serves
heartbeats while Protean sits idle, so an idle hour costs neither the
connection nor an ack.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection, TimeoutType

from .config import Address, RabbitMQSettings
from .errors import CredentialsRefused, ServerUnreachable

logger = logging.getLogger(__name__)


class _ReportedHere(logging.Filter):
    """Drops aiormq's ERROR for each failed connection attempt: `Link` logs an
    outage once when it begins and once when it ends, with the reason."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("error when creating transport")


logging.getLogger("aiormq.connection").addFilter(_ReportedHere())


class _Connection(aio_pika.Connection):
    """aio-pika's connection, closed here when an attempt to open it fails.

    Left to ``__del__``, a failed attempt is closed wherever the garbage
    collector runs, often another thread, where its close coroutine is never
    awaited (a RuntimeWarning) and the half-opened connection lingers.
    """

    async def connect(self, timeout: TimeoutType = None) -> None:
        try:
            await super().connect(timeout)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.close()
            raise

    def __del__(self) -> None:
        # Closed here already: aio-pika 10.0 does not count a connection that
        # never opened as closed, and would make that coroutine again.
        if not self.close_called:
            super().__del__()


def _refusal(exc: BaseException) -> bool:
    """Whether a failed connection attempt was refused sign-in (user, password,
    or a virtual host the user may not use)."""
    if isinstance(exc, aiormq.exceptions.ProbableAuthenticationError):
        return True
    text = str(exc)
    # A virtual host the user may not open: RabbitMQ answers connection.open
    # with connection.close (530 NOT_ALLOWED).
    return any(
        mark in text
        for mark in ("ACCESS_REFUSED", "NOT_ALLOWED", "530", "Connection.Close")
    )


class Link:
    """The broker's connection, opened on demand and again after a loss.

    Lives on the loop thread. An outage is logged once when it begins and once
    when it ends; a refused sign-in once, naming what to check.
    """

    def __init__(
        self,
        settings: RabbitMQSettings,
        on_lost: Callable[[], None],
        name: str = "protean broker",
    ) -> None:
        self.settings = settings
        self._name = name
        self._on_lost = on_lost
        self._connection: AbstractConnection | None = None
        self._lock: asyncio.Lock | None = None
        self._endings: set[asyncio.Task[None]] = set()
        self.down_since: float | None = None
        self._refused_logged = False
        self.server_properties: dict[str, Any] = {}
        self.connected_at: float | None = None
        self._current = 0  # the address that answered last

    @property
    def is_open(self) -> bool:
        return self._connection is not None and not self._connection.is_closed

    async def connection(self, timeout: float) -> AbstractConnection:
        if self._connection is not None and not self._connection.is_closed:
            return self._connection
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._connection is not None and not self._connection.is_closed:
                return self._connection
            # An outage costs at most PING_TIMEOUT_MS, whatever the operation.
            self._connection = await self._connect(
                min(timeout, self.settings.ping_timeout)
            )
            return self._connection

    async def _connect(self, timeout: float) -> AbstractConnection:
        """Connect to the first address that answers within ``timeout``,
        beginning with the one that answered last: a cluster's other nodes
        take over from one that stopped. Each address gets an equal share of
        what is left, so a node that accepts connections and never answers
        does not keep the others from being tried; the next attempt begins
        after it."""
        deadline = time.monotonic() + timeout
        addresses = self.settings.addresses
        reasons = []
        first = self._current
        for turn in range(len(addresses)):
            index = (first + turn) % len(addresses)
            share = (deadline - time.monotonic()) / (len(addresses) - turn)
            if share <= 0:
                break
            try:
                connection = await self._open(addresses[index], share)
            except (aiormq.exceptions.AMQPError, OSError, TimeoutError) as exc:
                if _refusal(exc):
                    raise self._refused(addresses[index]) from None
                reason = str(exc) or f"no answer within {share:.1f}s"
                reasons.append(f"{addresses[index].safe}: {reason}")
                self._current = (index + 1) % len(addresses)
                continue
            self._current = index
            self._answered(addresses[index], connection)
            connection.close_callbacks.add(self._closed)
            return connection
        reason = "; ".join(reasons) or f"no answer within {timeout:.1f}s"
        if self.down_since is None:
            self.down_since = time.monotonic()
            logger.warning(
                "RabbitMQ is unreachable: URI=%s (%s)", self.settings.safe_uri, reason
            )
        raise ServerUnreachable(
            f"no RabbitMQ node of URI={self.settings.safe_uri} answered: {reason}"
        )

    async def _open(self, address: Address, timeout: float) -> AbstractConnection:
        return await asyncio.wait_for(
            aio_pika.connect(
                address.uri,
                timeout=timeout,
                ssl_context=self.settings.ssl_context(),
                heartbeat=self.settings.heartbeat,
                client_properties={"connection_name": self._name},
                connection_class=_Connection,
            ),
            timeout,
        )

    def _refused(self, address: Address) -> CredentialsRefused:
        """The error for a refused sign-in, logged once until one succeeds."""
        if not self._refused_logged:
            self._refused_logged = True
            logger.error(
                "RabbitMQ refused the credentials of URI=%s: check the user and "
                "password in URI, and that the user may use the virtual host %r",
                address.safe,
                address.vhost,
            )
        return CredentialsRefused(
            f"RabbitMQ refused the user {address.user!r} on virtual host "
            f"{address.vhost!r} (URI={address.safe}): check the user and "
            f"password in URI and the user's permissions on the vhost"
        )

    def _answered(self, address: Address, connection: AbstractConnection) -> None:
        """A connection is open: end the outage's log, note the server."""
        if self.down_since is not None:
            logger.warning(
                "RabbitMQ answers again at URI=%s after %.1fs unreachable",
                address.safe,
                time.monotonic() - self.down_since,
            )
            self.down_since = None
        self._refused_logged = False
        self.connected_at = time.time()
        transport = getattr(connection, "transport", None)
        self.server_properties = dict(
            getattr(getattr(transport, "connection", None), "server_properties", {})
        )

    def _closed(self, connection: AbstractConnection | None, *_: Any) -> None:
        """The connection ended. aio-pika counts a connection closed only once
        `close` ran, even after the server or the network ended it: closed here,
        on the loop, it is not closed later by the garbage collector on
        whatever thread that runs (where its close coroutine is never awaited).
        """
        if connection is None or connection is self._connection:
            self._connection = None
        if connection is not None and not connection.close_called:
            ending = asyncio.get_running_loop().create_task(connection.close())
            self._endings.add(ending)
            ending.add_done_callback(self._endings.discard)
        self._on_lost()

    async def channel(
        self, timeout: float, *, confirms: bool = False
    ) -> AbstractChannel:
        connection = await self.connection(timeout)
        try:
            return await asyncio.wait_for(
                connection.channel(
                    publisher_confirms=confirms, on_return_raises=confirms
                ),
                timeout,
            )
        except RuntimeError as exc:
            # aiormq found the connection closed (a server restart) before
            # aio-pika's close callbacks ran: an outage like any other, which
            # the next attempt reconnects from.
            raise ServerUnreachable(f"connection to RabbitMQ lost: {exc}") from exc

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed:
            await connection.close()


async def close_quietly(channel: AbstractChannel) -> None:
    """Close a channel being given up; a failure to close it is only logged."""
    if channel.is_closed:
        return
    try:
        await channel.close()
    except (aiormq.exceptions.AMQPError, OSError, RuntimeError) as exc:
        logger.debug("closing a channel failed: %s", exc)
