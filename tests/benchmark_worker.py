"""One benchmark scenario in a process of its own, so its peak memory is its own.

Run by `tests/benchmark.py` with the Python of a virtual environment that holds
the rendered Kafka, RabbitMQ and SQS packages, Protean, pika and the Redis client.
Prints one JSON line:
`{"rate": messages per second, "peak_rss_mib": ..., "seconds": ...}`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from protean.core.subscriber import BaseSubscriber
from protean.domain import Domain
from protean.port.broker import BaseBroker

BATCH = 100
PAYLOAD = {"order_id": "8f2b6c1e", "customer": "c-1042", "total": 129.5, "lines": 3}


def payload(n: int) -> dict[str, Any]:
    return {**PAYLOAD, "n": n}


@contextmanager
def protean_broker(provider: str, **settings: Any) -> Iterator[BaseBroker]:
    domain = Domain(
        name="benchmark",
        config={"brokers": {"default": {"provider": provider, **settings}}},
    )
    domain.init(traverse=False)
    with domain.domain_context():
        broker = domain.brokers["default"]
        try:
            yield broker
        finally:
            broker.close()


def timed(count: int, work: Callable[[], None]) -> float:
    started = time.perf_counter()
    work()
    return count / (time.perf_counter() - started)


# -- publishing ---------------------------------------------------------------


def raw_publish(args: argparse.Namespace) -> float:
    """confluent-kafka with the adapter's producer guarantees, flushed per message."""
    topic = f"bench-raw-{uuid.uuid4().hex[:8]}"
    create_topic(args.bootstrap, topic)
    producer = Producer(
        {"bootstrap.servers": args.bootstrap, "acks": "all", "enable.idempotence": True}
    )
    body = json.dumps(PAYLOAD).encode()

    def work() -> None:
        for _ in range(args.messages):
            producer.produce(topic, body)
            if producer.flush(30) != 0:
                raise RuntimeError("a message was not confirmed")

    return timed(args.messages, work)


def open_stream(broker: BaseBroker, stream: str, group: bool) -> None:
    """Create ``stream`` outside the timing; with ``group``, one group reads it,
    as the raw client's queue is read."""
    if group:
        broker._ensure_group(f"bench-{uuid.uuid4().hex[:8]}", stream)
    broker.publish(stream, payload(-1))


def publish_each(
    provider: str, args: argparse.Namespace, group: bool = False, **settings: Any
) -> float:
    """`broker.publish` per message through Protean's API."""
    stream = f"bench::publish-{uuid.uuid4().hex[:8]}"
    with protean_broker(provider, **settings) as broker:
        open_stream(broker, stream, group)

        def work() -> None:
            for n in range(args.messages):
                broker.publish(stream, payload(n))

        return timed(args.messages, work)


def kafka_publish(args: argparse.Namespace) -> float:
    """Returns once Kafka confirmed each write."""
    return publish_each("kafka", args, BOOTSTRAP_SERVERS=args.bootstrap)


def redis_publish(args: argparse.Namespace) -> float:
    return publish_each("redis", args, URI=args.redis_url)


def publish_batches(
    provider: str, args: argparse.Namespace, group: bool = False, **settings: Any
) -> float:
    """`publish_many`: one confirmation round per batch of 100, same guarantee."""
    stream = f"bench::many-{uuid.uuid4().hex[:8]}"
    with protean_broker(provider, **settings) as broker:
        open_stream(broker, stream, group)

        def work() -> None:
            for start in range(0, args.messages, BATCH):
                broker.publish_many(  # type: ignore[attr-defined]
                    stream, [payload(n) for n in range(start, start + BATCH)]
                )

        return timed(args.messages, work)


def kafka_publish_many(args: argparse.Namespace) -> float:
    return publish_batches("kafka", args, BOOTSTRAP_SERVERS=args.bootstrap)


# -- reading and acknowledging ------------------------------------------------


def raw_consume(args: argparse.Namespace) -> float:
    """confluent-kafka: consume batches of 100 and commit each batch synchronously."""
    topic = f"bench-raw-{uuid.uuid4().hex[:8]}"
    create_topic(args.bootstrap, topic)
    producer = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 5})
    body = json.dumps(PAYLOAD).encode()
    for _ in range(args.messages):
        producer.produce(topic, body)
    producer.flush(60)
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    received = 0
    while received == 0:  # join the group outside the timing
        first = consumer.consume(BATCH, timeout=1.0)
        received = len(first)
    consumer.commit(asynchronous=False)

    def work() -> None:
        nonlocal received
        while received < args.messages:
            batch = consumer.consume(BATCH, timeout=1.0)
            if batch:
                json.loads(batch[-1].value())
                consumer.commit(asynchronous=False)
                received += len(batch)

    rate = timed(args.messages - len(first), work)
    consumer.close()
    return rate


