"""Copying what a stream's holding queue keeps into a group made later.

SQS cannot browse a queue: a copy receives the holding queue, and what one
receiver holds is out of every other's sight. So copies of one stream take
turns: a FIFO queue per stream keeps one token message, and a copier holds it
(received, hidden from the others) while it copies, renewing it between
batches; a copier that dies gives it up within `LEASE`. Under the token the
copy holds what it receives until its pass is over, so it meets each message
once, then gives everything back for the next group.
"""

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .queues import BATCH, Queues, attributes_to_resend

if TYPE_CHECKING:
    from types_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

logger = logging.getLogger(__name__)

# Seconds a copier's token stays hidden without renewal: how long a copier
# that died keeps the next one waiting.
LEASE = 30
# Seconds what a pass received stays hidden; a pass stops before that.
PASS_HIDE = 300
PASS_LONGEST = PASS_HIDE * 0.8
TOKEN_GROUP = "copy"
TOKEN_RETENTION = 14 * 24 * 3600  # SQS's longest; a lost token is sent again


@dataclass
class Copy:
    """One group's copy of its stream's holding queue, as far as it got in
    this process (a copy tried again skips what it sent)."""

    holding: str  # the holding queue's URL
    target: str  # the group queue's URL
    since: int = 0  # copies what was sent from then (ms since the epoch)
    sent: set[str] = field(default_factory=set)  # holding-queue message ids


class Token:
    """The turn to copy one stream's holding queue."""

    def __init__(self, queues: Queues, url: str) -> None:
        self.queues = queues
        self.url = url
        self.receipt: str | None = None

    def take(self, patience: float) -> bool:
        """Whether this process now holds the token, waiting at most
        ``patience`` seconds for it; sends one if the queue has none (made
        now, or its token expired): SQS drops a second one sent within five
        minutes with the same deduplication id."""
        deadline = time.monotonic() + patience
        # A look first: a queue made just now holds no token to wait for.
        wait = 0
        while True:
            [*got] = self.queues.client.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=1,
                WaitTimeSeconds=wait,
                VisibilityTimeout=LEASE,
            ).get("Messages", [])
            if got:
                self.receipt = got[0]["ReceiptHandle"]
                return True
            counts = self.queues.counts(self.url)
            if not counts["visible"] + counts["in_flight"] + counts["delayed"]:
                self.queues.client.send_message(
                    QueueUrl=self.url,
                    MessageBody="the turn to copy this stream's holding queue",
                    MessageGroupId=TOKEN_GROUP,
                    MessageDeduplicationId="token",
                )
                continue
            if time.monotonic() >= deadline:
                return False
            wait = 1 if time.monotonic() + 1 <= deadline else 0

    def renew(self) -> None:
        if self.receipt is not None:
            self.queues.change_visibility(self.url, [self.receipt], LEASE)

    def give_back(self) -> None:
        if self.receipt is not None:
            self.queues.change_visibility(self.url, [self.receipt], 0)
            self.receipt = None


def copy_pass(queues: Queues, copy: Copy, token: Token) -> bool:
    """Send what the holding queue keeps to the group's queue, skipping what
    this copy sent before; whether that was everything.

    It was if the pass ended at a receive that found nothing while nothing
    but its own receipts was out of sight (a copier that died holding some
    gives them back within `PASS_HIDE`: the copy is then tried again).
    """
    started = time.monotonic()
    holding: list[str] = []
    seen: set[str] = set()
    try:
        while time.monotonic() - started < PASS_LONGEST:
            received = queues.receive(copy.holding, BATCH, 1, PASS_HIDE)
            if not received:
                counts = queues.counts(copy.holding)
                return counts["in_flight"] <= len(holding)
            holding += [m["ReceiptHandle"] for m in received]
            fresh = [m for m in received if m["MessageId"] not in seen]
            seen.update(m["MessageId"] for m in fresh)
            entries: list[SendMessageBatchRequestEntryTypeDef] = [
                {
                    "Id": str(n),
                    "MessageBody": m["Body"],
                    "MessageAttributes": attributes_to_resend(m),
                }
                for n, m in enumerate(fresh)
                if m["MessageId"] not in copy.sent
                and int(m.get("Attributes", {}).get("SentTimestamp", 0)) >= copy.since
            ]
            if entries and queues.send(copy.target, entries):
                return False
            copy.sent.update(m["MessageId"] for m in fresh)
            token.renew()
        logger.warning(
            "SQS copy of %s into %s paused after %.0f s; it goes on at the "
            "group's next read",
            copy.holding,
            copy.target,
            PASS_LONGEST,
        )
        return False
    finally:
        if holding:
            queues.change_visibility(copy.holding, holding, 0)
