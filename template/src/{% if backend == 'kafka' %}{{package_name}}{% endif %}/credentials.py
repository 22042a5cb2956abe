"""Noticing that Kafka refuses the adapter's credentials, and saying so once.

librdkafka treats a refused sign-in as passing trouble: it reports
``_AUTHENTICATION`` to the client's error callback, logs it, and signs in again
about twice a second, forever. Left alone, a publish would wait out its whole
timeout and fail with "timed out", and the log would fill with the same line.

So every client reports its errors to a `Credentials` watch, shared by all the
clients of a broker that sign in the same way. Once a client was refused and
then found no broker it can use (librdkafka's "all brokers down"), operations
that ask the watch while they wait fail at once with `CredentialsRefused`,
which names the settings to check. One broker refusing while others let the
client in (a broker restarting with its SCRAM users not loaded yet) does not
fail anything. The watch logs the refusal once, and again only after Kafka
accepted those credentials in between. Nothing here raises inside a librdkafka
callback: callbacks only record what they saw.
"""

import logging
import math
import threading
import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import KafkaError

from .errors import CredentialsRefused
from .reachability import CONNECTION_FACILITY, Reachability

logger = logging.getLogger(__name__)

# A refusal counts for this long after it was reported, unless Kafka accepted
# the credentials since. While it refuses, librdkafka reports a refusal every
# second or so; after the cluster starts accepting them (a password fixed on
# the cluster's side), operations recover at the latest this much later.
RECENT = 10.0

_USER_AND_PASSWORD = "sasl.username and sasl.password"
_SETTINGS_TO_CHECK = {
    "PLAIN": _USER_AND_PASSWORD,
    "SCRAM-SHA-256": _USER_AND_PASSWORD,
    "SCRAM-SHA-512": _USER_AND_PASSWORD,
    "OAUTHBEARER": "the sasl.oauthbearer.* settings",
    "GSSAPI": "the sasl.kerberos.* settings",
}
# librdkafka's default mechanism when security.protocol is SASL_*.
_DEFAULT_MECHANISM = "GSSAPI"
# Parts of setting names whose values must never be quoted.
_SECRET_PARTS = ("password", "secret", "token", "key")
# What librdkafka logs at each refused sign-in; its error callback reports the
# same, so the watch's one line replaces these.
_REFUSAL_LOG_MARKS = ("SASL authentication error", "Authentication failed")


def identity(config: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """What decides how a client signs in: its security and SASL settings."""
    return tuple(
        sorted(
            (name, str(value))
            for name, value in config.items()
            if name == "security.protocol" or name.startswith("sasl.")
        )
    )


class Credentials:
    """How the clients sharing one set of credentials fare signing in.

    ``table`` is the ``conn_info`` key those credentials come from
    (``CLIENT_CONFIG``, or ``PRODUCER_CONFIG``/``CONSUMER_CONFIG`` where those
    set their own), named in the message.
    """

    def __init__(self, config: Mapping[str, Any], table: str) -> None:
        protocol = str(config.get("security.protocol", "plaintext")).upper()
        mechanism = str(config.get("sasl.mechanism", _DEFAULT_MECHANISM)).upper()
        if protocol.startswith("SASL"):
            user = config.get("sasl.username")
            self._what = f"the SASL {mechanism} credentials" + (
                f" of user {user!r}" if user else ""
            )
            self._check = _SETTINGS_TO_CHECK.get(mechanism, "the sasl.* settings")
        else:
            self._what = "the credentials"
            self._check = "security.protocol and the ssl.* settings"
        self._table = table
        self._secrets = [
            str(value)
            for name, value in config.items()
            if any(part in name.lower() for part in _SECRET_PARTS) and str(value)
        ]
        self._lock = threading.Lock()
        # Monotonic time of the last refusal not followed by an acceptance.
        self._refused_at: float | None = None
        # A client found every broker down since the last acceptance.
        self._all_down = False
        self._reason = ""
        self._announced = False

    def report(self, error: KafkaError) -> bool:
        """A client's error callback: True if ``error`` is a refused sign-in,
        or the "all brokers down" that follows one, which it then handles (the
        caller should not log it)."""
        code = error.code()
        if code == KafkaError._ALL_BROKERS_DOWN:
            with self._lock:
                self._all_down = True
                return self._refused_at is not None
        if code != KafkaError._AUTHENTICATION:
            return False
        with self._lock:
            self._refused_at = time.monotonic()
            self._reason = self._scrub(error.str())
            announce = not self._announced
            self._announced = True
        if announce:
            logger.error("%s", self._message())
        return True

    def accepted(self) -> None:
        """Kafka answered a client using these credentials: they work."""
        if self._refused_at is None and not self._all_down:  # usual, lock-free
            return
        with self._lock:
            self._refused_at = None
            self._all_down = False
            announced, self._announced = self._announced, False
        if announced:
            logger.info("Kafka accepts %s again", self._what)

    def refusal(self, recent: float = RECENT) -> CredentialsRefused | None:
        """The error to raise if Kafka refused these credentials within the
        last ``recent`` seconds, no broker was left to try, and Kafka has not
        accepted them since."""
        with self._lock:
            refused_at = self._refused_at if self._all_down else None
        if refused_at is None or time.monotonic() - refused_at > recent:
            return None
        return CredentialsRefused(self._message())

    def last_refusal(self) -> CredentialsRefused | None:
        """Like `refusal`, however long ago: to explain a timeout."""
        return self.refusal(math.inf)

    def _message(self) -> str:
        with self._lock:
            reason = self._reason
        return (
            f"Kafka refused {self._what}: check {self._check} in {self._table} "
            f"(librdkafka: {reason})"
        )

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


class CredentialsByIdentity:
    """One `Credentials` watch per way of signing in, for one broker."""

    def __init__(self) -> None:
        self._watches: dict[tuple[tuple[str, str], ...], Credentials] = {}
        self._lock = threading.Lock()

    def watch(self, config: Mapping[str, Any], table: str) -> Credentials:
        key = identity(config)
        with self._lock:
            found = self._watches.get(key)
            if found is None:
                found = self._watches[key] = Credentials(config, table)
            return found


def is_refusal_log(args: tuple[object, ...]) -> bool:
    """Whether a librdkafka log line (its format arguments) reports a refused
    sign-in."""
    return any(
        isinstance(arg, str) and any(mark in arg for mark in _REFUSAL_LOG_MARKS)
        for arg in args
    )


class LibrdkafkaLog:
    """Where clients send librdkafka's log: ``target``, except that what the
    clients' watches report once goes there at DEBUG rather than as a line per
    attempt: refused sign-ins (`Credentials`), failed or lost connections, and
    while no broker answers (``reachability``), everything about the outage.
    confluent-kafka calls only ``log(level, format, *args)``, with the
    facility first among the arguments."""

    def __init__(
        self, target: logging.Logger, reachability: Reachability | None = None
    ) -> None:
        self.target = target
        self._reachability = reachability

    def log(self, level: int, msg: str, *args: object) -> None:
        if level > logging.DEBUG and (
            is_refusal_log(args)
            or (args and args[0] == CONNECTION_FACILITY)
            or (self._reachability is not None and self._reachability.down)
        ):
            level = logging.DEBUG
        self.target.log(level, msg, *args)
