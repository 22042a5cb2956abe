"""Health and info: what Protean's observatory and CLI show about the broker."""

from __future__ import annotations

import pytest
from protean.port.broker import BaseBroker, BrokerCapabilities

from tests.conftest import ReadUntil

PUBLISH = pytest.mark.requires(BrokerCapabilities.PUBLISH)


@PUBLISH
def test_ping_succeeds_when_connected(broker: BaseBroker) -> None:
    assert broker.ping() is True


@PUBLISH
def test_health_stats_report_a_healthy_connected_broker(broker: BaseBroker) -> None:
    stats = broker.health_stats()
    assert stats["status"] == "healthy"
    assert stats["connected"] is True
    assert isinstance(stats["details"], dict)
    assert "error" not in stats["details"]


@PUBLISH
def test_info_is_a_dictionary(broker: BaseBroker, stream: str) -> None:
    broker.publish(stream, {"n": 1})
    assert isinstance(broker.info(), dict)


@pytest.mark.requires(BrokerCapabilities.CONSUMER_GROUPS)
def test_info_lists_groups_that_have_read(
    broker: BaseBroker, stream: str, group: str, read_until: ReadUntil
) -> None:
    broker.publish(stream, {"n": 1})
    read_until(stream, group, 1)
    assert group in broker.info()["consumer_groups"]
