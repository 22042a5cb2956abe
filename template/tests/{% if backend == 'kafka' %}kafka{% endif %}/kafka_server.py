"""Run a real Apache Kafka node (KRaft) for the tests, without Docker.

Needs a JDK 17+ and Maven: the broker's jars come from Maven Central through
``pom.xml`` next to this file (one ``mvn`` run, cached under
``~/.cache/protean-broker-template`` or ``KAFKA_HARNESS_CACHE``, for every
package of this user), and each node runs as a plain ``java`` child process on
free loopback ports.

From tests (``KafkaCluster(3)`` likewise gives three nodes)::

    with KafkaServer() as kafka:
        produce_to(kafka.bootstrap_servers)

    # Clients must sign in with SASL/PLAIN as one of these users:
    with KafkaServer(sasl_users={"alice": "alice-secret"}) as kafka:
        produce_to(kafka.bootstrap_servers, kafka.client_config("alice"))

From a shell, a long-lived broker for development, this package's own (its
data in the cache above, below ``dev-nodes/<package folder>-<hash>/``)::

    python -m tests.kafka.kafka_server fetch   # resolve the jars only
    python -m tests.kafka.kafka_server start   # last line: KAFKA_BOOTSTRAP_SERVERS=...
    python -m tests.kafka.kafka_server status
    python -m tests.kafka.kafka_server stop
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests import local_servers as core

POM = Path(__file__).resolve().parent / "pom.xml"
BROKER_MAIN = "kafka.Kafka"
STORAGE_TOOL_MAIN = "kafka.tools.StorageTool"
API_VERSIONS_KEY = 18
PROBE_CORRELATION_ID = 7
# The group whose offset lookup makes a fresh node create __consumer_offsets.
WARM_UP_GROUP = "kafka-harness-warm-up"

# Quiet enough to read a failed start-up, without the 2,000-line config dumps.
LOG4J2_PROPERTIES = """\
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = out
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
logger.config.name = org.apache.kafka.common.config
logger.config.level = WARN
logger.utils.name = org.apache.kafka.common.utils.AppInfoParser
logger.utils.level = WARN
"""

log = logging.getLogger(__name__)

# What every node is given, and why. A node may not exceed its cluster: Kafka's
# internal topics default to 3 replicas and a min ISR of 2, which one node cannot
# host, so these follow the cluster size (1 for a single node). The rest of this
# table (listeners, quorum, log.dirs) has no default to keep.
#
#   setting                                          default  here
#   offsets.topic.replication.factor                 3        min(3, nodes)
#   transaction.state.log.replication.factor         3        min(3, nodes)
#   transaction.state.log.min.isr                    2        replicas - 1, >= 1
#   share.coordinator.state.topic.replication.factor 3        min(3, nodes)
#   share.coordinator.state.topic.min.isr            2        replicas - 1, >= 1
#
# TEST_OVERRIDES below change Kafka's behaviour for speed, so a node started with
# ``production_defaults=True`` leaves them out: tests whose outcome depends on
# them (first joins, rebalances) run there. The JVM flags (``java`` in
# tests/local_servers.py: serial GC, C1 only, small heap) affect start-up time
# and memory, not Kafka.
#
#   setting                             default  test  why the test broker differs
#   group.initial.rebalance.delay.ms    3000     0     a group's first join waits
#       this long for more members; 0 makes each test's join immediate
#   offsets.topic.num.partitions        50       1     the first join creates this
#       topic; 50 partitions take seconds to come up on a small machine
#   transaction.state.log.num.partitions 50      1     the same, for transactions
#   auto.create.topics.enable           true     false the adapter creates its
#       topics; a test that relied on auto-creation would fail where it is off
#   num.network.threads                 3        2     fewer threads on a 2-core
#   num.io.threads                      8        2       CI runner; nothing a test
#   num.recovery.threads.per.data.dir   2        1       observes depends on them
#
# ``sasl_users`` (user name to password) makes the client listener SASL_PLAINTEXT
# with the PLAIN mechanism, for tests of what clients see with right and wrong
# credentials. The controller listener stays PLAINTEXT; brokers talk to each
# other on the client listener as an extra user of the harness's own
# (``HARNESS_USER``, a random password per node), which the readiness check
# signs in as too. No authorizer runs: every signed-in user may do anything.
#
#   setting                                   with sasl_users
#   listeners / advertised.listeners          SASL_PLAINTEXT://host:port
#   inter.broker.listener.name                SASL_PLAINTEXT
#   sasl.enabled.mechanisms                   PLAIN
#   sasl.mechanism.inter.broker.protocol      PLAIN
#   listener.name.sasl_plaintext.plain.sasl.jaas.config
#                                             PlainLoginModule: the harness user
#                                             as the broker's own login, and
#                                             user_<name>="<password>" per user
TEST_OVERRIDES: dict[str, str] = {
    "group.initial.rebalance.delay.ms": "0",
    "offsets.topic.num.partitions": "1",
    "transaction.state.log.num.partitions": "1",
    "auto.create.topics.enable": "false",
    "num.network.threads": "2",
    "num.io.threads": "2",
    "num.recovery.threads.per.data.dir": "1",
}


# The user brokers and the readiness check sign in as on a SASL node.
HARNESS_USER = "kafka-harness"
_SASL_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
_SASL_PASSWORD = re.compile(r'^[^"\\\s;]+$')


class KafkaHarnessError(core.HarnessError):
    """The broker could not be resolved, formatted, started or stopped."""


JARS = core.MavenJars(POM, "kafka", "KAFKA_HARNESS_CACHE")
kafka_version = JARS.version
cache_root = JARS.cache  # where the jars and dev nodes live
missing_tools = JARS.missing_tools
ensure_artifacts = JARS.ensure


def random_cluster_id() -> str:
    """Make a Kafka UUID as the storage tool's ``random-uuid`` does, minus a JVM."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka rejects these: they read as flags.
            return text


