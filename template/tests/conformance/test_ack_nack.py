"""Acknowledgement: the return values Protean's engine relies on."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from protean.port.broker import BaseBroker, BrokerCapabilities

from tests.conformance.reasons import REDIS_REDELIVERS_PENDING
from tests.conftest import BrokerFactory, ReadUntil

pytestmark = pytest.mark.requires(BrokerCapabilities.ACK_NACK)


@pytest.fixture
def delivered(
    broker: BaseBroker, stream: str, group: str, read_until: ReadUntil
) -> str:
    """The identifier of one message delivered to `group` and not yet settled."""
    broker.publish(stream, {"n": 1})
    [(identifier, _)] = read_until(stream, group, 1)
    return identifier


def test_ack_of_a_delivered_message_is_true_once(
    broker: BaseBroker, stream: str, group: str, delivered: str
) -> None:
    assert broker.ack(stream, delivered, group) is True
    assert broker.ack(stream, delivered, group) is False


def test_ack_of_an_unknown_identifier_or_foreign_group_is_false(
    broker: BaseBroker, stream: str, group: str, delivered: str
) -> None:
    assert broker.ack(stream, "no-such-message", group) is False
    assert broker.ack(stream, delivered, f"{group}-other") is False
    assert broker.nack(stream, delivered, f"{group}-other") is False
    assert broker.ack(stream, delivered, group) is True


def test_an_ack_settles_the_message_in_its_own_group_only(
    broker: BaseBroker, stream: str, group: str, read_until: ReadUntil
) -> None:
    """Each group holds its own delivery of a message: settling it in one
    group, once, must leave the other group's delivery to that group."""
    broker.publish(stream, {"n": 1})
    first, second = group, group.upper()
    [(identifier, _)] = read_until(stream, first, 1)
    assert broker.ack(stream, identifier, first) is True
    assert [i for i, _ in read_until(stream, second, 1)] == [identifier]
    assert broker.ack(stream, identifier, first) is False
    assert broker.nack(stream, identifier, first) is False
    assert broker.ack(stream, identifier, second) is True
    assert broker.ack(stream, identifier, second) is False


def test_a_nacked_message_comes_back_with_the_same_identifier(
    broker: BaseBroker, stream: str, group: str, delivered: str, read_until: ReadUntil
) -> None:
    assert broker.nack(stream, delivered, group) is True
    assert read_until(stream, group, 1) == [(delivered, {"n": 1})]
    assert broker.ack(stream, delivered, group) is True


def test_nack_after_ack_is_false(
    broker: BaseBroker, stream: str, group: str, delivered: str
) -> None:
    assert broker.ack(stream, delivered, group) is True
    assert broker.nack(stream, delivered, group) is False


def test_ack_after_nack_settles_the_message(
    broker: BaseBroker,
    stream: str,
    group: str,
    delivered: str,
    read_until: ReadUntil,
    quiet: float,
) -> None:
    assert broker.nack(stream, delivered, group) is True
    assert broker.ack(stream, delivered, group) is True
    assert read_until(stream, group, 1, timeout=quiet) == []


def test_acks_in_any_order_settle_each_message_once(
    broker: BaseBroker, stream: str, group: str, read_until: ReadUntil, quiet: float
) -> None:
    for n in range(5):
        broker.publish(stream, {"n": n})
    identifiers = [identifier for identifier, _ in read_until(stream, group, 5)]
    for identifier in reversed(identifiers):
        assert broker.ack(stream, identifier, group) is True
    assert read_until(stream, group, 1, timeout=quiet) == []


@pytest.mark.beyond_protean(
    "redis",
    reason="RedisBroker's nack answers True again for a message it already "
    "released, which would count a second failed attempt",
)
def test_a_second_nack_of_one_delivery_is_false(
    broker: BaseBroker, stream: str, group: str, delivered: str
) -> None:
    """Once nacked the delivery is released: a second nack must not count a
    second failed attempt (and dead-letter the message early)."""
    assert broker.nack(stream, delivered, group) is True
    assert broker.nack(stream, delivered, group) is False


@pytest.mark.beyond_protean(
    "inline",
    reason="InlineBroker does not hand a delivery out again once "
    "message_timeout has passed",
)
def test_an_unacked_delivery_comes_back_after_message_timeout(
    another_broker: BrokerFactory, stream: str, group: str, read_until: ReadUntil
) -> None:
    """Its consumer is presumed dead; the same delivery can then be acked."""
    impatient = another_broker(message_timeout=0.5)
    impatient.publish(stream, {"n": 1})
    [(identifier, _)] = read_until(stream, group, 1, via=impatient)
    assert [i for i, _ in read_until(stream, group, 1, via=impatient)] == [identifier]
    assert impatient.ack(stream, identifier, group) is True


@pytest.mark.beyond_protean(
    "redis",
    reason="RedisBroker hands a nacked message out again at once, whatever "
    "`retry_delay` and `backoff_multiplier` say",
)
def test_each_nack_waits_longer_before_the_message_comes_back(
    another_broker: BrokerFactory, stream: str, group: str, read_until: ReadUntil
) -> None:
    """The n-th nack waits `retry_delay * backoff_multiplier ** (n - 1)`: a
    broker that forgets the count retries a failing handler at full speed."""
    slow = another_broker(retry_delay=0.3, backoff_multiplier=4.0)
    slow.publish(stream, {"n": 1})
    [(identifier, _)] = read_until(stream, group, 1, via=slow)
    waits = []
    for _ in range(2):
        assert slow.nack(stream, identifier, group) is True
        nacked = time.monotonic()
        assert [i for i, _ in read_until(stream, group, 1, via=slow)] == [identifier]
        waits.append(time.monotonic() - nacked)
    assert 0.25 <= waits[0] < 1.0 <= waits[1], waits
    assert slow.ack(stream, identifier, group) is True


@REDIS_REDELIVERS_PENDING
def test_read_returns_at_most_the_number_asked_while_retries_are_due(
    broker: BaseBroker,
    stream: str,
    group: str,
    read_until: ReadUntil,
    patience: float,
    quiet: float,
) -> None:
    published = [broker.publish(stream, {"n": n}) for n in range(3)]
    for identifier, _ in read_until(stream, group, 3):
        assert broker.nack(stream, identifier, group) is True
    published += [broker.publish(stream, {"n": n}) for n in (3, 4)]
    time.sleep(quiet)  # the test settings' retry_delay is shorter: retries are due
    received: list[str] = []
    deadline = time.monotonic() + patience
    while len(received) < len(published) and time.monotonic() < deadline:
        batch = broker.read(stream, group, 2)
        assert len(batch) <= 2
        received += [identifier for identifier, _ in batch]
    # Retried or new, each comes back once: none is handed out twice unsettled.
    assert Counter(received) == Counter(published)
