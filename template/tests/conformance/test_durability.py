"""Durability: what one instance of the broker does, another one sees.

Each test builds a second instance from the same settings, as another process
of the application would. A transport that keeps state in the instance (writes
never committed, a cursor or a delivery held in memory) passes every test that
talks to one instance, and fails these. DELIVERY_GUARANTEES promises it.
"""

from __future__ import annotations

import pytest
from protean.port.broker import BaseBroker, BrokerCapabilities

from tests.conftest import BrokerFactory, ReadUntil, close_broker

pytestmark = pytest.mark.requires(BrokerCapabilities.DELIVERY_GUARANTEES)
INLINE_KEEPS_MESSAGES_PER_INSTANCE = pytest.mark.beyond_protean(
    "inline",
    reason="InlineBroker keeps its messages in each instance's memory: a "
    "second instance built from the same settings shares none of them",
)
REDIS_KEEPS_PENDING_TO_ITS_CONSUMER = pytest.mark.beyond_protean(
    "redis",
    reason="RedisBroker reads as a consumer of its own instance and never claims "
    "another consumer's pending messages, so an instance that takes over the "
    "group does not get what the stopped one had read",
)


@INLINE_KEEPS_MESSAGES_PER_INSTANCE
def test_another_instance_reads_what_one_published(
    broker: BaseBroker,
    another_broker: BrokerFactory,
    stream: str,
    group: str,
    read_until: ReadUntil,
) -> None:
    identifier = broker.publish(stream, {"n": 1})
    other = another_broker()
    assert read_until(stream, group, 1, via=other) == [(identifier, {"n": 1})]


@INLINE_KEEPS_MESSAGES_PER_INSTANCE
@REDIS_KEEPS_PENDING_TO_ITS_CONSUMER
def test_an_ack_holds_for_the_instance_that_takes_over(
    broker: BaseBroker,
    another_broker: BrokerFactory,
    stream: str,
    group: str,
    read_until: ReadUntil,
    quiet: float,
) -> None:
    published = {broker.publish(stream, {"n": n}) for n in range(2)}
    [(acked, _)] = read_until(stream, group, 1)
    assert broker.ack(stream, acked, group) is True
    close_broker(broker)  # the process stops; another one carries on
    other = another_broker()
    assert [i for i, _ in read_until(stream, group, 1, via=other)] == list(
        published - {acked}
    )
    assert read_until(stream, group, 1, timeout=quiet, via=other) == []


def test_two_instances_reading_one_group_never_hold_the_same_message(
    broker: BaseBroker,
    another_broker: BrokerFactory,
    stream: str,
    group: str,
    read_until: ReadUntil,
    quiet: float,
) -> None:
    published = {broker.publish(stream, {"n": n}) for n in range(4)}
    mine = {i for i, _ in read_until(stream, group, 2)}
    other = another_broker()
    theirs = {i for i, _ in read_until(stream, group, 4, timeout=quiet, via=other)}
    assert len(mine) == 2
    assert not mine & theirs
    assert theirs <= published - mine


@INLINE_KEEPS_MESSAGES_PER_INSTANCE
@REDIS_KEEPS_PENDING_TO_ITS_CONSUMER
def test_a_delivery_never_settled_comes_back_to_another_instance(
    broker: BaseBroker,
    another_broker: BrokerFactory,
    stream: str,
    group: str,
    read_until: ReadUntil,
) -> None:
    """Its consumer died: after `message_timeout` (or once a transport knows
    the consumer is gone) the message is handed out again."""
    broker.publish(stream, {"n": 1})
    [(identifier, _)] = read_until(stream, group, 1)
    close_broker(broker)
    other = another_broker(message_timeout=0.5)
    assert [i for i, _ in read_until(stream, group, 1, via=other)] == [identifier]
    assert other.ack(stream, identifier, group) is True


@INLINE_KEEPS_MESSAGES_PER_INSTANCE
@REDIS_KEEPS_PENDING_TO_ITS_CONSUMER
def test_a_nack_holds_for_the_instance_that_takes_over(
    broker: BaseBroker,
    another_broker: BrokerFactory,
    stream: str,
    group: str,
    read_until: ReadUntil,
) -> None:
    broker.publish(stream, {"n": 1})
    [(identifier, _)] = read_until(stream, group, 1)
    assert broker.nack(stream, identifier, group) is True
    close_broker(broker)
    other = another_broker()
    assert read_until(stream, group, 1, via=other) == [(identifier, {"n": 1})]
    assert other.ack(stream, identifier, group) is True


@pytest.mark.beyond_protean(
    "redis",
    reason="RedisBroker's nack answers True again for a message it already "
    "released, which would count a second failed attempt",
)
def test_a_nack_counts_once_whichever_instance_repeats_it(
    broker: BaseBroker,
    another_broker: BrokerFactory,
    stream: str,
    group: str,
    read_until: ReadUntil,
    quiet: float,
) -> None:
    """A delivery ends at its first nack, for every instance: a second one
    from another process would count a second failed attempt."""
    broker.publish(stream, {"n": 1})
    [(identifier, _)] = read_until(stream, group, 1)
    other = another_broker()
    assert broker.nack(stream, identifier, group) is True
    assert other.nack(stream, identifier, group) is False
    # It comes back once, after the backoff (whole seconds on some servers).
    assert [i for i, _ in read_until(stream, group, 1)] == [identifier]
    assert read_until(stream, group, 1, timeout=quiet) == []
    assert broker.ack(stream, identifier, group) is True
    assert other.ack(stream, identifier, group) is False


@INLINE_KEEPS_MESSAGES_PER_INSTANCE
def test_a_reset_on_one_instance_empties_the_others(
    broker: BaseBroker,
    another_broker: BrokerFactory,
    stream: str,
    group: str,
    read_until: ReadUntil,
    quiet: float,
) -> None:
    broker.publish(stream, {"n": 1})
    another_broker()._data_reset()
    assert read_until(stream, group, 1, timeout=quiet) == []
