"""Naming: Protean streams and consumer groups onto Kafka topics and group ids.

Protean streams contain ``:`` and ``::`` (``shop::order``, ``shop::order:dlq``) and
any other character; Kafka topics allow ``[A-Za-z0-9._-]`` and 249 characters.
The encoding is injective and reversible:

* letters and digits are kept, ``:`` becomes ``.`` and ``-`` becomes ``--``;
* every other character becomes ``-`` and two lowercase hex digits per UTF-8 byte.

So ``shop::order-7`` is the topic ``shop..order--7``. A ``-`` is therefore always
followed by ``-`` or a hex pair, which leaves ``-`` plus any other letter free as
a structural marker that no encoded stream contains:

* ``-z`` + 32 hex digits ends the name of a stream whose encoding is too long:
  the encoded prefix (cut at a character boundary) and a SHA-256 prefix of the
  full name. Each message also carries its stream in a header, so these names
  are reversible through their records.
* ``-q`` separates a stream's dead-letter name from the consumer group in the
  per-group dead-letter topics the adapter writes.

The encoding never emits ``_``: Kafka refuses two topics that differ only by ``.``
versus ``_``, and a name without ``_`` cannot collide that way with another one.
"""

import hashlib

KAFKA_TOPIC_MAX = 249
# Stream topics stay below Kafka's limit so a dead-letter suffix always fits.
STREAM_TOPIC_MAX = 200
_HASHED_HEAD_MAX = 160
_HASH_HEX = 32
_KEEP = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_HEX = frozenset("0123456789abcdef")
_HASH_MARK = "-z"
_GROUP_MARK = "-q"
# Kafka reads a topic named "." or ".." as a path.
_RESERVED_NAMES = frozenset({"", ".", ".."})


def _encode_char(char: str) -> str:
    if char in _KEEP:
        return char
    if char == ":":
        return "."
    if char == "-":
        return "--"
    return "".join(f"-{byte:02x}" for byte in char.encode("utf-8", "surrogatepass"))


def _encode(text: str, limit: int | None = None) -> str:
    """Encode ``text``; with ``limit``, stop at the last whole character that fits."""
    parts: list[str] = []
    size = 0
    for char in text:
        encoded = _encode_char(char)
        if limit is not None and size + len(encoded) > limit:
            break
        parts.append(encoded)
        size += len(encoded)
    return "".join(parts)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_HEX]


def _decode(body: str) -> str | None:
    """Invert `_encode`; None if ``body`` holds a marker or is not an encoding."""
    data = bytearray()
    i = 0
    while i < len(body):
        char = body[i]
        if char in _KEEP:
            data += char.encode("ascii")
            i += 1
        elif char == ".":
            data += b":"
            i += 1
        elif char == "-" and body[i + 1 : i + 2] == "-":
            data += b"-"
            i += 2
        elif char == "-" and len(body) >= i + 3 and set(body[i + 1 : i + 3]) <= _HEX:
            data.append(int(body[i + 1 : i + 3], 16))
            i += 3
        else:
            return None
    try:
        text = data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return None
    # Only the canonical spelling counts: "-41" is not another name for "A".
    return text if _encode(text) == body else None


class TopicNames:
    """Topic and group names for one adapter configuration (its topic prefix)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        # Every publish and read names its topic; a service uses few streams.
        self._topics: dict[str, str] = {}

    def stream_topic(self, stream: str) -> str:
        """The topic that holds ``stream``."""
        topic = self._topics.get(stream)
        if topic is None:
            topic = self._topics[stream] = self._stream_topic(stream)
        return topic

    def _stream_topic(self, stream: str) -> str:
        name = self.prefix + _encode(stream)
        if len(name) <= STREAM_TOPIC_MAX and name not in _RESERVED_NAMES:
            return name
        head = _encode(stream, _HASHED_HEAD_MAX - len(self.prefix))
        return f"{self.prefix}{head}{_HASH_MARK}{_digest(stream)}"

    def stream_of(self, topic: str) -> str | None:
        """The stream a topic holds, if its name is a plain (not hashed) encoding."""
        if not topic.startswith(self.prefix):
            return None
        return _decode(topic[len(self.prefix) :])

    def dlq_topic_prefix(self, dlq_stream: str) -> str:
        """Common start of every per-group dead-letter topic of ``dlq_stream``."""
        return self.stream_topic(dlq_stream) + _GROUP_MARK

    def dlq_topic(self, dlq_stream: str, group: str) -> str:
        """The topic where the adapter dead-letters ``group``'s failures."""
        head = self.dlq_topic_prefix(dlq_stream)
        encoded = _encode(group)
        if len(head) + len(encoded) <= KAFKA_TOPIC_MAX:
            return head + encoded
        return f"{head}{_HASH_MARK}{_digest(group)}"


def kafka_group_id(group: str, topic: str) -> str:
    """Kafka consumer group of one Protean group on one topic.

    A Kafka group per (group, topic) keeps the topics of one Protean group from
    rebalancing each other. ``@`` never occurs in a topic, so the last ``@``
    splits the id back into its parts.
    """
    return f"{group}@{topic}"
