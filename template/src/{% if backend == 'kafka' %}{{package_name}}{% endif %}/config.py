"""Settings read from a broker's ``conn_info`` (its ``[brokers.<name>]`` table).

Every value is validated here, once, so the rest of the adapter can trust it and
a mistake in ``domain.toml`` fails at start-up with the offending key named. The
retry keys, the timeouts and the rules for numbers, flags, client tables and
unknown keys come from `settings`, shared with every backend of this template.
"""

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from protean.exceptions import ConfigurationError

from .settings import ClientOption, ServerReader, ServerSettings

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

# Kafka's topic settings (its TopicConfig, as of 4.4) by the values they take:
# TOPIC_CONFIG is checked against them at start-up, not at the first publish.
_TOPIC_INTEGERS = frozenset(
    {
        "compression.gzip.level",
        "compression.lz4.level",
        "compression.zstd.level",
        "delete.retention.ms",
        "file.delete.delay.ms",
        "flush.messages",
        "flush.ms",
        "index.interval.bytes",
        "local.retention.bytes",
        "local.retention.ms",
        "max.compaction.lag.ms",
        "max.decompressed.message.bytes",
        "max.message.bytes",
        "message.timestamp.after.max.ms",
        "message.timestamp.before.max.ms",
        "min.compaction.lag.ms",
        "min.insync.replicas",
        "remote.copy.lag.bytes",
        "remote.copy.lag.ms",
        "retention.bytes",
        "retention.ms",
        "segment.bytes",
        "segment.index.bytes",
        "segment.jitter.ms",
        "segment.ms",
    }
)
_TOPIC_FLAGS = frozenset(
    {
        "errors.deadletterqueue.group.enable",
        "message.downconversion.enable",
        "preallocate",
        "remote.log.copy.disable",
        "remote.log.delete.on.disable",
        "remote.storage.enable",
        "unclean.leader.election.enable",
    }
)
_TOPIC_CHOICES = {
    "cleanup.policy": frozenset({"compact", "delete"}),
    "compression.type": frozenset(
        {"uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"}
    ),
    "message.timestamp.type": frozenset({"CreateTime", "LogAppendTime"}),
}
_TOPIC_TEXT = frozenset(
    {"leader.replication.throttled.replicas", "follower.replication.throttled.replicas"}
)
# librdkafka's aliases of the producer settings checked below.
_LINGER = ("linger.ms", "queue.buffering.max.ms")
_IN_FLIGHT = ("max.in.flight.requests.per.connection", "max.in.flight")
_RETRIES = ("retries", "message.send.max.retries")
# auto.offset.reset values that start a new group at the beginning.
_FROM_THE_START = ("earliest", "smallest", "beginning")
# librdkafka's max.poll.interval.ms unless CONSUMER_CONFIG or CLIENT_CONFIG sets it.
_MAX_POLL_INTERVAL_MS = 300_000

logger = logging.getLogger(__name__)

_HOST_PORT = re.compile(r"^\[?[A-Za-z0-9._:-]+\]?:[0-9]{1,5}$")
_TOPIC_CHARS = re.compile(r"^[A-Za-z0-9.-]*$")


@dataclass(frozen=True, kw_only=True)
class KafkaSettings(ServerSettings):
    """Validated adapter settings; durations are in seconds."""

    bootstrap_servers: str
    client_config: dict[str, ClientOption]
    producer_config: dict[str, ClientOption]
    consumer_config: dict[str, ClientOption]
    topic_prefix: str
    create_topics: bool
    topic_partitions: int
    topic_replication_factor: int
    topic_config: dict[str, str]
    commit_every: int
    commit_interval: float
    consumer_idle: float