def fill(broker: BaseBroker, stream: str, count: int) -> None:
    """Publish ``count`` messages in confirmed batches of 1,000, outside the timing."""
    for start in range(0, count, 1000):
        broker.publish_many(  # type: ignore[attr-defined]
            stream, [payload(n) for n in range(start, min(start + 1000, count))]
        )


def read_and_ack(
    broker: BaseBroker, stream: str, count: int, group: str | None = None
) -> float:
    """Read batches of 100 through Protean's API and ack every message."""
    group = group or f"bench-{uuid.uuid4().hex[:8]}"
    first: list[tuple[str, dict[str, Any]]] = []
    while not first:  # join the group outside the timing
        first = broker.read(stream, group, BATCH)
    for identifier, _ in first:
        broker.ack(stream, identifier, group)
    acked = len(first)

    def work() -> None:
        nonlocal acked
        while acked < count:
            for identifier, _ in broker.read(stream, group, BATCH):
                if not broker.ack(stream, identifier, group):
                    raise RuntimeError(f"ack of {identifier} was refused")
                acked += 1

    return timed(count - len(first), work)


def kafka_read_ack(args: argparse.Namespace) -> float:
    stream = f"bench::read-{uuid.uuid4().hex[:8]}"
    with protean_broker("kafka", BOOTSTRAP_SERVERS=args.bootstrap) as broker:
        fill(broker, stream, args.messages)
        return read_and_ack(broker, stream, args.messages)


def redis_read_ack(args: argparse.Namespace) -> float:
    stream = f"bench::read-{uuid.uuid4().hex[:8]}"
    with protean_broker("redis", URI=args.redis_url) as broker:
        for n in range(args.messages):
            broker.publish(stream, payload(n))
        return read_and_ack(broker, stream, args.messages)


# -- end to end ---------------------------------------------------------------


ENGINE_MESSAGES = 2_000
"""Protean's engine hands a broker subscription 10 messages a tick: keep N small."""


def drain_with_engine(
    provider: str, args: argparse.Namespace, **settings: Any
) -> float:
    """Publish messages, then let Protean's engine hand each to a subscriber.

    Test mode gives up after about five seconds, so the engine is run again until
    every message was handled; each run rejoins the consumer group, as a restarted
    worker would.
    """
    from protean.server import Engine

    count = min(args.messages, ENGINE_MESSAGES)
    stream = f"bench::engine-{uuid.uuid4().hex[:8]}"
    handled: set[int] = set()

    class Counter(BaseSubscriber):
        def __call__(self, message: dict[str, Any]) -> None:
            handled.add(message["n"])

    domain = Domain(
        name="benchmark",
        config={"brokers": {"default": {"provider": provider, **settings}}},
    )
    domain.register(Counter, stream=stream)
    domain.init(traverse=False)
    with domain.domain_context():
        broker = domain.brokers["default"]
        for n in range(count):
            broker.publish(stream, payload(n))

        def work() -> None:
            while len(handled) < count:
                Engine(domain, test_mode=True).run()

        rate = timed(count, work)
        broker.close()
    return rate


def engine(args: argparse.Namespace) -> float:
    return drain_with_engine("kafka", args, BOOTSTRAP_SERVERS=args.bootstrap)


def engine_redis(args: argparse.Namespace) -> float:
    return drain_with_engine("redis", args, URI=args.redis_url)


# -- Protean's production path --------------------------------------------------


