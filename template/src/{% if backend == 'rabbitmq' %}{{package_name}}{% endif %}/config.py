"""Settings read from a broker's ``conn_info`` (its ``[brokers.<name>]`` table).

Every value is validated here, once, so the rest of the adapter can trust it and
a mistake in ``domain.toml`` fails at start-up with the offending key named. The
retry keys, the timeouts and the rules for numbers, flags, client tables and
unknown keys come from `settings`, shared with every backend of this template.
"""

import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from protean.exceptions import ConfigurationError

from .settings import ClientOption, ServerReader, ServerSettings

QUEUE_TYPES = ("quorum", "classic")

# Queue arguments the adapter sets itself: its delivery counting, dead-lettering
# and ordering depend on them.
RESERVED_QUEUE_ARGUMENTS = frozenset(
    {
        "x-queue-type",
        "x-delivery-limit",
        "x-dead-letter-exchange",
        "x-dead-letter-routing-key",
        "x-dead-letter-strategy",
        "x-single-active-consumer",
    }
)

# Arguments whose value RabbitMQ takes only as a whole number: a string such as
# "1000" is accepted at declaration on some versions and ignored or refused on
# others, so it is refused here.
WHOLE_NUMBER_QUEUE_ARGUMENTS = frozenset(
    {
        "x-max-length",
        "x-max-length-bytes",
        "x-message-ttl",
        "x-expires",
        "x-max-priority",
        "x-quorum-initial-group-size",
    }
)

# A length limit's overflow behaviour. `reject-publish`, the adapter's default,
# refuses a publish to a full queue (publish raises), so no confirmed message
# is ever dropped; `drop-head` drops the oldest, confirmed ones included.
OVERFLOWS = ("reject-publish", "drop-head", "reject-publish-dlx")
LENGTH_LIMITS = ("x-max-length", "x-max-length-bytes")

_PREFIX = re.compile(r"[A-Za-z0-9_.:-]{0,40}")

# Longest a delivery stays unacked in the adapter's hands: well under RabbitMQ's
# default consumer_timeout of 30 minutes.
HOLD_LIMIT = 15 * 60.0

# RabbitMQ's largest message (128 MiB; 4.0 and later default to 16 MiB).
LARGEST_MESSAGE = 128 * 1024 * 1024


@dataclass(frozen=True)
class Address:
    """Where and as whom to connect, parsed from ``URI``; never logged whole."""

    uri: str
    scheme: str
    host: str
    port: int
    user: str
    vhost: str

    @property
    def safe(self) -> str:
        """The address without the password, for logs and reports."""
        return f"{self.scheme}://{self.user}@{self.host}:{self.port}/{self.vhost}"


@dataclass(frozen=True, kw_only=True)
class RabbitMQSettings(ServerSettings):
    """Validated adapter settings; durations are in seconds."""

    addresses: tuple[Address, ...]
    tls_ca_file: str
    tls_cert_file: str
    tls_key_file: str
    tls_verify: bool
    heartbeat: int
    prefetch: int
    queue_type: str
    single_active_consumer: bool
    name_prefix: str
    queue_arguments: dict[str, ClientOption]
    unclaimed_retention: float
    max_message_bytes: int
    consumer_idle: float

    @property
    def safe_uri(self) -> str:
        """Every address without its password, for reports."""
        return ", ".join(address.safe for address in self.addresses)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context for ``amqps://``, None for plain ``amqp://``."""
        if self.addresses[0].scheme != "amqps":
            return None
        context = ssl.create_default_context(cafile=self.tls_ca_file or None)
        if self.tls_cert_file:
            context.load_cert_chain(self.tls_cert_file, self.tls_key_file or None)
        if not self.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def parse_settings(conn_info: Mapping[str, Any]) -> RabbitMQSettings:
    """Build `RabbitMQSettings` from ``conn_info``; raise ``ConfigurationError``."""
    reader = _Reader(conn_info)
    shared = reader.server_settings(
        publish_ms=10_000, operation_ms=10_000, read_ms=1_000
    )
    addresses = _addresses(reader)
    settings = RabbitMQSettings(
        **vars(shared),
        addresses=addresses,
        tls_ca_file=reader.file("TLS_CA_FILE"),
        tls_cert_file=reader.file("TLS_CERT_FILE"),
        tls_key_file=reader.file("TLS_KEY_FILE"),
        tls_verify=reader.boolean("TLS_VERIFY", True),
        heartbeat=reader.integer("HEARTBEAT_SECONDS", 30, minimum=1, maximum=600),
        prefetch=reader.integer("PREFETCH", 100, minimum=1, maximum=65_535),
        queue_type=reader.choice("QUEUE_TYPE", "quorum", QUEUE_TYPES),
        single_active_consumer=reader.boolean("SINGLE_ACTIVE_CONSUMER", True),
        name_prefix=reader.name_prefix("NAME_PREFIX"),
        queue_arguments=reader.queue_arguments("QUEUE_ARGUMENTS"),
        unclaimed_retention=reader.millis("UNCLAIMED_RETENTION_MS", 86_400_000),
        max_message_bytes=reader.integer(
            "MAX_MESSAGE_BYTES", 16 * 1024 * 1024, minimum=1, maximum=LARGEST_MESSAGE
        ),
        consumer_idle=reader.millis("CONSUMER_IDLE_MS", 300_000, minimum=1_000),
    )
    tls_keys = [
        key
        for key, value in (
            ("TLS_CA_FILE", settings.tls_ca_file),
            ("TLS_CERT_FILE", settings.tls_cert_file),
            ("TLS_KEY_FILE", settings.tls_key_file),
            ("TLS_VERIFY", not settings.tls_verify),
        )
        if value
    ]
    if tls_keys and addresses[0].scheme != "amqps":
        raise ConfigurationError(
            f"{tls_keys[0]} needs a TLS connection: use an amqps:// URI"
        )
    if settings.message_timeout >= HOLD_LIMIT:
        raise ConfigurationError(
            f"message_timeout must be below {HOLD_LIMIT:.0f} seconds, got "
            f"{settings.message_timeout:g}: a delivery is given back to RabbitMQ "
            "before its consumer_timeout, so a handler must settle it sooner"
        )
    _check_overflow(settings)
    if settings.tls_key_file and not settings.tls_cert_file:
        raise ConfigurationError("TLS_KEY_FILE needs TLS_CERT_FILE (the certificate)")
    reader.refuse_unknown_keys()
    return settings