def api_versions_ok(host: str, port: int, timeout: float = 2.0) -> bool:
    """Round-trip an ApiVersions v0 request: proves the broker serves requests.

    Plain stdlib, so the CLI can check a broker without confluent-kafka.
    """
    client_id = b"kafka-harness"
    header = (
        struct.pack(">hhih", API_VERSIONS_KEY, 0, PROBE_CORRELATION_ID, len(client_id))
        + client_id
    )
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(struct.pack(">i", len(header)) + header)
            size = struct.unpack(">i", core.recv_exact(sock, 4))[0]
            correlation_id, error_code = struct.unpack(
                ">ih", core.recv_exact(sock, size)[:6]
            )
    except (OSError, struct.error):
        return False
    return bool(correlation_id == PROBE_CORRELATION_ID and error_code == 0)


def listed_brokers(
    bootstrap_servers: str, timeout: float, client: Mapping[str, str] | None = None
) -> set[int] | None:
    """IDs of the brokers a real client sees in metadata: registered, unfenced.

    ``client`` adds librdkafka settings (a SASL node's credentials). None when
    confluent-kafka is not installed, so the CLI works without it.
    """
    try:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient
    except ImportError:
        return None
    # librdkafka's own log lines go to logging (captured by pytest), not stderr.
    config: dict[str, Any] = {
        **(client or {}),
        "bootstrap.servers": bootstrap_servers,
        "logger": log,
        "socket.timeout.ms": 2000,
    }
    admin = AdminClient(config)
    try:
        return set(admin.list_topics(timeout=timeout).brokers)
    except KafkaException:  # until metadata arrives
        return set()


def wait_for_group_coordinator(
    bootstrap_servers: str, deadline: float, client: Mapping[str, str] | None = None
) -> None:
    """Wait until a group coordinator answers, as a consumer group's join needs.

    A fresh node creates ``__consumer_offsets`` on the first group request and
    answers ``NOT_COORDINATOR`` until it is up (seconds on a small machine), so
    a test's first read would wait out its timeout empty. A consumer's
    ``committed()`` is that first request; an admin call would do too, but its
    result is built on librdkafka's thread, where a garbage collection that
    frees a client aborts the process (confluent-kafka-python #2129).
    """
    try:
        from confluent_kafka import Consumer, KafkaException, TopicPartition
    except ImportError:
        return
    consumer = Consumer(
        {
            **(client or {}),
            "bootstrap.servers": bootstrap_servers,
            "group.id": WARM_UP_GROUP,
            "logger": log,
            "socket.timeout.ms": 2000,
        }
    )
    try:
        while True:
            try:
                consumer.committed([TopicPartition(WARM_UP_GROUP, 0)], timeout=2.0)
                return
            except KafkaException:
                if time.monotonic() > deadline:
                    raise KafkaHarnessError(
                        f"no group coordinator on {bootstrap_servers}"
                    ) from None
                time.sleep(0.2)
    finally:
        consumer.close()


