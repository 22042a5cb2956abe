"""Checks of the Kafka runner generated packages carry, mostly against real
brokers: what only Kafka has (``test_server_runners.py`` checks what every
runner does)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from tests.conftest import REPO_ROOT
from tests.kafka_server import (
    TEST_OVERRIDES,
    KafkaCluster,
    KafkaServer,
    api_versions_ok,
    kafka_version,
)
from tests.local_servers import HOST
from tests.runners import runner_path

# Every file that names the Kafka version generated packages run.
IMAGE_TAGS = (
    "template/{% if backend == 'kafka' %}docker-compose.yml{% endif %}.jinja",
    "template/_snippets/kafka/ci.yml.jinja",
)


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


def test_the_pom_stands_next_to_the_runner_kafka_packages_get() -> None:
    assert (runner_path("kafka").parent / "pom.xml").is_file()
    assert not (REPO_ROOT / "tests" / "kafka" / "pom.xml").exists()


@pytest.mark.parametrize("path", IMAGE_TAGS)
def test_docker_images_run_the_kafka_version_the_tests_run(path: str) -> None:
    text = (REPO_ROOT / path).read_text()
    tags = re.findall(r"image:\s*apache/kafka:(\S+)", text)
    assert tags == [kafka_version()], f"{path}: {tags} vs the pom's {kafka_version()}"


def test_production_defaults_leave_out_every_test_override(tmp_path: Path) -> None:
    def written(**options: bool) -> dict[str, str]:
        server = KafkaServer(
            tmp_path / ("production" if options else "tuned"), **options
        )
        server.data_dir.mkdir()
        server._write_config()
        lines = server.properties_path.read_text().splitlines()
        return dict(line.split("=", 1) for line in lines)

    tuned, production = written(), written(production_defaults=True)
    assert {k: tuned[k] for k in TEST_OVERRIDES} == TEST_OVERRIDES
    assert not set(TEST_OVERRIDES) & set(production)
    # What one node forces stays: Kafka's internal topics default to 3 replicas.
    assert production["offsets.topic.replication.factor"] == "1"
    assert production["transaction.state.log.min.isr"] == "1"


@pytest.mark.kafka
def test_produce_and_consume(kafka: KafkaServer) -> None:
    assert api_versions_ok(HOST, kafka.port)
    topic = f"t-{uuid.uuid4().hex}"
    create_topic(kafka.bootstrap_servers, topic)
    produce(kafka.bootstrap_servers, topic, b"hello")
    assert consume_one(kafka.bootstrap_servers, topic, "g").value() == b"hello"
    kafka.stop()
    assert not kafka.running
    assert not api_versions_ok(HOST, kafka.port)


@pytest.mark.kafka
def test_a_started_node_has_its_group_coordinator(kafka: KafkaServer) -> None:
    """A first join right after start() must not wait for __consumer_offsets."""
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
    assert "__consumer_offsets" in admin.list_topics(timeout=10).topics


@pytest.mark.kafka
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


@pytest.mark.kafka
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
