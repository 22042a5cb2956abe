"""Which offset of a partition is safe to commit.

Kafka commits a single offset per partition: "everything before this is done".
Protean acks messages one by one and out of order, and a partition's offsets
can have gaps (compaction, transaction markers), so the safe offset is the
lowest fetched offset that is not finished yet, or the offset after the last
fetched one when all are finished. Committing anything further would lose the
unfinished messages if this consumer crashed.

A commit also carries metadata saying how the partition was left. An owner
that closes or hands the partition over writes `CLEAN_HANDOVER`; anything else
means the previous owner may have died on a record, perhaps the record at the
committed offset. The next owner then commits at every finish for a while and
records, in each commit, how often the record at the commit point has been
handed out without being finished. A record that kills every consumer it
reaches is noticed that way across restarts, and can be dead-lettered.
"""

from collections import deque

CLEAN_HANDOVER = "protean:closed"
_HANDOUTS = "protean:handouts"


def handouts_metadata(offset: int, handouts: int) -> str:
    """Commit metadata: the record at ``offset`` was handed out ``handouts``
    times, none of them finished."""
    return f"{_HANDOUTS} {offset} {handouts}"


def recorded_handouts(metadata: str | None) -> tuple[int, int] | None:
    """The ``(offset, handouts)`` a commit's metadata records, if any."""
    parts = (metadata or "").split()
    if len(parts) == 3 and parts[0] == _HANDOUTS:
        try:
            return int(parts[1]), int(parts[2])
        except ValueError:
            return None
    return None


class PartitionOffsets:
    """Fetched offsets of one partition and the contiguous finished prefix."""

    def __init__(self) -> None:
        # Fetched offsets in ascending order whose prefix is not yet committable.
        self._open: deque[int] = deque()
        # Finished offsets still waiting behind an unfinished one.
        self._finished: set[int] = set()
        # The offset after the last fetched one: where fetching continues.
        self.next_offset: int | None = None
        # The partition's end as last seen while fetching.
        self.end = 0
        # Last offset handed to a commit, to skip commits that change nothing.
        self.committed: int | None = None
        self.committed_metadata = ""
        # After an unclean handover: finishes left that commit at once.
        self.careful = 0
        # Unfinished handouts per offset, by earlier owners and this one.
        self._handouts: dict[int, int] = {}
        # Finishes since this partition's last commit, and when that was (the
        # owner's clock): each partition keeps its own coalescing window.
        self.uncommitted = 0
        self.last_commit = 0.0

    def taken_over(self, metadata: str | None, careful: int) -> None:
        """Start owning the partition, given its last commit's metadata.

        Unless the last owner left cleanly, the next ``careful`` finishes are
        committed at once, each with the handouts of the record it points at.
        """
        if metadata == CLEAN_HANDOVER:
            return
        self.careful = careful
        recorded = recorded_handouts(metadata)
        if recorded is not None:
            offset, handouts = recorded
            self._handouts[offset] = handouts

    def handouts(self, offset: int) -> int:
        """Earlier unfinished handouts of the record at ``offset``."""
        return self._handouts.get(offset, 0)

    def handed_out(self, offset: int) -> None:
        """Count a first handout, in this ownership, of the record at ``offset``."""
        if self.careful:
            self._handouts[offset] = self._handouts.get(offset, 0) + 1

    def commit_metadata(self) -> str:
        """What a commit of `commit_point` records while the owner is careful."""
        point = self.commit_point()
        if not self.careful or point is None:
            return ""
        return handouts_metadata(point, self._handouts.get(point, 0))

    def fetched(self, offset: int) -> None:
        """Record an offset the consumer just received (offsets only increase)."""
        self._open.append(offset)
        self.next_offset = offset + 1
        self.end = max(self.end, offset + 1)

    def reached_end(self, offset: int) -> None:
        """Record that fetching reached the partition's end at ``offset``."""
        self.next_offset = offset
        self.end = max(self.end, offset)

    def finish(self, offset: int) -> None:
        """Mark a fetched offset as done (acked, dead-lettered or skipped)."""
        self._handouts.pop(offset, None)
        if self.careful:
            self.careful -= 1
        self._finished.add(offset)
        while self._open and self._open[0] in self._finished:
            self._finished.discard(self._open.popleft())

    def finished_uncommitted(self, committed: int) -> int:
        """Finished offsets at or after ``committed`` (the group's committed
        offset): records Kafka's lag still counts that need no more work."""
        point = self.commit_point()
        prefix = max(0, point - committed) if point is not None else 0
        return prefix + sum(1 for offset in self._finished if offset >= committed)

    def commit_point(self) -> int | None:
        """The offset to commit: everything before it is finished."""
        return self._open[0] if self._open else self.next_offset
