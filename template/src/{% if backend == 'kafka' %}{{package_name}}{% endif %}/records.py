"""The shape of the Kafka records the adapter writes and reads.

A Protean message is a JSON object in the record value. The identifier travels
in a ``message-id`` header (and as the record key, so compacted dead-letter
topics can drop an entry by writing a tombstone under the same key). Kafka
offsets start again at zero when a topic is recreated; a random UUID does not,
so identifiers stay unique across streams, topic re-creation and data resets.
"""

import json
import uuid
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Message

HEADER_ID = "message-id"
# The stream, so a record in a hashed (long-name) topic still names its stream.
HEADER_STREAM = "protean-stream"
# Set on replayed dead letters: only this consumer group should process it.
HEADER_ONLY_GROUP = "protean-only-group"
# Dead-letter provenance, written by the adapter's own dead-lettering.
HEADER_ORIGINAL_ID = "protean-original-id"
HEADER_GROUP = "protean-group"
HEADER_ATTEMPTS = "protean-attempts"
HEADER_ERROR = "protean-error"
HEADER_FAILED_AT = "protean-failed-at"
# Set when a dead letter's value was too large to copy: where the original is.
HEADER_DROPPED = "protean-value-dropped"

Headers = list[tuple[str, str | bytes | None]]


# Names identifiers derived from Protean's own message ids (uuid5).
_PROTEAN_IDS = uuid.UUID("0f4c2b7e-8d1a-5c3e-9a6b-2e7d4f1c8a90")


def new_identifier() -> str:
    return str(uuid.uuid4())


def message_identifier(stream: str, message: dict[str, Any]) -> str:
    """The identifier of a message published to ``stream``.

    A Protean message carries its own id (``metadata.headers.id``): the
    identifier is derived from it and the stream, so a message published twice
    (an outbox that crashed before marking it sent) keeps its identifier, and a
    consumer skips a copy that arrives while the first is still open. Other
    payloads get a random one.
    """
    protean_id = _protean_headers(message).get("id")
    if isinstance(protean_id, str) and protean_id:
        return str(uuid.uuid5(_PROTEAN_IDS, f"{stream}\n{protean_id}"))
    return new_identifier()


def message_key(stream: str, message: dict[str, Any]) -> str:
    """The record key: what must stay in order lands on one partition.

    Protean names an event's aggregate instance stream in
    ``metadata.headers.stream``; keying by it keeps each aggregate's messages in
    order whatever ``TOPIC_PARTITIONS`` is. Without it, the stream itself.
    """
    aggregate_stream = _protean_headers(message).get("stream")
    if isinstance(aggregate_stream, str) and aggregate_stream:
        return aggregate_stream
    return stream


def _protean_headers(message: dict[str, Any]) -> dict[str, Any]:
    metadata = message.get("metadata")
    headers = metadata.get("headers") if isinstance(metadata, dict) else None
    return headers if isinstance(headers, dict) else {}


def encode_payload(message: dict[str, Any]) -> bytes:
    """Serialise a payload as standard JSON.

    Raises ``TypeError`` for values JSON cannot hold and ``ValueError`` for
    NaN and infinities, which other JSON readers refuse.
    """
    return json.dumps(
        message, ensure_ascii=False, separators=(",", ":"), allow_nan=False
    ).encode()


@dataclass(frozen=True)
class OutgoingRecord:
    """A record to produce; ``value`` None is a tombstone."""

    key: str
    value: bytes | None
    headers: Headers


def message_record(
    identifier: str,
    stream: str,
    value: bytes,
    only_group: str | None = None,
    key: str | None = None,
) -> OutgoingRecord:
    headers: Headers = [
        (HEADER_ID, identifier.encode()),
        (HEADER_STREAM, stream.encode()),
    ]
    if only_group is not None:
        headers.append((HEADER_ONLY_GROUP, only_group.encode()))
    return OutgoingRecord(identifier if key is None else key, value, headers)


@dataclass(frozen=True)
class IncomingRecord:
    """A fetched record, decoded as far as its bytes allow."""

    identifier: str
    value: bytes | None
    headers: dict[str, str]
    # The JSON object in the value, or None with ``problem`` saying why not.
    payload: dict[str, Any] | None
    problem: str
    # topic/partition/offset, for operators looking for the original.
    position: str = ""


def read_record(message: Message) -> IncomingRecord:
    """Decode a consumed message; never raises for bad bytes."""
    headers = {
        name: raw.decode("utf-8", "replace")
        for name, raw in _header_items(message)
        if isinstance(raw, bytes)
    }
    identifier = headers.get(HEADER_ID) or (
        # Written by another producer: topic, position and time make it unique.
        f"kafka:{message.topic()}:{message.partition()}:{message.offset()}"
        f":{message.timestamp()[1]}"
    )
    value = message.value()
    payload, problem = decode_payload(value)
    position = f"{message.topic()}/{message.partition()}/{message.offset()}"
    return IncomingRecord(identifier, value, headers, payload, problem, position)


def decode_payload(value: bytes | None) -> tuple[dict[str, Any] | None, str]:
    if value is None:
        return None, "tombstone"
    try:
        payload = json.loads(value)
    except ValueError as exc:  # not UTF-8, not JSON
        return None, f"value is not valid JSON: {exc}"
    except RecursionError:
        return None, "value is not valid JSON: nested too deeply"
    if not isinstance(payload, dict):
        return None, f"value is JSON {type(payload).__name__}, not an object"
    return payload, ""


def _header_items(message: Message) -> list[tuple[str, Any]]:
    headers = message.headers() or []
    return list(headers.items()) if isinstance(headers, dict) else list(headers)
