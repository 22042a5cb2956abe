"""Capabilities the broker does not declare: their members answer "nothing".

Protean's wrappers never call a member of an undeclared capability, but its
base class requires them all; an older release, a tool or a subclass that
calls one must learn that nothing was done, never a false success.
"""

from __future__ import annotations

import pytest
from protean.port.broker import BaseBroker, BrokerCapabilities


def lacking(broker: BaseBroker, capability: BrokerCapabilities) -> None:
    if broker.has_capability(capability):
        pytest.skip(f"the broker declares {capability.name}")


def test_without_ack_nack_no_message_is_acked_or_nacked(
    broker: BaseBroker, stream: str, group: str
) -> None:
    lacking(broker, BrokerCapabilities.ACK_NACK)
    identifier = broker.publish(stream, {"n": 1})
    assert identifier
    assert broker._ack(stream, identifier, group) is False
    assert broker._nack(stream, identifier, group) is False


def test_without_a_dead_letter_queue_nothing_is_replayed_or_purged(
    broker: BaseBroker, stream: str
) -> None:
    lacking(broker, BrokerCapabilities.DEAD_LETTER_QUEUE)
    # A message of the stream itself: one published to ``{stream}:dlq`` is a
    # dead letter the transport keeps whatever the broker declares.
    broker.publish(stream, {"n": 1})
    assert broker._dlq_list([f"{stream}:dlq"], 10) == []
    assert broker._dlq_inspect(f"{stream}:dlq", "any") is None
    assert broker._dlq_replay(f"{stream}:dlq", "any", stream) is False
    assert broker._dlq_replay_all(f"{stream}:dlq", stream) == 0
    assert broker._dlq_purge(f"{stream}:dlq") == 0
