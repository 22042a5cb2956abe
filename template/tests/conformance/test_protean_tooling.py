"""Protean's own tooling reports this broker's real figures, not zeros.

The Observatory's `/metrics` text and the status `protean subscriptions` prints
are computed from `health_stats()` and `info()`; this feeds them the broker and
reads what they say. The Observatory needs Protean's server extra
(`pip install "protean[server]"`): without it its test is deselected.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from protean.core.subscriber import BaseSubscriber
from protean.domain import Domain
from protean.port.broker import BaseBroker, BrokerCapabilities
from protean.utils import fqn

from tests.conformance.reasons import (
    PENDING_IS_THE_BACKLOG,
    REDIS_SPLITS_GROUP_KEYS,
)
from tests.conftest import broker_settings, close_broker, subscribed_to

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
    domain.register(OrderSubscriber, **subscribed_to(stream))
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
    close_broker(domain.brokers["default"])


def expected_pending(broker: BaseBroker) -> int:
    """Two undelivered, plus the delivered one while it is unacked."""
    return 3 if broker.has_capability(BrokerCapabilities.ACK_NACK) else 2


@pytest.mark.protean_server
@REDIS_SPLITS_GROUP_KEYS
def test_observatory_metrics_report_the_brokers_figures(
    busy: Domain, broker: BaseBroker
) -> None:
    from protean.server.observatory import metrics

    response = asyncio.run(metrics.create_metrics_endpoint([busy])())
    text = bytes(response.body).decode()
    values = dict(
        line.rsplit(" ", 1) for line in text.splitlines() if line[:1].isalpha()
    )
    assert values["protean_broker_up"] == "1"
    assert values["protean_stream_messages_total"] == "3"
    unacked = 1 if broker.has_capability(BrokerCapabilities.ACK_NACK) else 0
    assert values["protean_stream_pending"] == str(unacked)
    assert values["protean_streams_count"] == "1"
    assert values["protean_consumer_groups_count"] == "1"


@PENDING_IS_THE_BACKLOG
def test_subscription_status_reports_pending_and_consumers(
    busy: Domain, broker: BaseBroker
) -> None:
    from protean.server import subscription_status as status

    [subscription] = [
        s
        for s in status.collect_subscription_statuses(busy)
        if s.handler_name == "OrderSubscriber"
    ]
    assert subscription.subscription_type == "broker"
    assert subscription.pending == expected_pending(broker)
    assert subscription.consumer_count == 1
    assert subscription.status == "lagging"
