"""Consumer groups: each group sees every message, once."""

from __future__ import annotations

import pytest
from protean.port.broker import BaseBroker, BrokerCapabilities

from tests.conformance.reasons import REDIS_REDELIVERS_PENDING
from tests.conftest import ReadUntil

pytestmark = pytest.mark.requires(BrokerCapabilities.CONSUMER_GROUPS)


def test_every_group_receives_every_message(
    broker: BaseBroker, stream: str, group: str, read_until: ReadUntil
) -> None:
    published = {broker.publish(stream, {"n": n}) for n in range(3)}
    for each in (f"{group}-billing", f"{group}-shipping"):
        assert {identifier for identifier, _ in read_until(stream, each, 3)} == (
            published
        )


@REDIS_REDELIVERS_PENDING
def test_a_delivered_message_is_not_handed_out_again_in_its_group(
    broker: BaseBroker, stream: str, group: str, read_until: ReadUntil, quiet: float
) -> None:
    broker.publish(stream, {"n": 1})
    assert len(read_until(stream, group, 1)) == 1
    assert read_until(stream, group, 1, timeout=quiet) == []


def test_ensure_group_is_idempotent(
    broker: BaseBroker, stream: str, group: str, read_until: ReadUntil
) -> None:
    broker._ensure_group(group, stream)
    broker._ensure_group(group, stream)
    identifier = broker.publish(stream, {"n": 1})
    assert [i for i, _ in read_until(stream, group, 1)] == [identifier]
