"""Exchange and queue names for streams and consumer groups.

Per stream, a durable fanout exchange; per (stream, group), a queue bound to
it; per stream, a holding queue that keeps what is published while no group is
bound (the exchange's alternate exchange routes there). Dead letters of a stream
``s`` are the holding queue of the stream ``s:dlq``, which Protean's engine
publishes its own dead letters to, so every kind is listed in one place.

Names are ``prefix + kind + "/" + parts`` joined by ``/``. Letters, digits and
``-_.:`` are kept (Protean's ``::`` stays readable); any other character, ``/``
and ``+`` included, becomes ``+`` and its UTF-8 bytes in hex, so names are
injective and within what AMQP clients accept. A name past the 127 characters
clients allow ends in a hash.
"""

import hashlib
import re

MAX_NAME_LENGTH = 127
# An AMQP routing key is a short string.
MAX_ROUTING_KEY_BYTES = 255
DLQ_SUFFIX = ":dlq"

_KEPT = re.compile(r"[A-Za-z0-9_.:-]")
_ESCAPED = re.compile(r"\+([0-9A-F]{2})")


def _part(text: str) -> str:
    return "".join(
        char if _KEPT.fullmatch(char) else "".join(f"+{b:02X}" for b in char.encode())
        for char in text
    )


def _unpart(text: str) -> str:
    raw = bytearray()
    position = 0
    for match in _ESCAPED.finditer(text):
        raw += text[position : match.start()].encode()
        raw.append(int(match.group(1), 16))
        position = match.end()
    raw += text[position:].encode()
    return raw.decode(errors="replace")


class Names:
    """The naming scheme, under ``NAME_PREFIX``."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def _name(self, kind: str, *parts: str) -> str:
        name = f"{self.prefix}{kind}/" + "/".join(_part(p) for p in parts)
        if len(name) <= MAX_NAME_LENGTH:
            return name
        digest = hashlib.sha256(name.encode()).hexdigest()[:32]
        return f"{name[: MAX_NAME_LENGTH - 33]}#{digest}"

    def exchange(self, stream: str) -> str:
        return self._name("stream", stream)

    def alternate_exchange(self, stream: str) -> str:
        return self._name("unrouted", stream)

    def holding_queue(self, stream: str) -> str:
        return self._name("held", stream)

    def group_queue(self, stream: str, group: str) -> str:
        return self._name("group", stream, group)

    def copy_log(self, stream: str, group: str) -> str:
        """Exists while a new group's copy of what its stream held is not
        finished, and lists what is copied (see `held`)."""
        return self._name("copying", stream, group)

    def copy_lock(self, stream: str) -> str:
        """Held, as an exclusive queue, by the process copying for ``stream``."""
        return self._name("copy-lock", stream)

    def group_of_queue(self, name: str) -> tuple[str, str] | None:
        """(stream, group) of a group queue's name; None for other names and
        hashed ones."""
        head = f"{self.prefix}group/"
        parts = name.removeprefix(head).split("/")
        if not name.startswith(head) or len(parts) != 2:
            return None
        stream, group = (_unpart(part) for part in parts)
        return (stream, group) if self.group_queue(stream, group) == name else None

    def dead_letter_queue(self, dlq_stream: str) -> str:
        """Where dead letters listed under ``dlq_stream`` (``s:dlq``) live."""
        return self.holding_queue(dlq_stream)

    def dead_letter_route(self, stream: str, group: str) -> tuple[str, str]:
        """The exchange and routing key a group's queue dead-letters to.

        RabbitMQ's dead letter names the queue it left, and a hashed queue
        name does not give the group back: such a queue dead-letters through
        the exchange that feeds the dead-letter queue (fanout) with the group
        as routing key, which the dead letter keeps. The others go straight
        to the queue, as queues made by earlier releases do: a new route would
        be an argument those queues cannot change. So does a group whose name
        is longer than a routing key can be: its dead letters have no group.
        """
        dlq_stream = dlq_stream_of(stream)
        if (
            self.group_of_queue(self.group_queue(stream, group)) is None
            and len(group.encode()) <= MAX_ROUTING_KEY_BYTES
        ):
            return self.alternate_exchange(dlq_stream), group
        return "", self.dead_letter_queue(dlq_stream)

    def group_of_dead_letter(
        self, dlq_stream: str, exchange: str, routing_key: str
    ) -> str | None:
        """The group a dead letter routed by `dead_letter_route` left."""
        if routing_key and exchange == self.alternate_exchange(dlq_stream):
            return routing_key
        return None


def dlq_stream_of(stream: str) -> str:
    return f"{stream}{DLQ_SUFFIX}"
