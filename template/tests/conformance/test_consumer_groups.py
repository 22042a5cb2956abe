"""Consumer groups: each group sees every message, once."""

from __future__ import annotations

import pytest
from protean.port.broker import BaseBroker, BrokerCapabilities

from tests.conformance.reasons import (
    INLINE_SPLITS_GROUP_KEYS,
    REDIS_REDELIVERS_PENDING,
    REDIS_SPLITS_GROUP_KEYS,
)
from tests.conftest import ReadUntil

pytestmark = pytest.mark.requires(BrokerCapabilities.CONSUMER_GROUPS)


def test_every_group_receives_every_message(
    broker: BaseBroker, stream: str, group: str, read_until: ReadUntil
) -> None:
    published = {broker.publish(stream, {"n": n}) for n in range(3)}
    for each in (f"{group}-billing", f"{group}-shipping"):
        assert {identifier for identifier, _ in read_until(stream, each, 3)} == (
            published
        )


@REDIS_REDELIVERS_PENDING
def test_a_delivered_message_is_not_handed_out_again_in_its_group(
    broker: BaseBroker, stream: str, group: str, read_until: ReadUntil, quiet: float
) -> None:
    broker.publish(stream, {"n": 1})
    assert len(read_until(stream, group, 1)) == 1
    assert read_until(stream, group, 1, timeout=quiet) == []


def test_ensure_group_is_idempotent(
    broker: BaseBroker, stream: str, group: str, read_until: ReadUntil
) -> None:
    broker._ensure_group(group, stream)
    broker._ensure_group(group, stream)
    identifier = broker.publish(stream, {"n": 1})
    assert [i for i, _ in read_until(stream, group, 1)] == [identifier]


@INLINE_SPLITS_GROUP_KEYS
@REDIS_SPLITS_GROUP_KEYS
def test_a_group_ensured_before_it_reads_is_listed(
    broker: BaseBroker, stream: str, group: str
) -> None:
    """Protean's engine ensures a subscription's group at start-up; `protean
    subscriptions` must show it before the first message arrives."""
    broker._ensure_group(group, stream)
    assert group in broker.info()["consumer_groups"]


def test_a_group_that_caught_up_reads_what_is_published_next(
    broker: BaseBroker, stream: str, group: str, read_until: ReadUntil, quiet: float
) -> None:
    """An empty read at the end of the stream must not move the group past the
    next message (a cursor off by one loses it)."""
    broker.publish(stream, {"n": 1})
    [(first, _)] = read_until(stream, group, 1)
    broker.ack(stream, first, group)  # False, and not needed, without ACK_NACK
    assert read_until(stream, group, 1, timeout=quiet) == []
    assert broker.read(stream, group, 5) == []
    later = [broker.publish(stream, {"n": n}) for n in (2, 3)]
    assert [i for i, _ in read_until(stream, group, 2)] == later


def test_get_next_and_read_share_the_group_position(
    broker: BaseBroker, stream: str, group: str, read_until: ReadUntil
) -> None:
    published = [broker.publish(stream, {"n": n}) for n in range(2)]
    message = None
    for _ in range(200):  # the group's first read may come back empty
        message = broker.get_next(stream, group)
        if message:
            break
    assert message is not None
    rest = [i for i, _ in read_until(stream, group, 1)]
    assert {message[0], *rest} == set(published)
    assert message[0] not in rest
    if broker.has_capability(BrokerCapabilities.ACK_NACK):
        assert broker.ack(stream, message[0], group) is True
