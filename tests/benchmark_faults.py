"""Print the fault targets of the Kafka adapter: numbers, not pass or fail.

Run with a rendered Kafka package's interpreter, from that package's folder:

    cd /tmp/k1 && KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 \\
        .venv/bin/python /path/to/template/tests/benchmark_faults.py [--backlog 300000]

The join scenario starts a second node with Kafka's production defaults
through the package's own tests/kafka/kafka_server.py.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import sys
import time
import uuid
from typing import Any

from confluent_kafka import Producer
from protean import Domain

sys.path.insert(0, os.getcwd())

FAST: dict[str, Any] = {
    "retry_delay": 0.01,
    "OPERATION_TIMEOUT_MS": 10000,
    "CONSUMER_CONFIG": {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500},
}


def broker_for(provider: str, bootstrap: str, **overrides: Any) -> Any:
    domain = Domain(
        name=f"bench-{uuid.uuid4().hex[:6]}",
        config={
            "brokers": {
                "default": {
                    "provider": provider,
                    "BOOTSTRAP_SERVERS": bootstrap,
                    **FAST,
                    **overrides,
                }
            }
        },
    )
    domain.init(traverse=False)
    return domain.brokers["default"]


def tag(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def drain(broker: Any, stream: str, group: str, limit: float) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        batch = broker.read_blocking(stream, group, "bench", 500, 500)
        if not batch and got:
            break
        for identifier, _ in batch:
            broker.ack(stream, identifier, group)
            got.append(identifier)
    return got


def hostile(provider: str, bootstrap: str, normal: int) -> None:
    every = 100
    broker = broker_for(provider, bootstrap, COMMIT_EVERY=every)
    stream, group = tag("bench::hostile"), tag("group")
    topic = broker.names.stream_topic(stream)
    broker.publish(stream, {"n": -1})
    raw = Producer({"bootstrap.servers": bootstrap})
    twin = [("message-id", b"same-id")]
    for value, headers in [
        (b'{"a": 1}', twin),
        (b'{"a": 2}', twin),
        (b"[" * 100_000, None),
        (b"\xff", None),
        (b"{}", None),
    ]:
        raw.produce(topic, value, headers=headers)
    raw.flush(10)
    ids: list[str] = []
    for start in range(0, normal, 1000):
        ids += broker.publish_many(
            stream, [{"n": n} for n in range(start, start + 1000)]
        )
    got = set(drain(broker, stream, group, 120))
    delivered = len(set(ids) & got)
    # A crash: the consumers leave the group without the adapter's final commit.
    for consumer in broker._consumers.values():
        consumer.consumer.close()
    broker._consumers.clear()
    again = broker_for(provider, bootstrap, COMMIT_EVERY=every)
    redelivered = len(set(ids) & set(drain(again, stream, group, 30)))
    print(
        f"hostile: {delivered}/{len(ids)} normal delivered; after a restart "
        f"{redelivered} again (target <= COMMIT_EVERY={every})"
    )
    again.close()


def joins(provider: str, production_bootstrap: str) -> None:
    broker = broker_for(provider, production_bootstrap)
    running, group = tag("running"), tag("group")
    broker.publish(running, {"n": 0})
    drain(broker, running, group, 30)
    streams = [tag(f"s{n}") for n in range(20)]
    for stream in streams:
        broker.publish(stream, {"n": 1})
    pairs = [(tag("handler"), stream) for stream in streams]
    slowest = 0.0
    started = time.monotonic()
    for handler, stream in pairs:
        broker._ensure_group(handler, stream)
        began = time.monotonic()
        broker.read_blocking(running, group, "c", timeout_ms=100)
        slowest = max(slowest, time.monotonic() - began)
    ensured = time.monotonic() - started
    waiting = list(pairs)
    while waiting and time.monotonic() - started < 60:
        waiting = [p for p in waiting if not broker.read(p[1], p[0], 1)]
    first = time.monotonic() - started
    print(
        f"joins at production defaults: 20 ensured in {ensured:.2f}s (target <= 3), "
        f"slowest read_blocking(100ms) {slowest:.2f}s (target <= 1), "
        f"all read their first message after {first:.1f}s (target <= 20), "
        f"{len(waiting)} never"
    )
    broker.close()


def unreachable(provider: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    broker = broker_for(
        provider,
        f"127.0.0.1:{port}",
        PUBLISH_TIMEOUT_MS=3000,
        OPERATION_TIMEOUT_MS=15000,
    )
    results = []
    for name, call in [
        (
            "read_blocking(timeout_ms=1000)",
            lambda: broker.read_blocking("s", "g", "c", timeout_ms=1000),
        ),
        ("read() [READ_TIMEOUT_MS=2000]", lambda: broker.read("s", "g", 1)),
        ("publish [PUBLISH_TIMEOUT_MS=3000]", lambda: broker.publish("s", {"n": 1})),
    ]:
        started = time.monotonic()
        try:
            call()
            outcome = "returned"
        except Exception as exc:
            outcome = f"raised {type(exc).__name__}"
        results.append(f"{name} {outcome} after {time.monotonic() - started:.2f}s")
    print("unreachable cluster (target: timeout + 1 s): " + "; ".join(results))


def idle(provider: str, bootstrap: str) -> None:
    broker = broker_for(provider, bootstrap)
    stream, group = tag("bench::idle"), tag("group")
    broker.publish(stream, {"n": 0})
    drain(broker, stream, group, 20)
    admin = broker._cluster._admin
    calls = 0

    class Counting:
        def __getattr__(self, name: str) -> Any:
            nonlocal calls
            calls += 1
            return getattr(admin, name)

    broker._cluster._admin = Counting()
    started = time.monotonic()
    reads = 0
    while time.monotonic() - started < 5:
        broker.read(stream, group, 1)
        reads += 1
        time.sleep(0.01)
    elapsed = time.monotonic() - started
    print(
        f"idle read(): {reads / elapsed:.0f} reads/s, {calls / elapsed:.2f} "
        f"adapter requests to the cluster per second (target <= 1)"
    )
    broker._cluster._admin = admin
    broker.close()


def process_figures() -> tuple[int, int, float]:
    """Native threads (librdkafka's too), open descriptors and RSS in MiB."""
    threads, rss = 0, 0.0
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("Threads:"):
                threads = int(line.split()[1])
            elif line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    return threads, len(os.listdir("/proc/self/fd")), rss


def lagging(provider: str, bootstrap: str, backlog: int) -> None:
    broker = broker_for(provider, bootstrap)
    stream = tag("bench::backlog")
    for start in range(0, backlog, 5000):
        broker.publish_many(
            stream, [{"n": n, "pad": "x" * 100} for n in range(start, start + 5000)]
        )

    *_, before = process_figures()
    groups = [tag("lagging") for _ in range(6)]
    for group in groups:
        broker.read_blocking(stream, group, "c", 10000, 1)
    time.sleep(10)  # let librdkafka prefetch what it will
    for group in groups:
        broker.read(stream, group, 1)
    *_, after = process_figures()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"6 lagging groups over {backlog} records: +{after - before:.0f} MiB RSS "
        f"(target <= 150; peak {peak:.0f} MiB)"
    )
    broker.close()


