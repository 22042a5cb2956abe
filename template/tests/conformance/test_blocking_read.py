"""Blocking reads: wait for a message instead of polling, within the timeout."""

from __future__ import annotations

import threading
import time

import pytest
from protean.port.broker import BaseBroker, BrokerCapabilities

pytestmark = pytest.mark.requires(BrokerCapabilities.BLOCKING_READ)


def test_a_waiting_reader_receives_a_message_published_meanwhile(
    broker: BaseBroker, stream: str, group: str, patience: float
) -> None:
    broker.read_blocking(stream, group, "worker-1", timeout_ms=0)  # join the group
    publisher = threading.Timer(0.2, broker.publish, args=(stream, {"n": 1}))
    publisher.start()
    received = broker.read_blocking(
        stream, group, "worker-1", timeout_ms=int(patience * 1000), count=10
    )
    publisher.join()
    assert [payload for _, payload in received] == [{"n": 1}]


def test_an_empty_read_returns_after_the_timeout(
    broker: BaseBroker, stream: str, group: str
) -> None:
    started = time.monotonic()
    assert broker.read_blocking(stream, group, "worker-1", timeout_ms=300) == []
    elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 5.0


@pytest.mark.protean_defect(
    "redis",
    before="0.18",
    reason="RedisBroker before 0.18 sends timeout_ms=0 as XREADGROUP BLOCK 0, "
    "which Redis reads as 'wait forever': the read ends only when redis-py's "
    "socket times out",
)
def test_a_zero_timeout_never_waits_on_an_idle_stream(
    broker: BaseBroker, stream: str, group: str
) -> None:
    # Protean's docstring reads 0 as "block indefinitely", its priority-lane
    # reader passes 0 meaning "do not wait": neither may hang here. A first
    # read may join its group (Kafka took 1.1 s on 2 busy cores); a second
    # has nothing to set up.
    started = time.monotonic()
    assert broker.read_blocking(stream, group, "worker-1", timeout_ms=0) == []
    assert time.monotonic() - started < 5.0
    started = time.monotonic()
    assert broker.read_blocking(stream, group, "worker-1", timeout_ms=0) == []
    assert time.monotonic() - started < 1.0


def test_a_zero_timeout_returns_what_is_already_there(
    broker: BaseBroker, stream: str, group: str, patience: float
) -> None:
    first = broker.publish(stream, {"n": 1})
    second = broker.publish(stream, {"n": 2})
    started = time.monotonic()
    received = broker.read_blocking(stream, group, "worker-1", timeout_ms=0, count=2)
    # One call: a broker still fetching may wait for records it knows exist,
    # briefly, but may not answer "nothing" while they are there.
    assert time.monotonic() - started < patience
    assert received == [(first, {"n": 1}), (second, {"n": 2})]
