"""The one thread that talks to RabbitMQ, and the connection it owns.

aio-pika's objects belong to the event loop they were made on and are not
thread-safe. Protean calls a broker from its own event loop (publish, ack, nack)
and from worker threads (``read_blocking``), so every broker runs one event
loop on a daemon thread of its own and hands it each operation as a coroutine
(`EventLoopThread.run`). That loop owns the connection: it serves heartbeats
while Protean sits idle, so an idle hour costs neither the connection nor an
ack, and no client object is ever touched by two threads.
"""

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection, TimeoutType

from .config import Address, RabbitMQSettings
from .errors import CredentialsRefused, RabbitMQBrokerError, ServerUnreachable

logger = logging.getLogger(__name__)

Result = TypeVar("Result")

# Added to an operation's own timeout for the hop between threads.
_HANDOVER = 1.0


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


class EventLoopThread:
    """An asyncio loop on a daemon thread, started on first use."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=_serve, args=(loop,), name=self._name, daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def run(self, operation: Coroutine[Any, Any, Result], timeout: float) -> Result:
        """Run ``operation`` on the loop; wait at most ``timeout`` seconds.

        A task and a lock: `asyncio.run_coroutine_threadsafe` chains two more
        futures, which add a fifth to each round trip between the threads.
        """
        loop = self.loop
        finished = threading.Lock()
        finished.acquire()
        started: list[asyncio.Task[Result]] = []

        def start() -> None:
            task = loop.create_task(operation)
            task.add_done_callback(lambda _: finished.release())
            started.append(task)

        try:
            loop.call_soon_threadsafe(start)
        except RuntimeError:  # closed by `stop` since `self.loop` returned it
            raise RabbitMQBrokerError("the RabbitMQ broker is closed") from None
        if not finished.acquire(timeout=timeout + _HANDOVER):
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(lambda: started and started[0].cancel())
            raise RabbitMQBrokerError(
                f"RabbitMQ operation timed out after {timeout:.1f}s"
            )
        return started[0].result()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop and return once it is closed and its thread ended: a
        host that closes every loop made during a test (Protean's own test
        suite does) must not close it at the same moment from another thread."""
        with self._lock:
            loop, self._loop = self._loop, None
            thread, self._thread = self._thread, None
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # closed already
                loop.call_soon_threadsafe(loop.stop)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    """Run ``loop`` until `EventLoopThread.stop`, then close it as `asyncio.run`
    does: what is still running is cancelled, and the loop's selector and
    self-pipe are released now rather than by the garbage collector."""
    try:
        loop.run_forever()
    finally:
        loop.run_until_complete(_cancel_the_rest())
        loop.close()


async def _cancel_the_rest() -> None:
    left = asyncio.all_tasks() - {asyncio.current_task()}
    for task in left:
        task.cancel()
    await asyncio.gather(*left, return_exceptions=True)
    await asyncio.get_running_loop().shutdown_asyncgens()


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
