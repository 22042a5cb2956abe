"""How a Protean message travels in an AMQP message, and back.

The body is the payload as standard JSON; the identifier is the AMQP
``message_id``; headers carry the stream and, on dead letters, where the
message failed. A Protean message's identifier is derived from its own id
(``metadata.headers.id``) and the stream, so a message the outbox publishes
twice keeps its identifier.
"""

import json
import uuid
from typing import Any

HEADER_STREAM = "protean-stream"
# Set on a copy for one group only (a replayed dead letter).
HEADER_ONLY_GROUP = "protean-only-group"
# Nacks a message had when the adapter put it back at the end of its queue, and
# when its retry is due: Unix time in whole milliseconds (AMQP clients send a
# float header as 32 bits, whose precision is minutes).
HEADER_ATTEMPTS = "protean-attempts"
HEADER_NOT_BEFORE = "protean-not-before"
# Dead-letter provenance, written by the adapter's own dead-lettering.
HEADER_ORIGINAL_ID = "protean-original-id"
HEADER_GROUP = "protean-group"
HEADER_ERROR = "protean-error"
HEADER_FAILED_AT = "protean-failed-at"

Outgoing = tuple[bytes, str, dict[str, Any]]
"""An AMQP message to send: body, message id, headers."""

_PROTEAN_IDS = uuid.UUID("5b1f7a0e-3c2d-5e8f-9a41-7d6c2b8e0f13")


def new_identifier() -> str:
    return str(uuid.uuid4())


def message_identifier(stream: str, message: dict[str, Any]) -> str:
    """A stable identifier for a Protean message, a random one otherwise."""
    metadata = message.get("metadata")
    headers = metadata.get("headers") if isinstance(metadata, dict) else None
    protean_id = headers.get("id") if isinstance(headers, dict) else None
    if isinstance(protean_id, str) and protean_id:
        return str(uuid.uuid5(_PROTEAN_IDS, f"{stream}\n{protean_id}"))
    return new_identifier()


def encode_payload(message: dict[str, Any]) -> bytes:
    """Standard JSON: ``ValueError`` for NaN and infinities, ``TypeError`` for
    values JSON cannot hold."""
    return json.dumps(message, allow_nan=False, separators=(",", ":")).encode()


def decode_payload(body: bytes) -> dict[str, Any] | None:
    """The JSON object in ``body``, or None for anything else."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return payload if isinstance(payload, dict) else None


def header_text(headers: dict[str, Any] | None, name: str) -> str | None:
    value = (headers or {}).get(name)
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return None if value is None else str(value)


def header_int(headers: dict[str, Any] | None, name: str) -> int:
    try:
        return int(header_text(headers, name) or 0)
    except ValueError:
        return 0
