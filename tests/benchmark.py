"""Benchmark an adapter against its raw client and Protean's Redis broker.

    .venv/bin/python -m tests.benchmark [--messages 10000 100000] [--repeat 3]
    .venv/bin/python -m tests.benchmark --backend rabbitmq [--messages 10000 100000]
    .venv/bin/python -m tests.benchmark --backend sqs --messages 10000
    .venv/bin/python -m tests.benchmark --production [--backend rabbitmq] [--rate 200]

Renders the Kafka, RabbitMQ and SQS variants, installs them non-editable with
Protean, pika and the Redis client in a fresh virtual environment, starts the
backend's server (the harness, or the one named by KAFKA_BOOTSTRAP_SERVERS,
RABBITMQ_URI or SQS_ENDPOINT_URL) and a throw-away `redis-server`, then runs
each scenario `--repeat` times per size, each run in a process of its own, and
prints medians side by side. Not part of the test run: numbers, not pass or fail.

`--production` measures instead what users run: an aggregate's events through
Protean's outbox (in SQLite), `OutboxProcessor`, the broker, a
`StreamSubscription` and an event handler, for both brokers with the same
Protean settings (Protean's defaults, which the README recommends, and larger
outbox batches without a pause; or `--settings`): events/s for a stored
backlog, and store-to-handler latency while events are raised at a steady rate.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import make_venv, redis_server, snapshot_template
from tests.kafka_server import KafkaServer
from tests.rabbitmq_server import RabbitMQNode
from tests.sqs_server import ElasticMQServer

WORKER = Path(__file__).with_name("benchmark_worker.py")
KAFKA_ORDER = [
    "raw_publish",
    "kafka_publish",
    "kafka_publish_many",
    "redis_publish",
    "raw_consume",
    "kafka_read_ack",
    "redis_read_ack",
    "engine",
    "engine_redis",
]
LABELS = {
    "raw_publish": "raw confluent-kafka: produce + flush per message",
    "kafka_publish": "adapter: broker.publish (confirmed)",
    "kafka_publish_many": "adapter: publish_many, batches of 100 (confirmed)",
    "redis_publish": "Protean Redis broker: broker.publish",
    "raw_consume": "raw confluent-kafka: consume 100 + commit per batch",
    "kafka_read_ack": "adapter: read 100 + ack each",
    "redis_read_ack": "Protean Redis broker: read 100 + ack each",
    "engine": "adapter through Protean's Engine, end to end (2,000 msgs)",
    "engine_redis": "Redis broker through Protean's Engine (2,000 msgs)",
    "raw_pika_publish": "raw pika: publish, a confirm per message",
    "rabbitmq_publish": "adapter: broker.publish (confirmed)",
    "rabbitmq_publish_many": "adapter: publish_many, batches of 100 (confirmed)",
    "raw_pika_consume": "raw pika: consume, prefetch 100, ack each",
    "rabbitmq_read_ack": "adapter: read 100 + ack each",
    "engine_rabbitmq": "adapter through Protean's Engine, end to end (2,000 msgs)",
    "raw_sqs_send": "raw boto3: send_message per message",
    "raw_sqs_send_batch": "raw boto3: send_message_batch of 10",
    "sqs_publish": "adapter: broker.publish (one group)",
    "sqs_publish_many": "adapter: publish_many, batches of 100 (one group)",
    "raw_sqs_receive": "raw boto3: receive 10 + delete_message_batch",
    "sqs_read_ack": "adapter: read 100 + ack each",
    "engine_sqs": "adapter through Protean's Engine, end to end (2,000 msgs)",
}
RABBITMQ_ORDER = [
    "raw_pika_publish",
    "rabbitmq_publish",
    "rabbitmq_publish_many",
    "redis_publish",
    "raw_pika_consume",
    "rabbitmq_read_ack",
    "redis_read_ack",
    "engine_rabbitmq",
    "engine_redis",
]
SQS_ORDER = [
    "raw_sqs_send",
    "raw_sqs_send_batch",
    "sqs_publish",
    "sqs_publish_many",
    "redis_publish",
    "raw_sqs_receive",
    "sqs_read_ack",
    "redis_read_ack",
    "engine_sqs",
    "engine_redis",
]
ORDER = {"kafka": KAFKA_ORDER, "rabbitmq": RABBITMQ_ORDER, "sqs": SQS_ORDER}
PRODUCTION_LABELS = {
    "kafka": "Kafka adapter",
    "rabbitmq": "RabbitMQ adapter",
    "redis": "Protean Redis broker",
}
# (numerator, denominator, target)
RATIOS = [
    ("kafka_publish", "raw_publish", 0.9),
    ("kafka_read_ack", "redis_read_ack", 1.5),
    ("kafka_read_ack", "raw_consume", None),
    ("engine", "engine_redis", None),
    ("rabbitmq_publish", "raw_pika_publish", 0.9),
    ("rabbitmq_publish_many", "rabbitmq_publish", 5.0),
    ("rabbitmq_read_ack", "redis_read_ack", 2.0),
    ("rabbitmq_read_ack", "raw_pika_consume", None),
    ("engine_rabbitmq", "engine_redis", None),
    # boto3 spends about 1 ms of CPU per call, which the adapter cannot save:
    # its publish is one SendMessageBatch per group queue (the raw call's
    # cost, with two message attributes and its JSON on top) and a ListQueues
    # per GROUP_DISCOVERY_MS; publish_many makes SendMessageBatch calls of 10
    # as the raw batches do, but there the attributes weigh: raw batches of
    # 10 that carry the adapter's two attributes per entry ran at 0.70x the
    # plain ones on ElasticMQ (more client CPU, 1.5 against 1.25 ms a call,
    # and more server work). Its read makes the raw receives, but each ack is
    # a DeleteMessage of its own (Protean acks one message at a time): 11
    # calls per 10 messages against the raw client's 2, at best about 0.2x.
    ("sqs_publish", "raw_sqs_send", 0.8),
    ("sqs_publish_many", "raw_sqs_send_batch", 0.65),
    ("sqs_read_ack", "raw_sqs_receive", 0.15),
    ("sqs_read_ack", "redis_read_ack", None),
    ("engine_sqs", "engine_redis", None),
]


@contextmanager
def kafka(workdir: Path) -> Iterator[str]:
    """The broker KAFKA_BOOTSTRAP_SERVERS names, or one from the harness."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    with KafkaServer(workdir / "kafka", heap="1g") as server:
        yield server.bootstrap_servers


