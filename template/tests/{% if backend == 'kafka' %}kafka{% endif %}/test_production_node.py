"""The ``production_bootstrap`` node really runs with Kafka's production defaults.

Join and rebalance tests rely on it: on the shared test broker a group's first
join is immediate, on a real cluster it waits ``group.initial.rebalance.delay.ms``.
"""

# confluent-kafka's admin package re-exports these without marking them public.
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    ConfigResource,
    ResourceType,
)


def test_the_production_node_keeps_kafkas_defaults(production_bootstrap: str) -> None:
    admin = AdminClient({"bootstrap.servers": production_bootstrap})
    node = ConfigResource(ResourceType.BROKER, "1")
    configs = admin.describe_configs([node])[node].result(timeout=30)
    values = {name: entry.value for name, entry in configs.items()}
    assert values["group.initial.rebalance.delay.ms"] == "3000"
    assert values["offsets.topic.num.partitions"] == "50"
    assert values["auto.create.topics.enable"] == "true"
    # What a single node forces: internal topics cannot have more replicas.
    assert values["offsets.topic.replication.factor"] == "1"