class KafkaServer(core.StartsAndCloses):
    """One KRaft node acting as broker and controller, on loopback.

    Ports are picked once, so ``stop()`` then ``start()`` brings the same
    broker back on the same address and data, as a restarted server would.
    The JVM runs in its own session; unless ``detach`` is set it is stopped
    when this interpreter exits, so a crashed test run leaks no broker.
    Alone it formats a dynamic quorum of itself; ``KafkaCluster`` passes
    ``voters`` (node id to controller port) and a shared ``cluster_id``.
    ``production_defaults=True`` drops ``TEST_OVERRIDES``: Kafka's own defaults,
    except the replication settings the cluster's size forces. ``sasl_users``
    (name to password) makes clients sign in with SASL/PLAIN; `client_config`
    gives the settings a client needs for one of them.
    """

    def __init__(
        self,
        data_dir: Path | str | None = None,
        *,
        port: int | None = None,
        controller_port: int | None = None,
        heap: str = "512m",
        start_timeout: float = 90.0,
        stop_timeout: float = 20.0,
        detach: bool = False,
        node_id: int = 1,
        voters: Mapping[int, int] | None = None,
        cluster_id: str | None = None,
        production_defaults: bool = False,
        sasl_users: Mapping[str, str] | None = None,
    ) -> None:
        self.data_dir, self._own_dir = core.data_folder(data_dir, "kafka-harness-")
        picked = iter(core.free_ports(2))
        self.port = port or next(picked)
        self.node_id = node_id
        self.voters = dict(voters or {})
        self.controller_port = (
            controller_port or self.voters.get(node_id) or next(picked)
        )
        self.cluster_id = cluster_id or random_cluster_id()
        self.heap = heap
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.detach = detach
        self.production_defaults = production_defaults
        self.sasl_users = dict(sasl_users or {})
        if self.sasl_users:
            self.sasl_users.setdefault(HARNESS_USER, secrets.token_urlsafe(16))
        for user, password in self.sasl_users.items():
            if not _SASL_NAME.match(user) or not _SASL_PASSWORD.match(password):
                raise KafkaHarnessError(
                    f"SASL user {user!r}: names take letters, digits, '.', '_' "
                    "and '-'; passwords no quotes, backslashes, spaces or ';'"
                )
        self.pid: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._guard: core.Guard | None = None
        # What the guard deletes if this process dies: temporary folders only,
        # the first with all it holds, the others once empty.
        self.temporary_dirs: list[Path] = [self.data_dir] if self._own_dir else []

    @property
    def bootstrap_servers(self) -> str:
        """The address clients connect to: ``127.0.0.1:<port>``."""
        return f"{core.HOST}:{self.port}"

    def client_config(self, user: str | None = None) -> dict[str, str]:
        """librdkafka settings that sign ``user`` in (default: the harness's
        own user); empty for a node without ``sasl_users``."""
        if not self.sasl_users:
            return {}
        name = HARNESS_USER if user is None else user
        return {
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "PLAIN",
            "sasl.username": name,
            "sasl.password": self.sasl_users[name],
        }

    @property
    def log_path(self) -> Path:
        return self.data_dir / "kafka.log"

    @property
    def properties_path(self) -> Path:
        return self.data_dir / "server.properties"

    def start(self) -> None:
        """Format storage on first use, launch the JVM and wait until it serves."""
        if self.running:
            return
        began = time.monotonic()
        self._launch()
        self._wait_ready(began + self.start_timeout)
        if not self.voters:  # a cluster member waits with its cluster
            self._wait_for_coordinator(began + self.start_timeout)
        log.info(
            "Kafka node %s ready on %s in %.1fs",
            self.node_id,
            self.bootstrap_servers,
            time.monotonic() - began,
        )

    @property
    def running(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        return self.pid is not None and core.group_alive(self.pid)

    def stop(self, *, graceful: bool = True) -> None:
        """SIGTERM for a clean shutdown (a restart then recovers nothing), then KILL.

        ``graceful=False`` kills at once, for data that is about to be deleted.
        """
        if self.pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM if graceful else signal.SIGKILL)
            if not self._wait_exit(self.stop_timeout):
                log.warning("Kafka pid %s ignored SIGTERM; killing it", self.pid)
                os.kill(self.pid, signal.SIGKILL)
                self._wait_exit(10.0)
        atexit.unregister(self.stop)
        if self._guard is not None:
            self._guard.release()
        self.pid, self._proc, self._guard = None, None, None

    def close(self) -> None:
        """Stop, and delete the data folder if this object made it."""
        self.stop(graceful=not self._own_dir)
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def log_tail(self, lines: int = core.LOG_TAIL_LINES) -> str:
        """The log's last lines, after its path."""
        return f"--- {self.log_path}\n{core.tail(self.log_path, lines)}"

    def _launch(self) -> None:
        lib = ensure_artifacts()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        if not (self.data_dir / "logs" / "meta.properties").exists():
            self._format(lib)
        with self.log_path.open("ab") as out:
            out.write(f"\n===== starting node at {time.ctime()} =====\n".encode())
            out.flush()
            self._proc = subprocess.Popen(
                [*self._java(lib, self.heap), BROKER_MAIN, str(self.properties_path)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own group: ^C in pytest or CLI exit spares it
            )
        self.pid = self._proc.pid
        if not self.detach:  # its own session survives us: don't leak a JVM
            atexit.register(self.stop)  # stopped as usual on a normal exit,
            # by the guard on SIGKILL, SIGTERM or a crash, which skip atexit
            temporary = self.temporary_dirs
            self._guard = core.Guard(
                core.ProcessGroup(self.pid),
                0 if temporary else self.stop_timeout,
                temporary,
            )

    def _wait_exit(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.running:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def _serves(self) -> bool:
        """Whether this node answers requests and clients see it in metadata."""
        if not api_versions_ok(core.HOST, self.port):
            return False
        seen = listed_brokers(self.bootstrap_servers, 2.0, self.client_config())
        return seen is None or self.node_id in seen

    def _wait_ready(self, deadline: float) -> None:
        """Wait until this node answers and clients see it; stop it on failure."""
        try:
            core.wait_until_ready(
                f"Kafka node {self.node_id}",
                self._serves,
                lambda: not self.running,
                self.log_tail,
                deadline=deadline,
                timeout=self.start_timeout,
                error=KafkaHarnessError,
            )
        except BaseException:
            self.stop()
            raise

    def _wait_for_coordinator(self, deadline: float) -> None:
        """Wait until consumer groups can join here; stop this node on failure."""
        try:
            wait_for_group_coordinator(
                self.bootstrap_servers, deadline, self.client_config()
            )
        except BaseException:
            self.stop()
            raise

    def _java(self, lib: Path, heap: str) -> list[str]:
        logging_config = self.data_dir / "log4j2.properties"
        return core.java(lib, heap, f"-Dlog4j2.configurationFile={logging_config}")

    def _format(self, lib: Path) -> None:
        cmd = [
            *self._java(lib, "256m"), STORAGE_TOOL_MAIN, "format",
            "-t", self.cluster_id, "-c", str(self.properties_path),
        ]  # fmt: skip
        if not self.voters:
            cmd.append("--standalone")  # a dynamic quorum of this node alone
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise KafkaHarnessError(
                f"storage format failed:\n{done.stdout}{done.stderr}"
            )

    def _write_config(self) -> None:
        if self.voters:
            quorum = {
                "controller.quorum.voters": ",".join(
                    f"{node}@{core.HOST}:{port}" for node, port in self.voters.items()
                )
            }
        else:
            controller = f"{core.HOST}:{self.controller_port}"
            quorum = {"controller.quorum.bootstrap.servers": controller}
        # Internal topics default to replication 3; a smaller cluster needs less
        # (the first table at the top of this file).
        replicas = min(3, len(self.voters) or 1)
        min_isr = str(max(1, replicas - 1))
        # The client listener, which brokers also use among themselves.
        clients = "SASL_PLAINTEXT" if self.sasl_users else "PLAINTEXT"
        client = f"{clients}://{core.HOST}:{self.port}"
        controller = f"CONTROLLER://{core.HOST}:{self.controller_port}"
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            **quorum,
            "listeners": f"{client},{controller}",
            "advertised.listeners": f"{client},{controller}",
            "listener.security.protocol.map": f"{clients}:{clients},"
            "CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": clients,
            **self._sasl_props(),
            "log.dirs": str(self.data_dir / "logs"),
            "offsets.topic.replication.factor": str(replicas),
            "transaction.state.log.replication.factor": str(replicas),
            "transaction.state.log.min.isr": min_isr,
            "share.coordinator.state.topic.replication.factor": str(replicas),
            "share.coordinator.state.topic.min.isr": min_isr,
        }
        if not self.production_defaults:
            props.update(TEST_OVERRIDES)
        self.properties_path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.data_dir / "log4j2.properties").write_text(LOG4J2_PROPERTIES)

    def _sasl_props(self) -> dict[str, str]:
        """SASL/PLAIN on the client listener (the table at the top of this file)."""
        if not self.sasl_users:
            return {}
        users = " ".join(f'user_{u}="{p}"' for u, p in self.sasl_users.items())
        own = self.sasl_users[HARNESS_USER]
        login = f'username="{HARNESS_USER}" password="{own}"'
        return {
            "sasl.enabled.mechanisms": "PLAIN",
            "sasl.mechanism.inter.broker.protocol": "PLAIN",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config": (
                "org.apache.kafka.common.security.plain.PlainLoginModule required "
                f"{login} {users};"
            ),
        }