@contextmanager
def rabbitmq(workdir: Path) -> Iterator[str]:
    """The node RABBITMQ_URI names, or one from the harness."""
    configured = os.environ.get("RABBITMQ_URI")
    if configured:
        yield configured
        return
    with RabbitMQNode(workdir / "rabbitmq") as node:
        yield node.uri


@contextmanager
def sqs(workdir: Path) -> Iterator[str]:
    """The endpoint SQS_ENDPOINT_URL names, or an in-memory ElasticMQ from
    the runner."""
    configured = os.environ.get("SQS_ENDPOINT_URL")
    if configured:
        yield configured
        return
    with ElasticMQServer(workdir / "elasticmq", heap="512m") as server:
        yield server.endpoint_url


SERVERS = {"kafka": kafka, "rabbitmq": rabbitmq, "sqs": sqs}
"""Each backend's server for the benchmark, by its --backend name."""
SERVER_OPTIONS = {
    "kafka": "--bootstrap",
    "rabbitmq": "--rabbitmq-uri",
    "sqs": "--sqs-endpoint",
}
"""The worker's option that names the backend's server."""
# A fresh server is still warming up (a JVM compiling its hot paths): the
# first scenario would pay for that alone. ElasticMQ's first minute runs
# about three times slower than its next, so its scenarios that make the
# most calls are run for at least this many seconds first.
WARM_UP = {"kafka": 0.0, "rabbitmq": 0.0, "sqs": 45.0}
WARM_UP_SCENARIOS = {
    "sqs": ["raw_sqs_send", "sqs_publish", "raw_sqs_receive", "sqs_read_ack"]
}


def prepare(workdir: Path) -> Path:
    """Render each backend's variant and install them; return the
    environment's Python."""
    import copier

    template = snapshot_template(workdir / "template")
    packages = []
    for backend in ("kafka", "rabbitmq", "sqs"):
        package = workdir / f"protean-{backend}-broker"
        copier.run_copy(
            str(template),
            package,
            data={"broker_name": backend, "backend": backend},
            defaults=True,
            quiet=True,
            vcs_ref="HEAD",
        )
        packages.append(str(package))
    bin_dir = make_venv(
        workdir / "venv", *packages, "protean[redis,sqlite]==0.18.0", "pika==1.4.4"
    )
    return bin_dir / "python"


