"""Settings read from a broker's ``conn_info`` (its ``[brokers.<name>]`` table).

Every value is validated here, once, so the rest of the adapter can trust it and
a mistake in ``domain.toml`` fails at start-up with the offending key named. The
retry keys and the rules for numbers, flags and unknown keys come from
`settings`, shared with every backend of this template.
"""

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from protean.exceptions import ConfigurationError

from .settings import Reader, RetrySettings

# librdkafka settings the adapter owns: overriding them would void its delivery
# guarantees (auto-commit, offset store, idempotence, acks, the commit and error
# callbacks), its naming (group id), how reads learn a partition is drained
# (partition EOF), where librdkafka's log goes (the Python logger), or a setting
# with its own key (BOOTSTRAP_SERVERS, PUBLISH_TIMEOUT_MS).
RESERVED_CLIENT_KEYS = frozenset(
    {
        "bootstrap.servers",
        "group.id",
        "enable.auto.commit",
        "enable.auto.offset.store",
        "enable.idempotence",
        "acks",
        "request.required.acks",
        "message.timeout.ms",
        "delivery.timeout.ms",
        "enable.partition.eof",
        "on_commit",
        "error_cb",
        "logger",
    }
)

# Keys earlier releases read, and why they no longer do anything.
RETIRED_KEYS = {
    "JOIN_TIMEOUT_MS": (
        "a read waits for its group's join within its own timeout "
        "(READ_TIMEOUT_MS, or the timeout_ms given to read_blocking)"
    ),
}

logger = logging.getLogger(__name__)

_HOST_PORT = re.compile(r"^\[?[A-Za-z0-9._:-]+\]?:[0-9]{1,5}$")
_TOPIC_CHARS = re.compile(r"^[A-Za-z0-9.-]*$")

ClientValue = str | int | float | bool


@dataclass(frozen=True)
class KafkaSettings:
    """Validated adapter settings; durations are in seconds."""

    bootstrap_servers: str
    client_config: dict[str, ClientValue]
    producer_config: dict[str, ClientValue]
    consumer_config: dict[str, ClientValue]
    topic_prefix: str
    create_topics: bool
    topic_partitions: int
    topic_replication_factor: int
    topic_config: dict[str, str]
    max_retries: int
    retry_delay: float
    backoff_multiplier: float
    message_timeout: float
    enable_dlq: bool
    ping_timeout: float
    publish_timeout: float
    operation_timeout: float
    read_timeout: float
    commit_every: int
    commit_interval: float


def parse_settings(conn_info: Mapping[str, Any]) -> KafkaSettings:
    """Build `KafkaSettings` from ``conn_info``; raise ``ConfigurationError``."""
    reader = _Reader(conn_info)
    retry = RetrySettings.read(reader)
    client_config = reader.client_table("CLIENT_CONFIG")
    producer_config = reader.client_table("PRODUCER_CONFIG")
    consumer_config = reader.client_table("CONSUMER_CONFIG")
    _check_with_librdkafka(client_config, producer_config, consumer_config)
    settings = KafkaSettings(
        bootstrap_servers=_bootstrap_servers(reader),
        client_config=client_config,
        producer_config=producer_config,
        consumer_config=consumer_config,
        topic_prefix=reader.topic_prefix("TOPIC_PREFIX"),
        create_topics=reader.boolean("CREATE_TOPICS", True),
        topic_partitions=reader.integer("TOPIC_PARTITIONS", 1, minimum=1),
        # -1 lets the cluster choose (its default.replication.factor).
        topic_replication_factor=reader.integer(
            "TOPIC_REPLICATION_FACTOR", -1, minimum=-1
        ),
        topic_config=reader.string_table("TOPIC_CONFIG"),
        max_retries=retry.max_retries,
        retry_delay=retry.retry_delay,
        backoff_multiplier=retry.backoff_multiplier,
        message_timeout=retry.message_timeout,
        enable_dlq=retry.enable_dlq,
        ping_timeout=reader.millis("PING_TIMEOUT_MS", 2_000),
        publish_timeout=reader.millis("PUBLISH_TIMEOUT_MS", 30_000),
        operation_timeout=reader.millis("OPERATION_TIMEOUT_MS", 15_000),
        read_timeout=reader.millis("READ_TIMEOUT_MS", 2_000),
        commit_every=reader.integer("COMMIT_EVERY", 100, minimum=1),
        commit_interval=reader.millis("COMMIT_INTERVAL_MS", 1_000, minimum=0),
    )
    if settings.topic_replication_factor == 0:
        raise ConfigurationError(
            "TOPIC_REPLICATION_FACTOR must be -1 (cluster default) or at least 1"
        )
    for key, why in RETIRED_KEYS.items():
        if reader.raw(key, None) is not None:
            logger.warning("%s no longer has an effect, remove it: %s", key, why)
    reader.refuse_unknown_keys()
    return settings


