"""Reading back: identifiers, exact payloads, limits and order."""

from __future__ import annotations

from typing import Any

import pytest
from protean.port.broker import BaseBroker, BrokerCapabilities

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
    first = broker.publish(stream, {"n": 1})
    second = broker.publish(stream, {"n": 2})
    received = []
    for _ in range(int(patience * 100)):
        message = broker.get_next(stream, group)
        if message is not None:
            received.append(message[0])
        if len(received) == 2:
            break
    assert set(received) == {first, second}


def test_read_returns_at_most_the_requested_number(
    broker: BaseBroker, stream: str, group: str, read_until: ReadUntil
) -> None:
    for n in range(5):
        broker.publish(stream, {"n": n})
    read_until(stream, group, 3)  # let the broker warm up the group
    assert len(broker.read(stream, group, 1)) <= 1


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
