"""Noticing that no Kafka broker answers, and saying so once.

librdkafka takes an unreachable cluster for passing trouble, as it should, and
reconnects by itself; but every client reports every failed attempt, to its
error callback and to its log (a producer alone about twenty a second), so a
minute's outage buries everything else. So every client of a broker reports
its errors to one `Reachability` watch: connection failures go to DEBUG, and
an outage is logged once at WARNING with what to check, and its end once more
at WARNING, so that a log read at that level shows both ends of it.

A client's "all brokers down" (or a send that timed out and a question no
broker answered) only makes the next `check` ask the cluster (a client polled
rarely, such as an idle producer, reports it long after the fact); the outage
begins when that question goes unanswered for
``PING_TIMEOUT_MS``.

While no broker answers, `check` asks the cluster again without waiting (one
question at a time), so the end of an outage is noticed even by a broker with
nothing to read or publish, and readers that cannot proceed wait in
`wait_for_answer` rather than spin.
"""

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from confluent_kafka import KafkaError

logger = logging.getLogger(__name__)

# What librdkafka reports for a broker it cannot connect to, or lost.
_CONNECTION_CODES = frozenset(
    {KafkaError._TRANSPORT, KafkaError._RESOLVE, KafkaError._ALL_BROKERS_DOWN}
)
# The facility of librdkafka's log lines about failed or lost connections.
CONNECTION_FACILITY = "FAIL"
# How the operating system says a process may open no more files or sockets
# (EMFILE, ENFILE): librdkafka reports it as a failed connection.
_OUT_OF_FILES = ("Too many open files",)


def local_exhaustion(error: KafkaError) -> str | None:
    """librdkafka's text when ``error`` means this process ran out of open
    files, not that the cluster failed; None otherwise."""
    text = error.str()
    return text if any(sign in text for sign in _OUT_OF_FILES) else None


# Asks the cluster something cheap; the future completes once it is answered.
Probe = Callable[[], "Future[Any]"]


class Reachability:
    """Whether any broker of ``bootstrap_servers`` answers the clients of one
    adapter instance."""

    def __init__(self, bootstrap_servers: str, security_protocol: str = "") -> None:
        self._servers = bootstrap_servers
        self._security = (security_protocol or "PLAINTEXT").upper()
        self._lock = threading.Lock()
        # Some broker answered this adapter instance once: its address and
        # security settings are right.
        self._heard = False
        # Monotonic time the outage was noticed; None while Kafka answers.
        self._down_since: float | None = None
        self._reason = ""
        self._back = threading.Event()
        self._back.set()
        self._probe: Probe | None = None
        self._probing = False
        # A client found every broker down, or none answering; the probe
        # confirms it.
        self._suspect = False

    def probe_with(self, probe: Probe) -> None:
        self._probe = probe

    @property
    def heard(self) -> bool:
        """A broker answered one of the clients since they were made."""
        return self._heard

    @property
    def down(self) -> bool:
        """Every broker was found down, and none has answered since."""
        return self._down_since is not None

    def report(self, error: KafkaError) -> bool:
        """A client's error callback: True if ``error`` is about connecting to
        a broker, which it then handles (the caller should not log it)."""
        code = error.code()
        if code not in _CONNECTION_CODES:
            return False
        logger.debug("%s", error.str())
        with self._lock:
            if code != KafkaError._ALL_BROKERS_DOWN:
                self._reason = error.str()
                return True
            # Asked by the next `check`: this runs inside a client's poll.
            self._suspect = True
        return True

    def suspect(self) -> None:
        """A client found no broker answering: the next `check` asks the cluster."""
        with self._lock:
            self._suspect = True

    @property
    def reason(self) -> str:
        """librdkafka's last word on a failed connection, if any."""
        return self._reason

    def unanswered(self, reason: str) -> None:
        """No broker answered a question asked within ``PING_TIMEOUT_MS``:
        the outage begins now (and is logged), unless it already did."""
        with self._lock:
            self._suspect = True
            self._reason = self._reason or reason
        self._unanswered()

    def advice(self) -> str:
        """What to check when no broker answers."""
        advice = (
            f"Check that BOOTSTRAP_SERVERS={self._servers} names the cluster's "
            "listeners, that Kafka is running there and that this host can reach "
            f"it (network, DNS, firewall), and that the listener speaks "
            f"{self._security}: "
        )
        if self._security == "PLAINTEXT":
            return advice + (
                "a TLS or SASL listener needs security.protocol (and the sasl.* "
                "settings) in CLIENT_CONFIG."
            )
        return advice + (
            f"CLIENT_CONFIG's security.protocol={self._security} gets no answer "
            "from a PLAINTEXT listener (such as the tests' dev node), nor from a "
            "listener of another protocol."
        )

    def _unanswered(self) -> None:
        """The probe went unanswered after a client found every broker down."""
        with self._lock:
            announce = self._suspect and self._down_since is None
            self._suspect = False
            if announce:
                self._down_since = time.monotonic()
                self._back.clear()
            reason = self._reason or "every broker is down"
        if announce:
            logger.warning(
                "Kafka is unreachable: no broker of BOOTSTRAP_SERVERS=%s answers "
                "(librdkafka: %s). %s Reads return nothing and publishes fail "
                "until it answers; the clients reconnect by themselves, and say "
                "so here once they do.",
                self._servers,
                reason,
                self.advice(),
            )

    def answered(self) -> None:
        """Kafka answered one of the clients: the outage, if any, is over."""
        self._heard = True
        if self._down_since is None and not self._suspect:  # usual, lock-free
            return
        with self._lock:
            since, self._down_since = self._down_since, None
            self._reason = ""
            self._suspect = False
        self._back.set()
        if since is not None:
            logger.warning(
                "Kafka answers again at BOOTSTRAP_SERVERS=%s, after %.0fs unreachable",
                self._servers,
                time.monotonic() - since,
            )

    def check(self) -> None:
        """While no broker answers (or one may not), ask the cluster once more,
        without waiting for the answer; `answered` is told when it comes."""
        if (self._down_since is None and not self._suspect) or self._probe is None:
            return
        with self._lock:
            if self._probing:
                return
            self._probing = True
        try:
            future = self._probe()
        except Exception:  # a client closing; the next check asks again
            self._probing = False
            logger.debug("Kafka probe failed to start", exc_info=True)
            return
        future.add_done_callback(self._probed)

    def _probed(self, future: "Future[Any]") -> None:
        self._probing = False
        if future.cancelled() or future.exception() is not None:
            self._unanswered()

    def wait_for_answer(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the outage to end; True if it did."""
        return self._back.wait(timeout)