def parse_settings(conn_info: Mapping[str, Any]) -> KafkaSettings:
    """Build `KafkaSettings` from ``conn_info``; raise ``ConfigurationError``."""
    reader = _Reader(conn_info)
    shared = reader.server_settings(
        publish_ms=30_000, operation_ms=15_000, read_ms=2_000
    )
    client_config = reader.client_table("CLIENT_CONFIG")
    producer_config = reader.client_table("PRODUCER_CONFIG")
    consumer_config = reader.client_table("CONSUMER_CONFIG")
    publish_timeout = shared.publish_timeout
    _check_guarantees(client_config, producer_config, consumer_config, publish_timeout)
    _check_with_librdkafka(
        client_config, producer_config, consumer_config, publish_timeout
    )
    settings = KafkaSettings(
        **vars(shared),
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
        topic_config=_topic_config(reader.string_table("TOPIC_CONFIG")),
        commit_every=reader.integer("COMMIT_EVERY", 100, minimum=1),
        commit_interval=reader.millis("COMMIT_INTERVAL_MS", 1_000, minimum=0),
        consumer_idle=reader.millis("CONSUMER_IDLE_MS", 240_000, minimum=1_000),
    )
    if settings.topic_replication_factor == 0:
        raise ConfigurationError(
            "TOPIC_REPLICATION_FACTOR must be -1 (cluster default) or at least 1"
        )
    _check_idle_before_max_poll(client_config, consumer_config, settings.consumer_idle)
    for key, why in RETIRED_KEYS.items():
        if reader.raw(key, None) is not None:
            logger.warning("%s no longer has an effect, remove it: %s", key, why)
    reader.refuse_unknown_keys()
    return settings


_SILENT = logging.getLogger(__name__ + ".check")
_SILENT.disabled = True  # librdkafka's warnings may quote values, secrets too


def _check_guarantees(
    client: dict[str, ClientOption],
    producer: dict[str, ClientOption],
    consumer: dict[str, ClientOption],
    publish_timeout: float,
) -> None:
    """Refuse settings that librdkafka would reject with the adapter's own
    (an idempotent producer, ``message.timeout.ms`` from PUBLISH_TIMEOUT_MS),
    or that would lose messages silently, naming the key to change."""
    for name in _LINGER:
        table, value = _setting(client, producer, "PRODUCER_CONFIG", name)
        if value is not None and value >= publish_timeout * 1000:
            raise ConfigurationError(
                f"PUBLISH_TIMEOUT_MS ({publish_timeout * 1000:g}) must be greater "
                f"than {table}.{name} ({value:g}): a record may wait that long "
                f"before it is even sent"
            )
    for name in _IN_FLIGHT:
        table, value = _setting(client, producer, "PRODUCER_CONFIG", name)
        if value is not None and value > 5:
            raise ConfigurationError(
                f"{table}.{name} must be at most 5: the adapter's idempotent "
                f"producer keeps order and writes once only up to 5"
            )
    for name in _RETRIES:
        table, value = _setting(client, producer, "PRODUCER_CONFIG", name)
        if value is not None and value < 1:
            raise ConfigurationError(
                f"{table}.{name} must be at least 1: the adapter's idempotent "
                f"producer retries within PUBLISH_TIMEOUT_MS instead"
            )
    table, reset = _raw_setting(
        client, consumer, "CONSUMER_CONFIG", "auto.offset.reset"
    )
    if reset is not None and str(reset) not in _FROM_THE_START:
        raise ConfigurationError(
            f"{table}.auto.offset.reset must be earliest, got {reset!r}: a new "
            f"group would miss every message published before its first read"
        )


def idle_check_interval(consumer_idle: float) -> float:
    """How often the idle watch looks, in seconds: a consumer leaves at most a
    quarter of ``CONSUMER_IDLE_MS`` (and 5 s) after the time is up."""
    return min(5.0, consumer_idle / 4)


def _check_idle_before_max_poll(
    client: dict[str, ClientOption],
    consumer: dict[str, ClientOption],
    consumer_idle: float,
) -> None:
    """Refuse a CONSUMER_IDLE_MS that lets librdkafka leave first: a client
    not polled for ``max.poll.interval.ms`` leaves its group on its own, and a
    let-go after that commits its handover for a member Kafka no longer knows."""
    name = "max.poll.interval.ms"
    table, value = _setting(client, consumer, "CONSUMER_CONFIG", name)
    limit = _MAX_POLL_INTERVAL_MS if value is None else value
    idle = round(consumer_idle * 1000)
    check = idle_check_interval(consumer_idle) * 1000
    if idle + check >= limit:
        where = f"librdkafka's {name}" if value is None else f"{table}.{name}"
        raise ConfigurationError(
            f"CONSUMER_IDLE_MS ({idle}) must stay below {where} ({limit:.0f}) by "
            f"more than its idle check's {check:g} ms: a consumer not read that "
            f"long is dropped from its group by librdkafka before it can hand "
            f"its partitions over; lower CONSUMER_IDLE_MS, or raise {name} in "
            f"CONSUMER_CONFIG"
        )


