"""Reading back: identifiers, exact payloads, limits and order."""

from __future__ import annotations

import time
from typing import Any

import pytest
from protean.port.broker import BaseBroker, BrokerCapabilities

from tests.conformance.reasons import REDIS_REDELIVERS_PENDING
from tests.conftest import ReadUntil

pytestmark = pytest.mark.requires(BrokerCapabilities.CONSUMER_GROUPS)


def test_read_returns_the_published_identifier_and_payload(
    broker: BaseBroker, stream: str, group: str, read_until: ReadUntil
) -> None:
    identifier = broker.publish(stream, {"order_id": 1})
    assert read_until(stream, group, 1) == [(identifier, {"order_id": 1})]


def test_payloads_round_trip_exactly(
    broker: BaseBroker, stream: str, group: str, read_until: ReadUntil
) -> None:
    payload: dict[str, Any] = {
        "text": "naïve café ✓",
        "int": 2**53,
        "float": 0.1,
        "flags": [True, False, None],
        "nested": {"list": [1, {"deep": "yes"}], "empty": {}},
    }
    broker.publish(stream, payload)
    [(_, received)] = read_until(stream, group, 1)
    assert received == payload


def test_get_next_returns_one_message_at_a_time(
    broker: BaseBroker, stream: str, group: str, patience: float
) -> None:
    published = [broker.publish(stream, {"n": n}) for n in range(2)]
    received: list[str] = []
    deadline = time.monotonic() + patience
    while len(received) < 2 and time.monotonic() < deadline:
        message = broker.get_next(stream, group)
        if message is None:
            time.sleep(0.01)
        else:
            received.append(message[0])
    if broker.has_capability(BrokerCapabilities.MESSAGE_ORDERING):
        assert received == published
    else:
        assert len(received) == 2
        assert set(received) == set(published)


@REDIS_REDELIVERS_PENDING
def test_read_returns_exactly_the_requested_number_when_more_wait(
    broker: BaseBroker, stream: str, group: str, read_until: ReadUntil, quiet: float
) -> None:
    for n in range(6):
        broker.publish(stream, {"n": n})
    assert len(read_until(stream, group, 2)) == 2  # the group is warm now
    assert len(broker.read(stream, group, 1)) == 1
    assert len(read_until(stream, group, 2)) == 2
    assert len(read_until(stream, group, 5, timeout=quiet)) == 1


def test_stream_names_with_colons_are_kept_apart(
    broker: BaseBroker, group: str, read_until: ReadUntil, stream: str
) -> None:
    names = [f"{stream}:a", f"{stream}::a", f"{stream}:a:", f"{stream}-a"]
    for name in names:
        broker.publish(name, {"stream": name})
    for name in names:
        assert [payload for _, payload in read_until(name, group, 1)] == [
            {"stream": name}
        ]


@pytest.mark.requires(BrokerCapabilities.MESSAGE_ORDERING)
def test_messages_arrive_in_publish_order(
    broker: BaseBroker, stream: str, group: str, read_until: ReadUntil
) -> None:
    published = [broker.publish(stream, {"n": n}) for n in range(20)]
    assert [identifier for identifier, _ in read_until(stream, group, 20)] == published