def production_domain(
    provider: str,
    settings: dict[str, Any],
    args: argparse.Namespace,
    on_event: Callable[[float], None],
) -> tuple[Domain, Callable[[int], None]]:
    """A domain whose events go aggregate -> outbox -> OutboxProcessor -> broker
    -> StreamSubscription -> event handler, Protean's flow for events with
    `default_subscription_type = "stream"`. Aggregates and the outbox live in a
    SQLite file (Protean's SQLAlchemy provider): the memory provider copies its
    whole store into every unit of work, so with a backlog it, not the path,
    would be measured. Returns the domain and a function that stores that many
    aggregates, each with its event, in one unit of work; the handler calls
    `on_event` with the event's age in seconds."""
    from protean import UnitOfWork, handle
    from protean.core.aggregate import BaseAggregate
    from protean.core.event import BaseEvent
    from protean.core.event_handler import BaseEventHandler
    from protean.fields import Float, String

    domain = Domain(
        name=f"benchmark-{uuid.uuid4().hex[:6]}",
        config={
            "databases": {
                "default": {
                    "provider": "sqlite",
                    "database_uri": f"sqlite:///{args.database}",
                }
            },
            "brokers": {"default": {"provider": provider, **settings}},
            "server": {
                "default_subscription_type": "stream",
                "messages_per_tick": args.subscription_batch,
                "stream_subscription": {
                    "blocking_timeout_ms": args.blocking_timeout_ms
                },
            },
            "outbox": {
                "messages_per_tick": args.outbox_batch,
                "tick_interval": args.outbox_tick_interval,
            },
        },
    )

    @domain.aggregate
    class Order(BaseAggregate):
        number = String()

    @domain.event(part_of=Order)
    class Placed(BaseEvent):
        number = String()
        raised_at = Float()

    @domain.event_handler(part_of=Order)
    class Fulfilment(BaseEventHandler):
        @handle(Placed)
        def placed(self, event: Any) -> None:
            on_event(time.time() - event.raised_at)

    domain.init(traverse=False)
    with domain.domain_context():
        domain.setup_database()
    repository = domain.repository_for(Order)

    def place(count: int) -> None:
        with UnitOfWork():
            for _ in range(count):
                order: Any = Order(number=uuid.uuid4().hex[:8])
                order.raise_(Placed(number=order.number, raised_at=time.time()))
                repository.add(order)

    return domain, place


def forget_stored_events(domain: Domain) -> None:
    """Empty Protean's memory event store, which every stored event also goes
    to. Protean reads it for each outbox row it loads (an outbox row is an
    aggregate: `BaseDAO._sync_event_position`), and the memory store copies all
    it holds on every read, so a backlog would measure that copy; a production
    event store (Message DB) reads one row by index. The outbox has the events."""
    domain.providers["memory"]._data_reset()


def run_engine_until(domain: Domain, done: Callable[[], bool], limit: float) -> None:
    """Run Protean's engine (not test mode) until `done()` or `limit` seconds."""
    import asyncio

    from protean.server import Engine

    engine = Engine(domain)

    async def stop_when_done() -> None:
        deadline = time.monotonic() + limit
        while not done() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await engine.shutdown()

    engine.loop.create_task(stop_when_done())
    engine.run()


def drain_outbox_backlog(
    provider: str, args: argparse.Namespace, **settings: Any
) -> dict[str, float]:
    """Events/s from engine start until a backlog of stored events was handled."""
    handled: list[float] = []
    domain, place = production_domain(provider, settings, args, handled.append)
    with domain.domain_context():
        for start in range(0, args.messages, 500):
            place(min(500, args.messages - start))
            forget_stored_events(domain)
        started = time.perf_counter()
        run_engine_until(domain, lambda: len(handled) >= args.messages, args.limit)
        seconds = time.perf_counter() - started
    if len(handled) < args.messages:
        raise RuntimeError(
            f"{len(handled)} of {args.messages} handled in {seconds:.0f} s"
        )
    return {"rate": args.messages / seconds}