def _raw_setting(
    client: dict[str, ClientOption],
    own: dict[str, ClientOption],
    own_key: str,
    name: str,
) -> tuple[str, ClientOption | None]:
    """Where a client setting comes from (its own table wins) and its value."""
    if name in own:
        return own_key, own[name]
    return "CLIENT_CONFIG", client.get(name)


def _setting(
    client: dict[str, ClientOption],
    own: dict[str, ClientOption],
    own_key: str,
    name: str,
) -> tuple[str, float | None]:
    """A numeric client setting; one that is not a number is left to librdkafka."""
    table, value = _raw_setting(client, own, own_key, name)
    if value is None or isinstance(value, bool):
        return table, None
    try:
        return table, float(value)
    except ValueError:
        return table, None


def _topic_config(config: dict[str, str]) -> dict[str, str]:
    """Check TOPIC_CONFIG against Kafka's topic settings now, so a mistake
    fails at start-up rather than at the first topic the adapter creates."""
    for name, value in config.items():
        key = f"TOPIC_CONFIG.{name}"
        if name in _TOPIC_INTEGERS:
            try:
                int(value)
            except ValueError:
                raise ConfigurationError(
                    f"{key} must be a whole number, got {value!r}"
                ) from None
        elif name in _TOPIC_FLAGS:
            if value not in ("true", "false"):
                raise ConfigurationError(f"{key} must be true or false, got {value!r}")
        elif name in _TOPIC_CHOICES:
            choices = _TOPIC_CHOICES[name]
            given = (
                [v.strip() for v in value.split(",")]
                if name == "cleanup.policy"
                else [value]
            )
            if not all(v in choices for v in given):
                raise ConfigurationError(
                    f"{key} must be one of {', '.join(sorted(choices))}, got {value!r}"
                )
        elif name == "min.cleanable.dirty.ratio":
            try:
                ratio = float(value)
            except ValueError:
                ratio = -1.0
            if not 0.0 <= ratio <= 1.0:
                raise ConfigurationError(
                    f"{key} must be a number from 0 to 1, got {value!r}"
                )
        elif name not in _TOPIC_TEXT:
            raise ConfigurationError(f"{key} is not a Kafka topic setting")
    return config


def _check_with_librdkafka(
    client: dict[str, ClientOption],
    producer: dict[str, ClientOption],
    consumer: dict[str, ClientOption],
    publish_timeout: float,
) -> None:
    """Let librdkafka judge names and values now, not on first use, together
    with the settings the adapter adds (as `Publisher` and the consumers do).

    The throw-away clients have no bootstrap servers, so they never connect.
    """
    adapter_producer: dict[str, ClientOption] = {
        "enable.idempotence": True,
        "acks": "all",
        "message.timeout.ms": int(publish_timeout * 1000),
    }
    checks = (
        ("CLIENT_CONFIG", Producer, client),
        ("PRODUCER_CONFIG", Producer, {**client, **producer, **adapter_producer}),
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


def _bootstrap_servers(reader: ServerReader) -> str:
    """Accept ``"h1:9092,h2:9092"`` or a list of ``host:port`` strings."""
    value = reader.required("BOOTSTRAP_SERVERS", "localhost:9092")
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


class _Reader(ServerReader):
    """The shared reader, plus the shapes only Kafka settings take."""

    adapter = "Kafka"

    def topic_prefix(self, key: str) -> str:
        value = self.raw(key, "")
        if not isinstance(value, str) or not _TOPIC_CHARS.match(value):
            raise ConfigurationError(
                f"{key} may only contain letters, digits, '.' and '-', got {value!r}"
            )
        if len(value) > 40:
            raise ConfigurationError(f"{key} must be at most 40 characters")
        return value

    def client_table(self, key: str) -> dict[str, ClientOption]:
        return self.options(key, "settings", RESERVED_CLIENT_KEYS)

    def string_table(self, key: str) -> dict[str, str]:
        table = self.table(key, "settings")
        for name, value in table.items():
            if not isinstance(value, ClientOption):
                raise ConfigurationError(
                    f"{key}.{name} must be a string or number, "
                    f"got {type(value).__name__}"
                )
        return {
            name: str(value).lower() if isinstance(value, bool) else str(value)
            for name, value in table.items()
        }
