"""Partition leases: one owner per key, fenced so a stale owner cannot act."""

from __future__ import annotations

import time

import pytest
from protean.port import broker as port
from protean.port.broker import BaseBroker, BrokerCapabilities

# Leases exist from Protean 0.17, so `port.LeaseLostError` is looked up lazily.
pytestmark = pytest.mark.requires(BrokerCapabilities.STREAM_PARTITIONING)

TTL_MS = 60_000


@pytest.fixture
def lease(broker: BaseBroker, stream: str) -> str:
    """A lease on `stream`, held by owner-a at generation 1 (token `owner-a:1`)."""
    key = f"{stream}:lease"
    assert broker.acquire_partition_lease(key, f"{stream}:gen", "owner-a", TTL_MS) == 1
    return key


def test_a_lease_has_one_owner_and_a_growing_generation(
    broker: BaseBroker, stream: str
) -> None:
    lease, generation = f"{stream}:lease", f"{stream}:generation"
    first = broker.acquire_partition_lease(lease, generation, "owner-a", TTL_MS)
    assert first == 1
    assert broker.acquire_partition_lease(lease, generation, "owner-b", TTL_MS) is None
    assert broker.renew_partition_lease(lease, "owner-a:1", TTL_MS) is True
    assert broker.release_partition_lease(lease, "owner-b:1") is False
    assert broker.release_partition_lease(lease, "owner-a:1") is True
    assert broker.acquire_partition_lease(lease, generation, "owner-b", TTL_MS) == 2
    assert broker.renew_partition_lease(lease, "owner-a:1", TTL_MS) is False


def test_an_expired_lease_can_be_taken_over(broker: BaseBroker, stream: str) -> None:
    lease, generation = f"{stream}:lease", f"{stream}:generation"
    assert broker.acquire_partition_lease(lease, generation, "owner-a", 1) == 1
    time.sleep(0.05)
    assert broker.acquire_partition_lease(lease, generation, "owner-b", TTL_MS) == 2


def test_fenced_reads_and_acks_need_the_current_token(
    broker: BaseBroker, stream: str, group: str, lease: str
) -> None:
    identifier = broker.publish(stream, {"n": 1})
    [(delivered, payload)] = broker.read_partition_fenced(
        stream, group, "owner-a:1", lease, "owner-a:1"
    )
    assert (delivered, payload) == (identifier, {"n": 1})
    with pytest.raises(port.LeaseLostError):
        broker.read_partition_fenced(stream, group, "owner-b:1", lease, "owner-b:1")
    with pytest.raises(port.LeaseLostError):
        broker.ack_partition_fenced(stream, delivered, group, lease, "owner-b:1")
    assert broker.ack_partition_fenced(stream, delivered, group, lease, "owner-a:1")


def test_pending_reads_return_the_owners_unacked_messages(
    broker: BaseBroker, stream: str, group: str, lease: str
) -> None:
    identifier = broker.publish(stream, {"n": 1})
    broker.read_partition_fenced(stream, group, "owner-a:1", lease, "owner-a:1")
    pending = broker.read_partition_fenced(
        stream, group, "owner-a:1", lease, "owner-a:1", new_messages=False
    )
    assert [i for i, _ in pending] == [identifier]


def test_a_new_owner_reclaims_the_previous_owners_pending_messages(
    broker: BaseBroker, stream: str, group: str, lease: str
) -> None:
    identifier = broker.publish(stream, {"n": 1})
    broker.read_partition_fenced(stream, group, "owner-a:1", lease, "owner-a:1")
    broker.release_partition_lease(lease, "owner-a:1")
    broker.acquire_partition_lease(lease, f"{stream}:gen", "owner-b", TTL_MS)
    reclaimed = broker.reclaim_partition_pending(stream, group, "owner-b:2")
    assert [i for i, _ in reclaimed] == [identifier]
    pending = broker.read_partition_fenced(
        stream, group, "owner-b:2", lease, "owner-b:2", new_messages=False
    )
    assert [i for i, _ in pending] == [identifier]


def test_partition_index_and_reaping(broker: BaseBroker, stream: str) -> None:
    category, group = stream, "reaper"
    broker.record_partition(category, "key-1")
    broker.record_partition(category, "key-1")
    broker.record_partition(category, "key-2")
    assert broker.partition_keys(category) == {"key-1", "key-2"}

    partition = f"{category}:key-1"
    lease, generation = f"{partition}:lease", f"{partition}:generation"
    broker.acquire_partition_lease(lease, generation, "owner", TTL_MS)
    broker.publish(partition, {"n": 1})
    [(identifier, _)] = broker.read_partition_fenced(
        partition, group, "owner:1", lease, "owner:1"
    )
    assert broker.reap_partition(category, "key-1", 0) is False  # still unacked
    broker.ack_partition_fenced(partition, identifier, group, lease, "owner:1")
    assert broker.reap_partition(category, "key-1", 0) is True
    assert broker.partition_keys(category) == {"key-2"}
