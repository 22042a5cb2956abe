"""Settings read from a broker's ``conn_info`` (its ``[brokers.<name>]`` table).

Every value is validated here, once, so a mistake in ``domain.toml`` fails at
start-up with the key named. Credentials are never settings: boto3 finds them
itself (environment, profile, container or instance role), so they stay out of
``domain.toml``, reports and logs.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from protean.exceptions import ConfigurationError

from .settings import Reader, RetrySettings

# Since August 2025 SQS takes messages of up to 1 MiB (body and attributes).
LARGEST_MESSAGE = 1024 * 1024
_PREFIX = re.compile(r"[A-Za-z0-9_]{1,16}-?")
_REGION = re.compile(r"[a-z0-9-]{2,32}")
LONGEST_VISIBILITY = 12 * 60 * 60  # SQS: 12 hours
LONGEST_RETENTION = 14 * 24 * 60 * 60  # SQS: 14 days


@dataclass(frozen=True)
class SqsSettings(RetrySettings):
    """Every key of the table, validated; see the README for each."""

    region: str | None = None
    endpoint_url: str | None = None
    queue_prefix: str = "protean-"
    visibility_timeout: int = 30
    group_discovery: float = 1.0
    connect_timeout: float = 5.0
    max_message_bytes: int = LARGEST_MESSAGE
    hold_max_messages: int = 10_000
    hold_retention: int = 4 * 24 * 60 * 60

    # Seconds a receive waits for SQS's answer: above its longest poll (20 s),
    # or a long poll would be cut off and strand what it received.
    poll_read_timeout: float = 30.0
    # Seconds any other call waits for an answer: an endpoint that takes the
    # connection and never answers fails a call of three attempts in 30 s.
    call_read_timeout: float = 10.0


def _endpoint(reader: Reader) -> str | None:
    """The endpoint, checked for a user, password or query before anything
    else, so no error quotes a URL that carries a credential."""
    value = reader.raw("ENDPOINT_URL", None)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigurationError(
            f"ENDPOINT_URL must be a string, got a {type(value).__name__}"
        )
    parts = urlsplit(value)
    if "@" in value or parts.query or parts.fragment:
        raise ConfigurationError(
            "ENDPOINT_URL takes no user, password, query or fragment (boto3 finds "
            "credentials in the environment, a profile or a role); its value is "
            "not shown here, as it may hold a secret"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"ENDPOINT_URL must be http(s)://host[:port], got {value!r}"
        )
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ConfigurationError(f"ENDPOINT_URL has a bad port: {value!r}") from None
    return value.rstrip("/")


def _region(reader: Reader) -> str | None:
    value = reader.raw("REGION", None)
    if value is None or value == "":
        return None  # boto3's chain: AWS_REGION, AWS_DEFAULT_REGION, the profile
    if not isinstance(value, str) or not _REGION.fullmatch(value):
        raise ConfigurationError(
            f"REGION must be an AWS region name such as eu-west-1, got {value!r}"
        )
    return value


def parse_settings(conn_info: Mapping[str, Any]) -> SqsSettings:
    """Validate ``conn_info``; raise ConfigurationError naming the key."""
    reader = Reader(conn_info)
    for secret in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        if secret in conn_info:
            raise ConfigurationError(
                f"{secret} does not belong in domain.toml: boto3 reads credentials "
                "from the environment, ~/.aws, or the container or instance role"
            )
    prefix = reader.text("QUEUE_PREFIX", SqsSettings.queue_prefix)
    if not _PREFIX.fullmatch(prefix):
        raise ConfigurationError(
            "QUEUE_PREFIX must be 1-16 of A-Z a-z 0-9 _, optionally ending in -, "
            f"got {prefix!r} (queue names are at most 80 characters, and a - "
            "ends the prefix, so no application's names start with another's)"
        )
    prefix = prefix.removesuffix("-") + "-"
    retry = RetrySettings.read(reader)
    if retry.message_timeout > LONGEST_VISIBILITY:
        raise ConfigurationError(
            f"message_timeout must be at most {LONGEST_VISIBILITY}, got "
            f"{retry.message_timeout:g} (SQS keeps a received message hidden "
            "at most 12 hours from its receive, however often it is extended)"
        )
    settings = SqsSettings(
        **vars(retry),
        region=_region(reader),
        endpoint_url=_endpoint(reader),
        queue_prefix=prefix,
        visibility_timeout=reader.integer(
            "VISIBILITY_TIMEOUT_S", 30, minimum=2, maximum=LONGEST_VISIBILITY
        ),
        group_discovery=reader.integer(
            "GROUP_DISCOVERY_MS", 1000, minimum=0, maximum=60_000
        )
        / 1000,
        connect_timeout=reader.millis("CONNECT_TIMEOUT_MS", 5000, minimum=100),
        max_message_bytes=reader.integer(
            "MAX_MESSAGE_BYTES", LARGEST_MESSAGE, minimum=8192, maximum=LARGEST_MESSAGE
        ),
        hold_max_messages=reader.integer(
            "HOLD_MAX_MESSAGES", 10_000, minimum=0, maximum=100_000
        ),
        hold_retention=reader.integer(
            "HOLD_RETENTION_S", 4 * 24 * 3600, minimum=60, maximum=LONGEST_RETENTION
        ),
    )
    reader.refuse_unknown_keys()
    return settings