def steady_latency(
    provider: str, args: argparse.Namespace, **settings: Any
) -> dict[str, float]:
    """Publish-to-handler latency while events are raised at a steady rate."""
    import asyncio

    ages: list[float] = []
    domain, place = production_domain(provider, settings, args, ages.append)
    count = args.messages
    with domain.domain_context():

        async def raise_steadily() -> None:
            await asyncio.sleep(2.0)  # subscriptions joined and idle first
            start = time.monotonic()
            for n in range(count):
                await asyncio.sleep(max(0.0, start + n / args.rate - time.monotonic()))
                with domain.domain_context():
                    place(1)
                    forget_stored_events(domain)

        from protean.server import Engine

        engine = Engine(domain)

        async def stop_when_done() -> None:
            deadline = time.monotonic() + args.limit
            while len(ages) < count and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            await engine.shutdown()

        engine.loop.create_task(raise_steadily())
        engine.loop.create_task(stop_when_done())
        engine.run()
    if len(ages) < count:
        raise RuntimeError(f"{len(ages)} of {count} handled")
    ordered = sorted(ages)
    return {
        "rate": float(args.rate),
        "p50_ms": 1000 * ordered[len(ordered) // 2],
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
    }


def outbox_kafka(args: argparse.Namespace) -> dict[str, float]:
    return drain_outbox_backlog("kafka", args, BOOTSTRAP_SERVERS=args.bootstrap)


def outbox_redis(args: argparse.Namespace) -> dict[str, float]:
    return drain_outbox_backlog("redis", args, URI=args.redis_url)


def latency_kafka(args: argparse.Namespace) -> dict[str, float]:
    return steady_latency("kafka", args, BOOTSTRAP_SERVERS=args.bootstrap)


def latency_redis(args: argparse.Namespace) -> dict[str, float]:
    return steady_latency("redis", args, URI=args.redis_url)


def outbox_rabbitmq(args: argparse.Namespace) -> dict[str, float]:
    return drain_outbox_backlog("rabbitmq", args, URI=args.rabbitmq_uri)


def latency_rabbitmq(args: argparse.Namespace) -> dict[str, float]:
    return steady_latency("rabbitmq", args, URI=args.rabbitmq_uri)


# -- RabbitMQ -------------------------------------------------------------------


def raw_pika_publish(args: argparse.Namespace) -> float:
    """pika with the adapter's guarantees: a confirm per message, persistent,
    mandatory, to a fanout exchange bound to a quorum queue."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(args.rabbitmq_uri))
    channel = connection.channel()
    name = f"bench-raw-{uuid.uuid4().hex[:8]}"
    channel.exchange_declare(name, "fanout", durable=True)
    channel.queue_declare(name, durable=True, arguments={"x-queue-type": "quorum"})
    channel.queue_bind(name, name)
    channel.confirm_delivery()
    body = json.dumps(PAYLOAD).encode()
    properties = pika.BasicProperties(delivery_mode=2, message_id="m")

    def work() -> None:
        for _ in range(args.messages):
            channel.basic_publish(name, "", body, properties, mandatory=True)

    rate = timed(args.messages, work)
    channel.queue_delete(name)
    channel.exchange_delete(name)
    connection.close()
    return rate


def raw_pika_consume(args: argparse.Namespace) -> float:
    """pika: consume with a prefetch of 100, ack each message."""
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(args.rabbitmq_uri))
    channel = connection.channel()
    name = f"bench-raw-{uuid.uuid4().hex[:8]}"
    channel.queue_declare(name, durable=True, arguments={"x-queue-type": "quorum"})
    channel.confirm_delivery()
    body = json.dumps(PAYLOAD).encode()
    for _ in range(args.messages):
        channel.basic_publish("", name, body, pika.BasicProperties(delivery_mode=2))
    channel.basic_qos(prefetch_count=BATCH)
    received = 0

    def work() -> None:
        nonlocal received
        for method, _, message in channel.consume(name, inactivity_timeout=5):
            if method is None:
                raise RuntimeError("the queue stopped delivering")
            json.loads(message)
            channel.basic_ack(method.delivery_tag)
            received += 1
            if received == args.messages:
                break

    rate = timed(args.messages, work)
    channel.cancel()
    channel.queue_delete(name)
    connection.close()
    return rate


def rabbitmq_publish(args: argparse.Namespace) -> float:
    """Returns once RabbitMQ confirmed each message, written to a group's
    quorum queue like the raw client's."""
    return publish_each("rabbitmq", args, group=True, URI=args.rabbitmq_uri)


def rabbitmq_publish_many(args: argparse.Namespace) -> float:
    return publish_batches("rabbitmq", args, group=True, URI=args.rabbitmq_uri)


def rabbitmq_read_ack(args: argparse.Namespace) -> float:
    """Messages another broker published, as in production: the reader cannot
    know from its own publishes that more are on their way."""
    stream = f"bench::read-{uuid.uuid4().hex[:8]}"
    with protean_broker("rabbitmq", URI=args.rabbitmq_uri) as broker:
        group = f"bench-{uuid.uuid4().hex[:8]}"
        broker._ensure_group(group, stream)  # the group's queue takes every message
        with protean_broker("rabbitmq", URI=args.rabbitmq_uri) as producer:
            fill(producer, stream, args.messages)
        return read_and_ack(broker, stream, args.messages, group)


def engine_rabbitmq(args: argparse.Namespace) -> float:
    return drain_with_engine("rabbitmq", args, URI=args.rabbitmq_uri)


# -- Amazon SQS -----------------------------------------------------------------

SQS_BATCH = 10
"""SQS's most entries per SendMessageBatch and messages per ReceiveMessage."""


def sqs_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The adapter's settings as a user would give them: the defaults (one
    group listing per GROUP_DISCOVERY_MS, 1 s), and a prefix of this process's
    own, so no other run's queues are listed and all of its can be deleted."""
    return {"ENDPOINT_URL": args.sqs_endpoint, "QUEUE_PREFIX": args.queue_prefix}


