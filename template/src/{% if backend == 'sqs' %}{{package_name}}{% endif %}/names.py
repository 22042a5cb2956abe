"""Protean's stream and group names as SQS queue names, one-to-one.

SQS takes ``[A-Za-z0-9_-]``, at most 80 characters (75 before ``.fifo``);
Protean's names hold ``:``, ``::``, ``.`` and ``-``. Each name is escaped by a
prefix code (``_`` then two hex digits, or ``_u`` then six), so two names never
give one queue name and ``__`` never occurs inside an escaped name: it
separates the stream from the group. A queue name is ``QUEUE_PREFIX``, then
``-``, then the rest; the prefix has no ``-`` and the rest never has one, so
the first ``-`` ends the prefix: two applications of different prefixes never
share a queue, and listing by one's prefix never finds the other's queues.
A part too long for its room keeps its start and ends in ``_h`` and a hash of
the whole name (``h`` is not a hex digit, so a hashed part never equals an
escaped one). The original names are in each queue's tags, for people (the
adapter reads none back): as they are where AWS takes them as tag values, else
with `tag_value`'s escapes, and cut short with a hash past 256 characters.
"""

import hashlib
import re

MAX_QUEUE_NAME = 75  # 80 with ".fifo"
STREAM_ROOM = 36
_PLAIN = re.compile(r"[A-Za-z0-9]")
SEPARATOR = "-"  # ends the prefix; never in the rest of a queue name
DLQ_SUFFIX = ":dlq"

# The kind of queue, the first character after the prefix.
GROUP = "g"
HOLDING = "h"
DEAD_LETTERS = "d"
COPY_TOKEN = "t"

TAG_STREAM = "protean-stream"
TAG_GROUP = "protean-group"
TAG_KIND = "protean-kind"
# Whether a group queue has its copy of the holding queue: "pending" until
# a process copied it, then "done".
TAG_HELD_COPY = "protean-held-copy"
COPY_PENDING = "pending"
COPY_DONE = "done"
# What AWS takes in a tag value: at most 256 of these (ASCII kept: AWS's
# "letters" are Unicode ones, which not every SQS-compatible server takes).
TAG_ROOM = 256
_TAG_PLAIN = re.compile(r"[A-Za-z0-9 _.:/+@-]")


def _escaped(name: str) -> list[str]:
    """Each character of ``name`` in queue-name characters (a prefix code)."""
    out = []
    for char in name:
        if _PLAIN.fullmatch(char):
            out.append(char)
        elif ord(char) < 0x100:
            out.append(f"_{ord(char):02x}")
        else:
            out.append(f"_u{ord(char):06x}")
    return out


def bounded(name: str, room: int) -> str:
    """``name`` escaped, or, when that exceeds ``room``, the whole escapes
    that fit before ``_h`` and a hash of the name."""
    pieces = _escaped(name)
    if sum(map(len, pieces)) <= room:
        return "".join(pieces)
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    start = ""
    for piece in pieces:
        if len(start) + len(piece) > room - 18:
            break
        start += piece
    return f"{start}_h{digest}"


def tag_value(name: str) -> str:
    """``name`` as a tag value AWS takes: each character outside letters,
    digits, space and ``_ . : / + - @`` as ``=`` and its hex code (``=u`` and
    six digits beyond ``ff``); past 256 characters, the start and ``=h`` and a
    hash of the whole name."""
    pieces = []
    for char in name:
        if _TAG_PLAIN.fullmatch(char):
            pieces.append(char)
        elif ord(char) < 0x100:
            pieces.append(f"={ord(char):02x}")
        else:
            pieces.append(f"=u{ord(char):06x}")
    value = "".join(pieces)
    if len(value) <= TAG_ROOM:
        return value
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    return f"{value[: TAG_ROOM - 18]}=h{digest}"


_TAG_ESCAPE = re.compile(r"=u([0-9a-f]{6})|=([0-9a-f]{2})")


def name_from_tag(value: str) -> str:
    """The name `tag_value` made ``value`` of (one past 256 characters keeps
    its start and hash)."""
    return _TAG_ESCAPE.sub(lambda m: chr(int(m.group(1) or m.group(2), 16)), value)


def dlq_stream_of(stream: str) -> str:
    return stream if stream.endswith(DLQ_SUFFIX) else stream + DLQ_SUFFIX


class Names:
    """The queue names of one ``QUEUE_PREFIX``."""

    def __init__(self, prefix: str) -> None:
        stem = prefix.removesuffix(SEPARATOR)
        if not stem or SEPARATOR in stem:
            raise ValueError(f"a queue prefix has no {SEPARATOR!r} but at its end")
        self.prefix = stem + SEPARATOR
        """What every queue of this application, and no other's, starts with."""

    def _stream_part(self, kind: str, stream: str) -> str:
        return f"{self.prefix}{kind}{bounded(stream, STREAM_ROOM)}"

    def group_prefix(self, stream: str) -> str:
        """What every group queue of ``stream``, and no other queue, starts
        with: ``ListQueues`` by it finds the stream's groups."""
        return self._stream_part(GROUP, stream) + "__"

    def group_queue(self, stream: str, group: str) -> str:
        start = self.group_prefix(stream)
        return start + bounded(group, MAX_QUEUE_NAME - len(start))

    def holding_queue(self, stream: str) -> str:
        """Where a stream's messages wait while it has no group."""
        return self._stream_part(HOLDING, stream)

    def copy_token_queue(self, stream: str) -> str:
        """The FIFO queue whose one message is the turn to copy the stream's
        holding queue."""
        return self._stream_part(COPY_TOKEN, stream) + ".fifo"

    def dead_letter_queue(self, stream: str) -> str:
        """The one queue of ``{stream}:dlq`` (not fanned out)."""
        return self._stream_part(DEAD_LETTERS, dlq_stream_of(stream))
