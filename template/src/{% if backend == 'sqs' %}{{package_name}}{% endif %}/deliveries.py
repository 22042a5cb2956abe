"""What one broker instance has received from a group's queue and not settled.

SQS knows a received message only by its receipt handle, which changes with
every delivery; Protean knows it by the identifier the adapter gave it at
publish. A `GroupState` maps the one to the other for messages in a handler's
hands (`handed`) and nacked ones waiting out their backoff (`nacked`, kept a
visibility timeout past it, without payloads), so an ack or nack finds the
latest delivery, and does so once.
"""

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .held import Copy


@dataclass
class Delivery:
    receipt: str
    attempts: int  # SQS's ApproximateReceiveCount of this delivery
    payload: dict[str, Any]  # for the dead-letter copy if it fails for good
    handed_at: float = field(default_factory=time.monotonic)
    # For a nacked delivery: when its backoff ends, and when it is forgotten.
    waits_until: float = 0.0
    forget_at: float = math.inf
    overdue: bool = False  # in a handler's hands past message_timeout, logged


@dataclass
class GroupState:
    """One (stream, group) queue as this instance uses it."""

    stream: str
    group: str
    url: str
    created_at: float = field(default_factory=time.time)
    consumers: set[str] = field(default_factory=set)
    handed: dict[str, Delivery] = field(default_factory=dict)
    nacked: dict[str, Delivery] = field(default_factory=dict)
    # What the stream held before its first group, while not yet copied here.
    copy: Copy | None = None
    copy_tried: float = 0.0
    read_at: float = field(default_factory=time.time)  # the last receive
    owned: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    # What the heartbeat is extending now: a nack waits for it to end, or the
    # extension could land after the nack's backoff and undo it.
    extending: set[str] = field(default_factory=set)
    extended: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.extended = threading.Condition(self.lock)

    def hand(self, identifier: str, delivery: Delivery, timeout: float) -> bool:
        """Record a delivery; False when the message is already in a
        handler's hands here for less than ``timeout`` seconds (a redelivery
        the heartbeat could not stop). One held longer is presumed lost."""
        with self.lock:
            earlier = self.handed.get(identifier)
            if earlier and time.monotonic() - earlier.handed_at < timeout:
                earlier.receipt = delivery.receipt
                return False
            self.nacked.pop(identifier, None)
            self.handed[identifier] = delivery
            return True

    def settle(self, identifier: str) -> Delivery | None:
        """Take the latest delivery of ``identifier`` out, for an ack."""
        with self.lock:
            return self.handed.pop(identifier, None) or self.nacked.pop(
                identifier, None
            )

    def take_handed(self, identifier: str, patience: float) -> Delivery | None:
        """Take a delivery out for a nack, once no extension of it is under
        way (waiting up to ``patience`` seconds)."""
        with self.extended:
            self.extended.wait_for(
                lambda: identifier not in self.extending, timeout=patience
            )
            return self.handed.pop(identifier, None)

    def take_all(self, patience: float) -> list[tuple[str, str]]:
        """Take every delivery in a handler's hands out, once no extension is
        under way (waiting up to ``patience`` seconds): (identifier, receipt)."""
        with self.extended:
            self.extended.wait_for(lambda: not self.extending, timeout=patience)
            held = self._in_hand(math.inf)
            self.handed.clear()
            return held

    def put_back(self, identifier: str, delivery: Delivery) -> None:
        with self.lock:
            self.handed[identifier] = delivery

    def park(
        self, identifier: str, delivery: Delivery, backoff: float, grace: float
    ) -> None:
        """Keep a nacked delivery's receipt, without its payload, for an ack
        that may still come: until ``grace`` seconds after its ``backoff``
        ends. By then any reader, this one or another, may have received it
        again, and the receipt is stale."""
        now = time.monotonic()
        with self.lock:
            self._forget(now)
            self.nacked[identifier] = Delivery(
                delivery.receipt,
                delivery.attempts,
                {},
                delivery.handed_at,
                waits_until=now + backoff,
                forget_at=now + backoff + grace,
            )

    def waiting(self) -> int:
        """Nacked deliveries this instance knows still wait out their backoff."""
        now = time.monotonic()
        with self.lock:
            self._forget(now)
            return sum(1 for d in self.nacked.values() if d.waits_until > now)

    def _forget(self, now: float) -> None:
        for identifier in [i for i, d in self.nacked.items() if d.forget_at <= now]:
            del self.nacked[identifier]

    def receipts_in_hand(self, within: float = math.inf) -> list[tuple[str, str]]:
        """Receipts of what handlers hold, handed out less than ``within`` ago."""
        with self.lock:
            return self._in_hand(within)

    def _in_hand(self, within: float) -> list[tuple[str, str]]:
        now = time.monotonic()
        return [
            (i, d.receipt) for i, d in self.handed.items() if now - d.handed_at < within
        ]

    def begin_extension(self, within: float) -> list[tuple[str, str]]:
        """`receipts_in_hand`, marked as being extended until `end_extension`:
        a nack of one of them meanwhile waits."""
        with self.lock:
            held = self._in_hand(within)
            self.extending = {i for i, _ in held}
            return held

    def end_extension(self, held: list[tuple[str, str]], failed: set[int]) -> list[str]:
        """Let waiting nacks go on; of the ``failed`` positions of ``held``,
        the identifiers still in a handler's hands with that receipt (the
        others were settled meanwhile, and their failure says nothing)."""
        with self.extended:
            self.extending = set()
            self.extended.notify_all()
            return [
                held[n][0]
                for n in sorted(failed)
                if (d := self.handed.get(held[n][0])) and d.receipt == held[n][1]
            ]

    def overdue(self, timeout: float) -> list[str]:
        """What handlers have held for ``timeout`` seconds or more, each
        reported once."""
        now = time.monotonic()
        with self.lock:
            late = [
                (i, d)
                for i, d in self.handed.items()
                if not d.overdue and now - d.handed_at >= timeout
            ]
            for _, delivery in late:
                delivery.overdue = True
        return [i for i, _ in late]