def sqs_credentials() -> None:
    """ElasticMQ checks no signature, but boto3 signs every call: any
    credentials and region do, given through boto3's own chain; a real
    endpoint uses the environment's."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "elasticmq")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "elasticmq")
    os.environ.setdefault("AWS_DEFAULT_REGION", "elasticmq")


def sqs_client(args: argparse.Namespace) -> Any:
    import boto3

    sqs_credentials()
    return boto3.client("sqs", endpoint_url=args.sqs_endpoint)


@contextmanager
def sqs_queue(args: argparse.Namespace) -> Iterator[tuple[Any, str]]:
    """A raw client and a queue of its own, deleted afterwards."""
    client = sqs_client(args)
    name = f"{args.queue_prefix}raw-{uuid.uuid4().hex[:8]}"
    url = client.create_queue(QueueName=name)["QueueUrl"]
    try:
        yield client, url
    finally:
        client.delete_queue(QueueUrl=url)


def delete_run_queues(args: argparse.Namespace) -> None:
    """Delete the queues the adapter made under this run's prefix."""
    client = sqs_client(args)
    listed = client.list_queues(QueueNamePrefix=args.queue_prefix, MaxResults=1000)
    for url in listed.get("QueueUrls", []):
        client.delete_queue(QueueUrl=url)


def raw_sqs_send(args: argparse.Namespace) -> float:
    """boto3: one SendMessage per message, from one thread; SQS has stored
    the message when the call returns."""
    body = json.dumps(PAYLOAD)
    with sqs_queue(args) as (client, url):

        def work() -> None:
            for _ in range(args.messages):
                client.send_message(QueueUrl=url, MessageBody=body)

        return timed(args.messages, work)


def raw_sqs_send_batch(args: argparse.Namespace) -> float:
    """boto3: SendMessageBatch of 10, each reply checked for refused entries."""
    body = json.dumps(PAYLOAD)
    entries = [{"Id": str(n), "MessageBody": body} for n in range(SQS_BATCH)]
    with sqs_queue(args) as (client, url):

        def work() -> None:
            for start in range(0, args.messages, SQS_BATCH):
                chunk = entries[: min(SQS_BATCH, args.messages - start)]
                reply = client.send_message_batch(QueueUrl=url, Entries=chunk)
                if reply.get("Failed"):
                    raise RuntimeError(f"SQS refused {reply['Failed']}")

        return timed(args.messages, work)


