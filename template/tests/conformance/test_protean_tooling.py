"""Protean's own tooling reports this broker's real figures, not zeros.

The Observatory's `/metrics` text and the status `protean subscriptions` prints
are computed from `health_stats()` and `info()`; this feeds them the broker and
reads what they say. The Observatory needs Protean's server extra
(`pip install "protean[server]"`): without it its test is deselected.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
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
from tests.conftest import close_broker, subscribed_to

pytestmark = pytest.mark.requires(BrokerCapabilities.CONSUMER_GROUPS)


class OrderSubscriber(BaseSubscriber):
    """Protean names a subscriber's consumer group after its class."""

    def __call__(self, payload: dict[str, Any]) -> None:
        """Never called: the test reads for it, as the engine would."""


@dataclass
class Busy:
    """A domain whose broker holds 3 messages of a fresh stream, 1 of them
    delivered to `subscriber`'s group and not yet acked, and the broker's
    figures from before, so that what an earlier test left does not count."""

    domain: Domain
    subscriber: type[BaseSubscriber]
    before: dict[str, Any]


@pytest.fixture
def busy(
    broker: BaseBroker,
    stream: str,
    patience: float,
    broker_settings: dict[str, Any],
) -> Iterator[Busy]:
    class Fresh(OrderSubscriber):
        """A consumer group of its own: a durable store remembers earlier tests'."""

    subscriber: type[BaseSubscriber] = Fresh
    subscriber.__name__ = subscriber.__qualname__ = f"Orders{uuid.uuid4().hex[:8]}"
    # Before the subscriber exists: some brokers count a stream once subscribed.
    before = broker.health_stats()["details"]
    domain = Domain(
        name="tooling-test", config={"brokers": {"default": broker_settings}}
    )
    domain.register(subscriber, **subscribed_to(stream))
    domain.init(traverse=False)
    with domain.domain_context():
        own = domain.brokers["default"]
        for n in range(3):
            own.publish(stream, {"n": n})
        deadline = time.monotonic() + patience
        while not own.read(stream, fqn(subscriber), 1):
            assert time.monotonic() < deadline, "no message arrived"
            time.sleep(0.01)
    yield Busy(domain, subscriber, before)
    close_broker(domain.brokers["default"])


def expected_pending(broker: BaseBroker) -> int:
    """Two undelivered, plus the delivered one while it is unacked."""
    return 3 if broker.has_capability(BrokerCapabilities.ACK_NACK) else 2


@pytest.mark.protean_server
@REDIS_SPLITS_GROUP_KEYS
def test_observatory_metrics_report_the_brokers_figures(
    busy: Busy, broker: BaseBroker
) -> None:
    from protean.server.observatory import metrics

    response = asyncio.run(metrics.create_metrics_endpoint([busy.domain])())
    text = bytes(response.body).decode()
    values = dict(
        line.rsplit(" ", 1) for line in text.splitlines() if line[:1].isalpha()
    )
    counts, before = busy.before["message_counts"], busy.before
    unacked = 1 if broker.has_capability(BrokerCapabilities.ACK_NACK) else 0
    assert values["protean_broker_up"] == "1"
    assert int(values["protean_stream_messages_total"]) == counts["total_messages"] + 3
    assert int(values["protean_stream_pending"]) == counts["in_flight"] + unacked
    assert int(values["protean_streams_count"]) == before["streams"]["count"] + 1
    groups = before["consumer_groups"]["count"]
    assert int(values["protean_consumer_groups_count"]) == groups + 1


@PENDING_IS_THE_BACKLOG
def test_subscription_status_reports_pending_and_consumers(
    busy: Busy, broker: BaseBroker
) -> None:
    from protean.server import subscription_status as status

    [subscription] = [
        s
        for s in status.collect_subscription_statuses(busy.domain)
        if s.handler_name == busy.subscriber.__name__
    ]
    assert subscription.subscription_type == "broker"
    assert subscription.pending == expected_pending(broker)
    assert subscription.consumer_count == 1
    assert subscription.status == "lagging"
