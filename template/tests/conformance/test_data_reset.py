"""Data reset: tests and tooling start from an empty broker."""

from __future__ import annotations

import pytest
from protean.port.broker import BaseBroker, BrokerCapabilities

from tests.conftest import ReadUntil


@pytest.mark.requires(BrokerCapabilities.CONSUMER_GROUPS)
def test_reset_removes_published_messages(
    broker: BaseBroker, stream: str, group: str, read_until: ReadUntil, quiet: float
) -> None:
    broker.publish(stream, {"n": 1})
    broker._data_reset()
    assert read_until(stream, group, 1, timeout=quiet) == []


@pytest.mark.requires(BrokerCapabilities.PUBLISH)
def test_the_broker_works_after_a_reset(broker: BaseBroker, stream: str) -> None:
    broker._data_reset()
    broker._data_reset()  # resetting an empty broker is fine too
    assert broker.publish(stream, {"n": 1})