def run_scenario(
    python: Path,
    scenario: str,
    messages: int,
    server: str,
    redis_url: str,
    *options: str,
    backend: str = "kafka",
) -> dict[str, float]:
    result = subprocess.run(
        [
            str(python),
            str(WORKER),
            scenario,
            "--messages",
            str(messages),
            SERVER_OPTIONS[backend],
            server,
            "--redis-url",
            redis_url,
            *options,
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if result.returncode != 0:
        sys.exit(f"{scenario} failed:\n{result.stderr[-4000:]}")
    measured: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backend", choices=sorted(ORDER), default="kafka")
    parser.add_argument("--only", nargs="+", choices=sorted(LABELS))
    parser.add_argument("--production", action="store_true")
    parser.add_argument("--backlog", type=int, default=20_000)
    parser.add_argument("--steady", type=int, default=2_000, help="events raised")
    parser.add_argument("--rate", type=float, default=200.0, help="events/s raised")
    parser.add_argument(
        "--settings",
        nargs=4,
        type=float,
        metavar=("OUTBOX_BATCH", "OUTBOX_TICK", "READ_BATCH", "READ_WAIT_MS"),
        help="one set of Protean settings instead of the two in PROFILES",
    )
    args = parser.parse_args()
    if args.production and args.backend not in PRODUCTION_LABELS:
        parser.error(f"--production is not measured for {args.backend}")
    if args.production:
        production(args)
        return

    args.only = [s for s in ORDER[args.backend] if s in (args.only or LABELS)]
    with tempfile.TemporaryDirectory(prefix="protean-bench-") as tmp:
        workdir = Path(tmp)
        print("installing the rendered packages ...", file=sys.stderr)
        python = prepare(workdir)
        results: dict[tuple[str, int], list[dict[str, float]]] = {}
        backend = args.backend
        with SERVERS[backend](workdir) as server, redis_server(workdir) as redis_url:
            print(f"warming up {backend} ...", file=sys.stderr)
            warm = WARM_UP_SCENARIOS.get(backend, args.only[:2])
            deadline = time.monotonic() + WARM_UP[backend]
            while True:
                for scenario in warm:
                    run_scenario(
                        python, scenario, 2_000, server, redis_url, backend=backend
                    )
                if time.monotonic() >= deadline:
                    break
            for messages in args.messages:
                # Interleave the scenarios so slow drift on a noisy machine hits all.
                for repetition in range(args.repeat):
                    for scenario in args.only:
                        print(
                            f"{scenario} x{messages} #{repetition + 1}", file=sys.stderr
                        )
                        results.setdefault((scenario, messages), []).append(
                            run_scenario(
                                python,
                                scenario,
                                messages,
                                server,
                                redis_url,
                                backend=backend,
                            )
                        )
    report(results, args)


# Protean's settings on its production path: [outbox] messages_per_tick and
# tick_interval, [server] messages_per_tick and
# [server.stream_subscription] blocking_timeout_ms.
PROFILES = {
    "Protean 0.18's defaults (recommended)": (50, 0.01, 100, 100),
    "larger outbox batches, no pause": (500, 0.0, 100, 100),
}


def production(args: argparse.Namespace) -> None:
    profiles = dict(PROFILES)
    if args.settings:
        profiles = {"given": tuple(args.settings)}
    sizes = {"outbox": args.backlog, "latency": args.steady}
    backend = args.backend
    scenarios = [
        f"{kind}_{broker}"
        for kind in ("outbox", "latency")
        for broker in (backend, "redis")
    ]
    runs: dict[tuple[str, str], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="protean-bench-") as tmp:
        workdir = Path(tmp)
        print("installing the rendered packages ...", file=sys.stderr)
        python = prepare(workdir)
        with SERVERS[backend](workdir) as server, redis_server(workdir) as redis_url:
            for repetition in range(args.repeat):
                for name, (batch, interval, reads, wait) in profiles.items():
                    options = [
                        *("--outbox-batch", f"{batch:g}"),
                        *("--outbox-tick-interval", f"{interval:g}"),
                        *("--subscription-batch", f"{reads:g}"),
                        *("--blocking-timeout-ms", f"{wait:g}"),
                        *("--rate", str(args.rate)),
                    ]
                    for scenario in scenarios:
                        size = sizes[scenario.split("_")[0]]
                        print(
                            f"{name}: {scenario} x{size} #{repetition + 1}",
                            file=sys.stderr,
                        )
                        database = workdir / f"{scenario}-{repetition}.sqlite"
                        measured = run_scenario(
                            python,
                            scenario,
                            size,
                            server,
                            redis_url,
                            *options,
                            *("--database", str(database)),
                            backend=backend,
                        )
                        print(f"  {json.dumps(measured)}", file=sys.stderr)
                        runs.setdefault((name, scenario), []).append(measured)
                        database.unlink()

    def cells(name: str, scenario: str, key: str) -> str:
        values = [run[key] for run in runs[(name, scenario)]]
        digits = 1 if key == "rate" else 0
        spread = f" ({min(values):,.{digits}f}-{max(values):,.{digits}f})"
        return f"{statistics.median(values):,.{digits}f}" + spread * (len(values) > 1)

    def ratio(name: str, key: str, scenario: str) -> str:
        each = [
            adapter[key] / redis[key]
            for adapter, redis in zip(
                runs[(name, f"{scenario}_{backend}")],
                runs[(name, f"{scenario}_redis")],
                strict=True,
            )
        ]
        return f"{statistics.median(each):.2f}x ({min(each):.2f}-{max(each):.2f})"

    print(
        f"\nmedian (min-max) of {args.repeat} runs; settings are [outbox] "
        "messages_per_tick / tick_interval, [server] messages_per_tick / "
        "blocking_timeout_ms\n"
    )
    print(
        f"| settings | broker | {args.backlog:,}-event backlog, events/s "
        f"| p50 ms at {args.rate:.0f}/s | p99 ms at {args.rate:.0f}/s |"
    )
    print("| --- | --- | --- | --- | --- |")
    for name, values in profiles.items():
        label = f"{name}: {' / '.join(f'{v:g}' for v in values)}"
        for broker in (backend, "redis"):
            print(
                f"| {label} | {PRODUCTION_LABELS[broker]} "
                f"| {cells(name, f'outbox_{broker}', 'rate')} "
                f"| {cells(name, f'latency_{broker}', 'p50_ms')} "
                f"| {cells(name, f'latency_{broker}', 'p99_ms')} |"
            )
    print()
    adapter = PRODUCTION_LABELS[backend].split()[0]
    for name in profiles:
        # Ratios of runs made one after the other, so load hits both alike.
        print(
            f"{name}: events/s {adapter} / Redis {ratio(name, 'rate', 'outbox')} "
            f"(target >= 1.0x); p99 {adapter} / Redis "
            f"{ratio(name, 'p99_ms', 'latency')} (target <= 2.0x)"
        )


def report(
    results: dict[tuple[str, int], list[dict[str, float]]], args: argparse.Namespace
) -> None:
    def median(scenario: str, messages: int, key: str) -> float:
        return statistics.median(run[key] for run in results[(scenario, messages)])

    sizes = args.messages
    print(f"\nmedian of {args.repeat} runs; msgs/s and peak RSS (MiB) per process\n")
    header = (
        "| scenario | "
        + " | ".join(f"{n:,} msgs/s | {n:,} peak MiB" for n in sizes)
        + " |"
    )
    print(header)
    print("|" + " --- |" * (1 + 2 * len(sizes)))
    for scenario in args.only:
        cells = [
            f"{median(scenario, n, 'rate'):,.0f} | "
            f"{median(scenario, n, 'peak_rss_mib'):,.0f}"
            for n in sizes
        ]
        print(f"| {LABELS[scenario]} | " + " | ".join(cells) + " |")
    print()
    for numerator, denominator, target in RATIOS:
        if numerator not in args.only or denominator not in args.only:
            continue
        for n in sizes:
            ratio = median(numerator, n, "rate") / median(denominator, n, "rate")
            verdict = ""
            if target is not None:
                met = "met" if ratio >= target else "MISSED"
                verdict = f" (target >= {target:g}x: {met})"
            print(f"{numerator} / {denominator} at {n:,}: {ratio:.2f}x{verdict}")


if __name__ == "__main__":
    try:
        main()
    except RuntimeError as error:  # a server the benchmark needs is missing
        sys.exit(str(error))
