"""Checks of the Kafka harness itself, against a real broker."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from tests.kafka_server import (
    HOST,
    KafkaCluster,
    KafkaHarnessError,
    KafkaServer,
    api_versions_ok,
)

pytestmark = pytest.mark.kafka


@pytest.fixture
def kafka(tmp_path: Path) -> Iterator[KafkaServer]:
    with KafkaServer(tmp_path / "kafka") as server:
        yield server


def create_topic(bootstrap: str, name: str, replicas: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = NewTopic(name, num_partitions=1, replication_factor=replicas)
    admin.create_topics([topic])[name].result(timeout=30)


def produce(bootstrap: str, topic: str, *values: bytes) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for value in values:
        producer.produce(topic, value)
    assert producer.flush(30) == 0


def consume_one(bootstrap: str, topic: str, group: str) -> Message:
    """Read the next message for ``group`` and commit it synchronously."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.subscribe([topic])
        for _ in range(60):
            msg = consumer.poll(0.5)
            if msg is not None:
                assert msg.error() is None, msg.error()
                consumer.commit(message=msg, asynchronous=False)
                return msg
    finally:
        consumer.close()
    pytest.fail(f"no message on {topic} for group {group}")


def test_produce_and_consume(kafka: KafkaServer) -> None:
    assert api_versions_ok(HOST, kafka.port)
    topic = f"t-{uuid.uuid4().hex}"
    create_topic(kafka.bootstrap_servers, topic)
    produce(kafka.bootstrap_servers, topic, b"hello")
    assert consume_one(kafka.bootstrap_servers, topic, "g").value() == b"hello"
    kafka.stop()
    assert not kafka.running
    assert not api_versions_ok(HOST, kafka.port)


def test_restart_keeps_topic_and_committed_offset(kafka: KafkaServer) -> None:
    topic = "orders"
    create_topic(kafka.bootstrap_servers, topic)
    produce(kafka.bootstrap_servers, topic, b"first", b"second")
    assert consume_one(kafka.bootstrap_servers, topic, "g").value() == b"first"
    address = kafka.bootstrap_servers

    kafka.stop()
    kafka.start()

    assert kafka.bootstrap_servers == address
    topics = AdminClient({"bootstrap.servers": address}).list_topics(timeout=10).topics
    assert topic in topics
    assert consume_one(address, topic, "g").value() == b"second"


def test_failed_start_reports_log_tail(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        server = KafkaServer(tmp_path / "kafka", port=taken.getsockname()[1])
        with pytest.raises(KafkaHarnessError, match="Kafka exited during start-up"):
            server.start()
    assert not server.running


def test_cluster_survives_losing_the_leader() -> None:
    with KafkaCluster(3) as cluster:
        create_topic(cluster.bootstrap_servers, "replicated", replicas=3)
        produce(cluster.bootstrap_servers, "replicated", b"before")
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
        meta = admin.list_topics("replicated", timeout=10)
        leader = meta.topics["replicated"].partitions[0].leader
        cluster.servers[leader - 1].stop()

        produce(cluster.bootstrap_servers, "replicated", b"after")
        values = [
            consume_one(cluster.bootstrap_servers, "replicated", "g").value()
            for _ in range(2)
        ]
        assert values == [b"before", b"after"]