class KafkaCluster(core.StartsAndCloses):
    """Several KRaft nodes, each broker and controller, on a static quorum.

    For replication and fail-over tests: ``servers[i]`` can be stopped and
    started alone while the others keep the quorum.
    """

    def __init__(
        self, size: int = 3, data_dir: Path | str | None = None, *, heap: str = "384m"
    ) -> None:
        self.data_dir, self._own_dir = core.data_folder(data_dir, "kafka-cluster-")
        voters = dict(zip(range(1, size + 1), core.free_ports(size), strict=True))
        cluster_id = random_cluster_id()
        self.servers = [
            KafkaServer(
                self.data_dir / f"node-{node}",
                node_id=node,
                voters=voters,
                cluster_id=cluster_id,
                heap=heap,
            )
            for node in voters
        ]
        if self._own_dir:
            for server in self.servers:
                server.temporary_dirs = [server.data_dir, self.data_dir]

    @property
    def bootstrap_servers(self) -> str:
        """Every node's address, comma-separated, as clients expect it."""
        return ",".join(server.bootstrap_servers for server in self.servers)

    def start(self) -> None:
        """Launch every node first: none is ready before a quorum is up."""
        deadline = time.monotonic() + max(s.start_timeout for s in self.servers)
        try:
            for server in self.servers:
                if not server.running:
                    server._launch()
            for server in self.servers:
                server._wait_ready(deadline)
            wait_for_group_coordinator(self.bootstrap_servers, deadline)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Signal all nodes at once, so none waits on a quorum already gone."""
        for server in self.servers:
            if server.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(server.pid, signal.SIGTERM)
        for server in self.servers:
            server.stop()

    def close(self) -> None:
        """Stop, and delete the data folder if this object made it.

        A graceful stop of a multi-node quorum takes seconds (the last leader
        waits to hand over), so data that is about to go is killed instead.
        """
        if self._own_dir:
            for server in self.servers:
                server.stop(graceful=False)
            shutil.rmtree(self.data_dir, ignore_errors=True)
        else:
            self.stop()


# --- CLI: a long-lived broker for development and CI scripts -------------------


class KafkaDevNode(core.DevNode[KafkaServer]):
    """This package's dev broker, and ``fetch`` to resolve the jars alone."""

    name = "Kafka"
    variable = "KAFKA_BOOTSTRAP_SERVERS"
    jars = JARS

    def make(self, data_dir: Path) -> KafkaServer:
        return KafkaServer(data_dir, detach=True)

    def record(self, node: KafkaServer) -> dict[str, Any]:
        return {
            "pid": node.pid,
            "port": node.port,
            "controller_port": node.controller_port,
            "data_dir": str(node.data_dir),
            "version": kafka_version(),
        }

    def adopt(self, state: Mapping[str, Any]) -> KafkaServer:
        server = KafkaServer(
            state["data_dir"],
            port=int(state["port"]),
            controller_port=int(state["controller_port"]),
        )
        pid = int(state["pid"])
        # A recycled PID would not be a JVM running these very properties.
        ours = core.process_has(
            pid, "cmdline", BROKER_MAIN, str(server.properties_path)
        )
        server.pid = pid if ours else None
        return server

    def answers(self, node: KafkaServer) -> bool:
        return api_versions_ok(core.HOST, node.port)

    def address(self, node: KafkaServer) -> str:
        return node.bootstrap_servers


def main(argv: list[str] | None = None) -> int:
    return KafkaDevNode("kafka", cache_root()).main(argv)


if __name__ == "__main__":
    sys.exit(main())