def subscriptions(provider: str, bootstrap: str, count: int) -> None:
    """As Protean's engine subscribes: one group per subscriber, one stream each."""
    broker = broker_for(provider, bootstrap)
    pairs = [(tag("bench::sub"), tag("subscriber")) for _ in range(count)]
    for stream, _ in pairs:
        broker.publish(stream, {"n": 1})
    threads, fds, rss = process_figures()
    started = time.monotonic()
    for stream, group in pairs:
        broker._ensure_group(group, stream)
    ensured = time.monotonic() - started
    first = [len(broker.read_blocking(s, g, "c", 20000, 1)) for s, g in pairs]
    took = time.monotonic() - started
    more_threads, more_fds, more_rss = process_figures()
    print(
        f"{count} subscriptions: ensured in {ensured:.2f} s, "
        f"{sum(first)}/{count} first messages by {took:.1f} s; per subscription "
        f"{(more_threads - threads) / count:.1f} threads, "
        f"{(more_fds - fds) / count:.1f} descriptors, "
        f"{(more_rss - rss) / count:.2f} MiB RSS"
    )
    broker.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--provider", default="kafka")
    parser.add_argument("--normal", type=int, default=20_000)
    parser.add_argument("--backlog", type=int, default=300_000)
    parser.add_argument("--subscriptions", type=int, default=100)
    parser.add_argument("--skip", nargs="*", default=[])
    args = parser.parse_args()
    bootstrap = os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    if "hostile" not in args.skip:
        hostile(args.provider, bootstrap, args.normal)
    if "unreachable" not in args.skip:
        unreachable(args.provider)
    if "idle" not in args.skip:
        idle(args.provider, bootstrap)
    if "subscriptions" not in args.skip:
        subscriptions(args.provider, bootstrap, args.subscriptions)
    if "lagging" not in args.skip:
        lagging(args.provider, bootstrap, args.backlog)
    if "joins" not in args.skip:
        from tests.kafka.kafka_server import KafkaServer

        with KafkaServer(production_defaults=True) as server:
            joins(args.provider, server.bootstrap_servers)


if __name__ == "__main__":
    main()