def raw_sqs_receive(args: argparse.Namespace) -> float:
    """boto3: ReceiveMessage of 10, then one DeleteMessageBatch for them."""
    body = json.dumps(PAYLOAD)
    entries = [{"Id": str(n), "MessageBody": body} for n in range(SQS_BATCH)]
    with sqs_queue(args) as (client, url):
        for start in range(0, args.messages, SQS_BATCH):
            chunk = entries[: min(SQS_BATCH, args.messages - start)]
            client.send_message_batch(QueueUrl=url, Entries=chunk)
        received = 0

        def work() -> None:
            nonlocal received
            while received < args.messages:
                reply = client.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=SQS_BATCH, WaitTimeSeconds=1
                )
                messages = reply.get("Messages", [])
                if not messages:
                    continue
                for message in messages:
                    json.loads(message["Body"])
                deleted = client.delete_message_batch(
                    QueueUrl=url,
                    Entries=[
                        {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
                        for n, m in enumerate(messages)
                    ],
                )
                if deleted.get("Failed"):
                    raise RuntimeError(f"SQS did not delete {deleted['Failed']}")
                received += len(messages)

        return timed(args.messages, work)


def sqs_publish(args: argparse.Namespace) -> float:
    """Returns once SQS stored each message in the one group's queue: a
    fan-out of one, a SendMessageBatch per message."""
    sqs_credentials()
    try:
        return publish_each("sqs", args, group=True, **sqs_settings(args))
    finally:
        delete_run_queues(args)


def sqs_publish_many(args: argparse.Namespace) -> float:
    """Ten SendMessageBatch calls of 10 per batch of 100, to the one group."""
    sqs_credentials()
    try:
        return publish_batches("sqs", args, group=True, **sqs_settings(args))
    finally:
        delete_run_queues(args)


def sqs_read_ack(args: argparse.Namespace) -> float:
    """Messages another broker published into the group's queue; each ack is
    one DeleteMessage, as Protean acks one message at a time."""
    sqs_credentials()
    stream = f"bench::read-{uuid.uuid4().hex[:8]}"
    try:
        with protean_broker("sqs", **sqs_settings(args)) as broker:
            group = f"bench-{uuid.uuid4().hex[:8]}"
            broker._ensure_group(group, stream)  # the group's queue takes every one
            with protean_broker("sqs", **sqs_settings(args)) as producer:
                fill(producer, stream, args.messages)
            return read_and_ack(broker, stream, args.messages, group)
    finally:
        delete_run_queues(args)


def engine_sqs(args: argparse.Namespace) -> float:
    """Published before the subscription starts, so the group's queue is
    made on the engine's first run and takes them from the holding queue."""
    sqs_credentials()
    try:
        return drain_with_engine("sqs", args, **sqs_settings(args))
    finally:
        delete_run_queues(args)


def create_topic(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1)])[topic].result(timeout=30)


SCENARIOS: dict[str, Callable[[argparse.Namespace], float | dict[str, float]]] = {
    "raw_publish": raw_publish,
    "kafka_publish": kafka_publish,
    "kafka_publish_many": kafka_publish_many,
    "redis_publish": redis_publish,
    "raw_consume": raw_consume,
    "kafka_read_ack": kafka_read_ack,
    "redis_read_ack": redis_read_ack,
    "engine": engine,
    "engine_redis": engine_redis,
    "outbox_kafka": outbox_kafka,
    "outbox_redis": outbox_redis,
    "latency_kafka": latency_kafka,
    "latency_redis": latency_redis,
    "outbox_rabbitmq": outbox_rabbitmq,
    "latency_rabbitmq": latency_rabbitmq,
    "raw_pika_publish": raw_pika_publish,
    "rabbitmq_publish": rabbitmq_publish,
    "rabbitmq_publish_many": rabbitmq_publish_many,
    "raw_pika_consume": raw_pika_consume,
    "rabbitmq_read_ack": rabbitmq_read_ack,
    "engine_rabbitmq": engine_rabbitmq,
    "raw_sqs_send": raw_sqs_send,
    "raw_sqs_send_batch": raw_sqs_send_batch,
    "sqs_publish": sqs_publish,
    "sqs_publish_many": sqs_publish_many,
    "raw_sqs_receive": raw_sqs_receive,
    "sqs_read_ack": sqs_read_ack,
    "engine_sqs": engine_sqs,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--messages", type=int, required=True)
    parser.add_argument("--bootstrap", default="")
    parser.add_argument("--rabbitmq-uri", default="")
    parser.add_argument("--sqs-endpoint", default="")
    # SQS queues of this process's own: it deletes them when it is done.
    parser.add_argument("--queue-prefix", default=f"b{uuid.uuid4().hex[:12]}-")
    parser.add_argument("--redis-url", required=True)
    # Protean's settings on the production path (outbox and stream
    # subscription); the defaults are Protean 0.18's.
    parser.add_argument("--subscription-batch", type=int, default=100)
    parser.add_argument("--blocking-timeout-ms", type=int, default=100)
    parser.add_argument("--outbox-batch", type=int, default=50)
    parser.add_argument("--outbox-tick-interval", type=float, default=0.01)
    parser.add_argument("--database", help="SQLite file of the production path")
    parser.add_argument("--rate", type=float, default=200.0, help="events/s raised")
    parser.add_argument("--limit", type=float, default=600.0, help="seconds at most")
    args = parser.parse_args()
    started = time.perf_counter()
    measured = SCENARIOS[args.scenario](args)
    figures = measured if isinstance(measured, dict) else {"rate": measured}
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                **figures,
                "peak_rss_mib": peak_kib / 1024,
                "seconds": time.perf_counter() - started,
            }
        )
    )


if __name__ == "__main__":
    main()
