"""Connection resilience: the broker recovers after its connection is closed."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from protean.port.broker import BaseBroker, BrokerCapabilities

from tests.conftest import ReadUntil, close_broker

PUBLISH = pytest.mark.requires(BrokerCapabilities.PUBLISH)


@PUBLISH
def test_ensure_connection_succeeds_when_the_backend_is_up(broker: BaseBroker) -> None:
    assert broker.ensure_connection() is True
    assert broker.ping() is True


@PUBLISH
def test_ensure_connection_restores_a_closed_broker(
    broker: BaseBroker, stream: str
) -> None:
    close_broker(broker)
    assert broker.ensure_connection() is True
    assert broker.ping() is True
    assert broker.publish(stream, {"n": 1})


@PUBLISH
def test_publish_reconnects_by_itself_after_close(
    broker: BaseBroker, stream: str
) -> None:
    close_broker(broker)
    assert broker.publish(stream, {"n": 1})


@PUBLISH
@pytest.mark.beyond_protean(
    "redis",
    since="0.16",
    reason="RedisBroker's close() disconnects the connections other threads "
    "are publishing on, and their publishes fail with ConnectionError",
)
def test_close_racing_other_threads_loses_no_publish(
    broker: BaseBroker, stream: str, group: str, read_until: ReadUntil
) -> None:
    """Protean calls one broker from its event loop and worker threads: a
    `close` on one must not break a call another is making."""
    errors: list[BaseException] = []
    published: list[str] = []

    def publish_and_close(worker: int) -> None:
        try:
            for n in range(10):
                identifier = broker.publish(stream, {"worker": worker, "n": n})
                assert identifier
                published.append(identifier)
                close_broker(broker)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=publish_and_close, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(published)) == 40
    if broker.has_capability(BrokerCapabilities.CONSUMER_GROUPS):
        received = read_until(stream, group, len(published))
        assert sorted(i for i, _ in received) == sorted(published)


@pytest.mark.requires(BrokerCapabilities.CONSUMER_GROUPS)
def test_reads_resume_after_reconnecting(
    broker: BaseBroker, stream: str, group: str, read_until: ReadUntil
) -> None:
    first = broker.publish(stream, {"n": 1})
    [(delivered, _)] = read_until(stream, group, 1)
    assert delivered == first
    # Settle it: a message unacked at close may rightly be delivered again.
    broker.ack(stream, delivered, group)  # False, and not needed, without ACK_NACK
    close_broker(broker)
    assert broker.ensure_connection() is True
    second = broker.publish(stream, {"n": 2})
    assert [i for i, _ in read_until(stream, group, 1)] == [second]


@PUBLISH
def test_a_publish_failing_once_on_a_connection_is_retried_by_protean(
    broker: BaseBroker, stream: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The error of a connection the server reset, before anything was
    written, is one Protean may retry: the publish then succeeds."""
    real_publish = broker._publish
    failures = [ConnectionError("Connection reset by peer")]

    def publish_failing_once(*args: Any) -> str:
        if failures:
            raise failures.pop()
        return real_publish(*args)

    monkeypatch.setattr(broker, "_publish", publish_failing_once)
    assert broker.publish(stream, {"n": 1})
    assert not failures


@pytest.mark.requires(BrokerCapabilities.CONSUMER_GROUPS)
def test_a_read_failing_once_on_a_connection_is_retried_by_protean(
    broker: BaseBroker,
    stream: str,
    group: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Protean's wrappers ask `_is_connection_error`, call `_ensure_connection`
    and repeat the call once: a broker whose hook refuses everything loses
    that for every read."""
    identifier = broker.publish(stream, {"n": 1})
    real_read = broker._read
    failures = [ConnectionError("Connection reset by peer")]

    def read_failing_once(*args: Any) -> list[tuple[str, dict[str, Any]]]:
        if failures:
            raise failures.pop()
        return real_read(*args)

    monkeypatch.setattr(broker, "_read", read_failing_once)
    messages: list[tuple[str, dict[str, Any]]] = []
    for _ in range(50):  # the group's first read may come back empty
        messages = broker.read(stream, group, 1)
        if messages:
            break
    assert not failures
    assert [i for i, _ in messages] == [identifier]


def test_the_broker_keeps_its_name_and_settings(
    broker: BaseBroker, broker_settings: dict[str, Any]
) -> None:
    """Protean's engine and CLI find a broker by its name, and another
    instance is built from its settings."""
    assert broker.name == "default"
    assert {key: broker.conn_info[key] for key in broker_settings} == broker_settings
