"""Publishing: identifiers, payload ownership, and subscribers called on publish."""

from __future__ import annotations

from typing import Any

import pytest
from protean.core.subscriber import BaseSubscriber
from protean.domain import Domain
from protean.exceptions import ValidationError
from protean.port.broker import BaseBroker, BrokerCapabilities

from tests.conftest import close_broker, subscribed_to

PUBLISH = pytest.mark.requires(BrokerCapabilities.PUBLISH)


@PUBLISH
def test_publish_returns_a_non_empty_string_identifier(
    broker: BaseBroker, stream: str
) -> None:
    identifier = broker.publish(stream, {"order_id": 1})
    assert isinstance(identifier, str)
    assert identifier


@PUBLISH
def test_identifiers_are_unique_within_a_stream(
    broker: BaseBroker, stream: str
) -> None:
    identifiers = [broker.publish(stream, {"n": n}) for n in range(10)]
    assert len(set(identifiers)) == 10


@PUBLISH
@pytest.mark.beyond_protean(
    "redis",
    reason="Redis stream ids are timestamps and repeat across streams; the suite "
    "asks for unique ids because DLQ entries, logs and traces name a message by "
    "its id alone",
)
def test_identifiers_are_unique_across_streams(broker: BaseBroker, stream: str) -> None:
    identifiers = [broker.publish(f"{stream}-{n}", {"n": n}) for n in range(10)]
    assert len(set(identifiers)) == 10


@PUBLISH
def test_an_empty_message_is_refused(broker: BaseBroker, stream: str) -> None:
    with pytest.raises(ValidationError):
        broker.publish(stream, {})


@PUBLISH
@pytest.mark.beyond_protean(
    "inline",
    "redis",
    reason="InlineBroker keeps the caller's dict without serialising it, and "
    "RedisBroker writes NaN, which JSON readers other than Python's refuse",
)
def test_a_payload_json_cannot_hold_is_refused_when_published(
    broker: BaseBroker, stream: str
) -> None:
    """Refused at `publish` (JSON's own error, or Protean's `ValidationError`),
    where the caller sees it, rather than stored and failing later in a reader;
    NaN is refused too: JSON readers other than Python's reject it."""
    with pytest.raises((TypeError, ValidationError)):
        broker.publish(stream, {"tags": {"a", "b"}})
    with pytest.raises((ValueError, ValidationError)):
        broker.publish(stream, {"total": float("nan")})


@PUBLISH
def test_publish_leaves_the_callers_dict_untouched(
    broker: BaseBroker, stream: str
) -> None:
    message: dict[str, Any] = {"order_id": 7, "lines": [{"sku": "A", "qty": 2}]}
    snapshot = {"order_id": 7, "lines": [{"sku": "A", "qty": 2}]}
    broker.publish(stream, message)
    assert message == snapshot


@pytest.mark.requires(BrokerCapabilities.SUBSCRIBE)
def test_a_registered_subscriber_receives_each_published_message(
    broker: BaseBroker, stream: str, broker_settings: dict[str, Any]
) -> None:
    received: list[dict[str, Any]] = []

    class Recorder(BaseSubscriber):
        def __call__(self, payload: dict[str, Any]) -> None:
            received.append(payload)

    domain = Domain(
        name="subscriber-test",
        config={
            "brokers": {"default": broker_settings},
            "message_processing": "sync",
        },
    )
    domain.register(Recorder, **subscribed_to(stream))
    domain.init(traverse=False)
    with domain.domain_context():
        domain.brokers["default"].publish(stream, {"order_id": 1})
        domain.brokers["default"].publish(stream, {"order_id": 2})
    close_broker(domain.brokers["default"])
    assert received == [{"order_id": 1}, {"order_id": 2}]