_SILENT = logging.getLogger(__name__ + ".check")
_SILENT.disabled = True  # librdkafka's warnings may quote values, secrets too


def _check_with_librdkafka(
    client: dict[str, ClientValue],
    producer: dict[str, ClientValue],
    consumer: dict[str, ClientValue],
) -> None:
    """Let librdkafka judge names and values now, not on first use.

    The throw-away clients have no bootstrap servers, so they never connect.
    """
    checks = (
        ("CLIENT_CONFIG", Producer, client),
        ("PRODUCER_CONFIG", Producer, {**client, **producer}),
        ("CONSUMER_CONFIG", Consumer, {**client, **consumer, "group.id": "check"}),
    )
    for key, client_class, config in checks:
        try:
            client_class({**config, "logger": _SILENT})
        except (KafkaException, TypeError, ValueError) as exc:
            error = exc.args[0] if exc.args else exc
            reason = error.str() if isinstance(error, KafkaError) else str(error)
            for value in config.values():  # a refused value may be a secret
                if isinstance(value, str) and value:
                    reason = reason.replace(value, "***")
            message = f"{key}: librdkafka refuses it: {reason}"
            raise ConfigurationError(message) from None


def _bootstrap_servers(reader: Reader) -> str:
    """Accept ``"h1:9092,h2:9092"`` or a list of ``host:port`` strings."""
    value = reader.raw("BOOTSTRAP_SERVERS", None)
    if value is None:
        raise ConfigurationError(
            "BOOTSTRAP_SERVERS is required for the Kafka broker "
            '(e.g. BOOTSTRAP_SERVERS = "localhost:9092")'
        )
    if isinstance(value, str):
        servers = [part.strip() for part in value.split(",")]
    elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        servers = [part.strip() for part in value]
    else:
        raise ConfigurationError(
            f"BOOTSTRAP_SERVERS must be a string or a list of strings, "
            f"got {type(value).__name__}"
        )
    bad = [s for s in servers if not _HOST_PORT.match(s) or not _port_ok(s)]
    if not servers or bad:
        raise ConfigurationError(
            f"BOOTSTRAP_SERVERS must be host:port[,host:port...], got {value!r}"
        )
    return ",".join(servers)


def _port_ok(server: str) -> bool:
    return 0 < int(server.rsplit(":", 1)[1]) < 65536


class _Reader(Reader):
    """The shared reader, plus the shapes only Kafka settings take."""

    def topic_prefix(self, key: str) -> str:
        value = self.raw(key, "")
        if not isinstance(value, str) or not _TOPIC_CHARS.match(value):
            raise ConfigurationError(
                f"{key} may only contain letters, digits, '.' and '-', got {value!r}"
            )
        if len(value) > 40:
            raise ConfigurationError(f"{key} must be at most 40 characters")
        return value

    def client_table(self, key: str) -> dict[str, ClientValue]:
        table = self._table(key)
        for name, value in table.items():
            if name in RESERVED_CLIENT_KEYS:
                raise ConfigurationError(
                    f"{key}.{name} is set by the Kafka broker adapter and "
                    f"cannot be overridden"
                )
            if not isinstance(value, str | int | float | bool):
                raise ConfigurationError(
                    f"{key}.{name} must be a string, number or boolean, "
                    f"got {type(value).__name__}"
                )
        return dict(table)

    def string_table(self, key: str) -> dict[str, str]:
        table = self._table(key)
        for name, value in table.items():
            if not isinstance(value, str | int | float | bool):
                raise ConfigurationError(
                    f"{key}.{name} must be a string or number, "
                    f"got {type(value).__name__}"
                )
        return {
            name: str(value).lower() if isinstance(value, bool) else str(value)
            for name, value in table.items()
        }

    def _table(self, key: str) -> Mapping[str, Any]:
        value = self.raw(key, {})
        if not isinstance(value, Mapping) or not all(
            isinstance(name, str) for name in value
        ):
            raise ConfigurationError(
                f"{key} must be a table of settings, got {type(value).__name__}"
            )
        return value
