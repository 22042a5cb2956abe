"""When a failed message is handed out again: backoff and the due schedule.

Pure and Kafka-free, with the clock passed in, so the schedule is tested on a
fake clock.
"""

import heapq
import itertools
import math
from collections.abc import Callable

# A retry delay never grows past an hour, whatever the multiplier and count.
MAX_BACKOFF = 3600.0

Clock = Callable[[], float]


def backoff(retries: int, delay: float, multiplier: float) -> float:
    """``delay * multiplier**retries`` seconds, capped at `MAX_BACKOFF`."""
    if delay <= 0:
        return 0.0
    try:
        return min(delay * multiplier**retries, MAX_BACKOFF)
    except OverflowError:
        return MAX_BACKOFF


class RetrySchedule:
    """Identifiers held back until their backoff has passed, soonest first."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._due: list[tuple[float, int, str]] = []
        # Ties keep their order of holding.
        self._sequence = itertools.count()

    def hold(self, identifier: str, delay: float) -> None:
        heapq.heappush(
            self._due, (self._clock() + delay, next(self._sequence), identifier)
        )

    def due(self) -> list[str]:
        """Identifiers whose time has come, in the order they became due.

        An identifier settled meanwhile (acked, its partition revoked) is still
        listed: the caller skips what it no longer holds.
        """
        now = self._clock()
        released: list[str] = []
        while self._due and self._due[0][0] <= now:
            released.append(heapq.heappop(self._due)[2])
        return released

    def until_next(self) -> float:
        """Seconds until the next identifier is due (inf: none held).

        Never negative: librdkafka reads a negative poll timeout as "forever".
        """
        if not self._due:
            return math.inf
        return max(0.0, self._due[0][0] - self._clock())
