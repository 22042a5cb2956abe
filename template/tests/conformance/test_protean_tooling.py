"""Protean's own tooling reports this broker's real figures, not zeros.

The Observatory's `/metrics` text and the status `protean subscriptions` prints
are computed from `health_stats()` and `info()`; this feeds them the broker and
reads what they say. Both live in Protean's server modules (0.18), whose
`/metrics` needs FastAPI (`pip install "protean[server]"`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from protean.core.subscriber import BaseSubscriber
from protean.domain import Domain
from protean.port.broker import BaseBroker, BrokerCapabilities
from protean.utils import fqn

from tests.conftest import broker_settings

pytestmark = pytest.mark.requires(BrokerCapabilities.CONSUMER_GROUPS)


class OrderSubscriber(BaseSubscriber):
    """Protean names a subscriber's consumer group after its class."""

    def __call__(self, payload: dict[str, Any]) -> None:
        """Never called: the test reads for it, as the engine would."""


@pytest.fixture
def busy(broker: BaseBroker, stream: str, patience: float) -> Iterator[Domain]:
    """A domain whose broker holds 3 messages of `stream`, 1 of them delivered
    to `OrderSubscriber`'s group and not yet acked."""
    domain = Domain(
        name="tooling-test", config={"brokers": {"default": broker_settings()}}
    )
    domain.register(OrderSubscriber, stream=stream)
    domain.init(traverse=False)
    with domain.domain_context():
        own = domain.brokers["default"]
        for n in range(3):
            own.publish(stream, {"n": n})
        deadline = time.monotonic() + patience
        while not own.read(stream, fqn(OrderSubscriber), 1):
            assert time.monotonic() < deadline, "no message arrived"
            time.sleep(0.01)
    yield domain
    domain.brokers["default"].close()


def expected_pending(broker: BaseBroker) -> int:
    """Two undelivered, plus the delivered one while it is unacked."""
    return 3 if broker.has_capability(BrokerCapabilities.ACK_NACK) else 2


def test_observatory_metrics_report_the_brokers_figures(
    busy: Domain, broker: BaseBroker
) -> None:
    metrics = pytest.importorskip(
        "protean.server.observatory.metrics",
        reason="the Observatory needs Protean 0.18 and FastAPI (protean[server])",
    )
    text: str = metrics._hand_rolled_metrics([busy])
    values = dict(
        line.rsplit(" ", 1) for line in text.splitlines() if line[:1].isalpha()
    )
    assert values["protean_broker_up"] == "1"
    assert values["protean_stream_messages_total"] == "3"
    unacked = 1 if broker.has_capability(BrokerCapabilities.ACK_NACK) else 0
    assert values["protean_stream_pending"] == str(unacked)
    assert values["protean_streams_count"] == "1"
    assert values["protean_consumer_groups_count"] == "1"
    [pending] = [
        value
        for name, value in values.items()
        if name.startswith("protean_subscription_pending_messages{")
        and "OrderSubscriber" in name
    ]
    assert pending == str(expected_pending(broker))


def test_subscription_status_reports_pending_and_consumers(
    busy: Domain, broker: BaseBroker
) -> None:
    status = pytest.importorskip(
        "protean.server.subscription_status",
        reason="`protean subscriptions` arrived in Protean 0.18",
    )
    [subscription] = [
        s
        for s in status.collect_subscription_statuses(busy)
        if s.handler_name == "OrderSubscriber"
    ]
    assert subscription.subscription_type == "broker"
    assert subscription.pending == expected_pending(broker)
    assert subscription.consumer_count == 1
    assert subscription.status == "lagging"