def _check_overflow(settings: RabbitMQSettings) -> None:
    """What quorum queues refuse, refused here with the key that asks for it."""
    overflow = settings.queue_arguments.get("x-overflow")
    if overflow is None or settings.queue_type != "quorum":
        return
    if overflow == "reject-publish-dlx":
        raise ConfigurationError(
            "QUEUE_ARGUMENTS.x-overflow = 'reject-publish-dlx' needs "
            'QUEUE_TYPE = "classic": quorum queues do not support it'
        )
    if overflow == "drop-head" and settings.enable_dlq:
        raise ConfigurationError(
            "QUEUE_ARGUMENTS.x-overflow = 'drop-head' cannot be used with "
            "enable_dlq on quorum queues: their at-least-once dead-lettering "
            "needs 'reject-publish' (drop the key, or set enable_dlq = false)"
        )


def _addresses(reader: ServerReader) -> tuple[Address, ...]:
    """``URI``: one node's address, or a list of a cluster's nodes' addresses,
    tried in turn when the one in use stops answering."""
    value = reader.required("URI", "amqp://guest:guest@localhost:5672/%2F")
    if isinstance(value, str):
        return (_address("URI", value),)
    if not isinstance(value, list):
        raise ConfigurationError(
            "URI must be a string, or a list of strings (one per cluster node), "
            f"got {type(value).__name__}"
        )
    if not value:
        raise ConfigurationError("URI is an empty list: give at least one address")
    addresses = tuple(_address(f"URI[{n}]", item) for n, item in enumerate(value))
    if len({address.scheme for address in addresses}) > 1:
        raise ConfigurationError(
            "URI mixes amqp:// and amqps:// addresses: the TLS_* keys apply to "
            "every node, so use one scheme for all"
        )
    return addresses


def _address(key: str, value: Any) -> Address:
    if not isinstance(value, str):
        raise ConfigurationError(f"{key} must be a string, got {type(value).__name__}")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(f"{key} is not a valid address: {exc}") from None
    if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
        raise ConfigurationError(
            f"{key} must be amqp://user:password@host:port/vhost (or amqps://), "
            f"got a {parts.scheme or 'schemeless'} address"
        )
    if parts.query or parts.fragment:
        raise ConfigurationError(
            f"{key} takes no query parameters: heartbeats, TLS and timeouts have "
            "keys of their own (HEARTBEAT_SECONDS, TLS_*, *_TIMEOUT_MS)"
        )
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    return Address(
        uri=value,
        scheme=parts.scheme,
        host=parts.hostname,
        port=port or (5671 if parts.scheme == "amqps" else 5672),
        user=unquote(parts.username or "guest"),
        vhost=vhost,
    )


class _Reader(ServerReader):
    """The shared reader, plus the shapes only RabbitMQ settings take."""

    adapter = "RabbitMQ"

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.raw(key, default)
        if value not in choices:
            raise ConfigurationError(
                f"{key} must be one of {', '.join(choices)}, got {value!r}"
            )
        return str(value)

    def file(self, key: str) -> str:
        value = self.raw(key, "")
        if not isinstance(value, str):
            raise ConfigurationError(f"{key} must be a file path, got {value!r}")
        if value and not Path(value).is_file():
            raise ConfigurationError(f"{key}: no such file {value!r}")
        return value

    def name_prefix(self, key: str) -> str:
        value = self.raw(key, "")
        if not isinstance(value, str) or not _PREFIX.fullmatch(value):
            raise ConfigurationError(
                f"{key} may only contain letters, digits and '-_.:', "
                f"at most 40 characters, got {value!r}"
            )
        if value.startswith("amq."):
            raise ConfigurationError(f"{key} may not start with 'amq.' (reserved)")
        return value

    def queue_arguments(self, key: str) -> dict[str, ClientOption]:
        table = self.options(key, "queue arguments", RESERVED_QUEUE_ARGUMENTS)
        for name, value in table.items():
            if not name.startswith("x-"):
                raise ConfigurationError(
                    f"{key}.{name} is not a queue argument (they start with 'x-')"
                )
            if name in WHOLE_NUMBER_QUEUE_ARGUMENTS and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                raise ConfigurationError(
                    f"{key}.{name} must be a whole number of at least 0, got {value!r}"
                )
            if name == "x-overflow" and value not in OVERFLOWS:
                raise ConfigurationError(
                    f"{key}.x-overflow must be one of {', '.join(OVERFLOWS)}, "
                    f"got {value!r}"
                )
        return table
