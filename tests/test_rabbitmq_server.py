"""Checks of the RabbitMQ runner generated packages carry, against real nodes:
what only RabbitMQ has (``test_server_runners.py`` checks what every runner does).

One node serves most tests (module scope): each starts from whatever the one
before left running and leaves it running.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
import yaml

from tests.conftest import REPO_ROOT
from tests.local_servers import HOST, group_alive
from tests.rabbitmq_server import (
    Epmd,
    RabbitMQCluster,
    RabbitMQHarnessError,
    RabbitMQNode,
    amqp_ready,
    missing_tools,
)

COMPOSE = "template/{% if backend == 'rabbitmq' %}docker-compose.yml{% endif %}.jinja"
PERSISTENT = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)


def processes_of(base_dir: Path) -> list[str]:
    """Command lines of live processes started for the node whose folder is
    ``base_dir`` (they inherit its RABBITMQ_MNESIA_BASE): the start script, the
    Erlang VM and its helpers, and any epmd the VM spawned."""
    marker = f"RABBITMQ_MNESIA_BASE={base_dir / 'mnesia'}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker in (proc / "environ").read_bytes().split(b"\0"):
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" "))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return [line.decode(errors="replace").strip() for line in found]


def publish_confirmed(uri: str, queue: str, body: bytes, **arguments: str) -> None:
    """Declare a durable ``queue`` and publish ``body`` persistent, confirmed."""
    connection = pika.BlockingConnection(pika.URLParameters(uri))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare(queue, durable=True, arguments=arguments or None)
        channel.basic_publish("", queue, body, PERSISTENT, mandatory=True)
    finally:
        connection.close()


def get_one(uri: str, queue: str) -> bytes | None:
    """The next message of ``queue`` (acknowledged), or None when it is empty."""
    connection = pika.BlockingConnection(pika.URLParameters(uri))
    try:
        _, _, body = connection.channel().basic_get(queue, auto_ack=True)
    finally:
        connection.close()
    return body


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQNode]:
    with RabbitMQNode(tmp_path_factory.mktemp("rabbitmq") / "node") as server:
        yield server


def test_docker_compose_runs_a_pinned_rabbitmq_4_with_a_health_check() -> None:
    service = yaml.safe_load((REPO_ROOT / COMPOSE).read_text())["services"]["rabbitmq"]
    assert re.fullmatch(r"rabbitmq:4\.\d+\.\d+-management", service["image"])
    assert service["ports"] == ["5672:5672", "15672:15672"]
    assert "rabbitmq-diagnostics" in service["healthcheck"]["test"]


def test_without_the_server_a_start_says_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RABBITMQ_HARNESS_SBIN", str(tmp_path))
    assert missing_tools()[:2] == [
        str(tmp_path / "rabbitmq-server"),
        str(tmp_path / "rabbitmqctl"),
    ]
    server = RabbitMQNode(tmp_path / "node")
    with pytest.raises(RabbitMQHarnessError, match="install rabbitmq-server"):
        server.start()
    assert not server.running and not server.epmd.running


def test_nodes_change_only_addresses_from_the_servers_defaults(
    tmp_path: Path,
) -> None:
    def written(node: RabbitMQNode) -> dict[str, str]:
        node._write_files()
        lines = (node.base_dir / "rabbitmq.conf").read_text().splitlines()
        return dict(line.split(" = ", 1) for line in lines)

    plain = RabbitMQNode(tmp_path / "plain")
    assert written(plain) == {"listeners.tcp.1": f"{HOST}:{plain.amqp_port}"}
    assert (plain.base_dir / "enabled_plugins").read_text() == "[].\n"

    managed = RabbitMQNode(tmp_path / "managed", plugins=["rabbitmq_management"])
    assert written(managed) == {
        "listeners.tcp.1": f"{HOST}:{managed.amqp_port}",
        "management.tcp.ip": HOST,
        "management.tcp.port": str(managed.management_port),
    }
    assert managed.management_url == f"http://{HOST}:{managed.management_port}/api"
    with pytest.raises(RabbitMQHarnessError, match="without rabbitmq_management"):
        _ = plain.management_url

    cluster = RabbitMQCluster(3, tmp_path / "cluster")
    first, second, _ = cluster.nodes
    assert "cluster_formation.peer_discovery_backend" not in written(first)
    assert written(second) == {
        "listeners.tcp.1": f"{HOST}:{second.amqp_port}",
        "cluster_formation.peer_discovery_backend": "classic_config",
        "cluster_formation.classic_config.nodes.1": first.nodename,
    }
    assert len({n.epmd.port for n in cluster.nodes}) == 1
    assert len({n.cookie for n in cluster.nodes}) == 1
    assert plain.epmd.port != managed.epmd.port
    cluster.close()


@pytest.mark.rabbitmq
def test_a_node_accepts_amqp_clients_and_rabbitmqctl(node: RabbitMQNode) -> None:
    assert node.uri == f"amqp://guest:guest@{HOST}:{node.amqp_port}/%2F"
    assert amqp_ready(HOST, node.amqp_port)
    queue = f"q-{uuid.uuid4().hex}"
    publish_confirmed(node.uri, queue, b"hello")
    listed = json.loads(
        node.ctl("list_queues", "name", "messages", "--formatter", "json")
    )
    assert {"name": queue, "messages": 1} in listed
    assert get_one(node.uri, queue) == b"hello"


@pytest.mark.rabbitmq
def test_a_created_user_signs_in_and_a_wrong_password_is_refused(
    node: RabbitMQNode,
) -> None:
    user = f"user-{uuid.uuid4().hex[:8]}"
    uri = node.add_user(user, "p@ss/word")
    assert uri == node.uri_for(user, "p@ss/word")
    pika.BlockingConnection(pika.URLParameters(uri)).close()
    with pytest.raises(pika.exceptions.ProbableAuthenticationError):
        pika.BlockingConnection(pika.URLParameters(node.uri_for(user, "wrong")))


@pytest.mark.rabbitmq
def test_restart_keeps_a_durable_queue_and_its_persistent_message(
    node: RabbitMQNode,
) -> None:
    queue = f"durable-{uuid.uuid4().hex}"
    publish_confirmed(node.uri, queue, b"kept")
    uri = node.uri

    node.restart()

    assert node.uri == uri
    assert get_one(uri, queue) == b"kept"


@pytest.mark.rabbitmq
def test_kill_leaves_no_process_and_loses_no_confirmed_message(
    node: RabbitMQNode,
) -> None:
    classic, quorum = (f"crash-{kind}-{uuid.uuid4().hex}" for kind in "cq")
    publish_confirmed(node.uri, classic, b"classic")
    publish_confirmed(node.uri, quorum, b"quorum", **{"x-queue-type": "quorum"})
    node.sync()  # else a SIGKILL this soon may lose the queues (see kill())
    pid = node.pid
    assert pid is not None and processes_of(node.base_dir)

    node.kill()

    assert not node.running and not group_alive(pid)
    assert processes_of(node.base_dir) == []
    assert not amqp_ready(HOST, node.amqp_port)
    node.start()
    assert get_one(node.uri, classic) == b"classic"
    assert get_one(node.uri, quorum) == b"quorum"


@pytest.mark.rabbitmq
def test_an_epmd_whose_port_is_taken_fails_and_is_not_mistaken_for_ready() -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()  # accepts connections, but answers no epmd request
        epmd = Epmd(taken.getsockname()[1])
        with pytest.raises(RabbitMQHarnessError, match="exited"):
            epmd.start()
    assert not epmd.running and epmd.pid is None
    epmd = Epmd()
    epmd.start()
    pid = epmd.pid
    assert pid is not None and group_alive(pid)
    epmd.stop()
    assert not group_alive(pid)


@pytest.mark.rabbitmq
def test_a_start_that_times_out_says_so_and_leaves_no_process(tmp_path: Path) -> None:
    server = RabbitMQNode(tmp_path / "node")
    with pytest.raises(RabbitMQHarnessError, match=r"not ready in 1s") as err:
        server.start(timeout=1)
    assert f"--- {server.output_path} (this start)" in str(err.value)
    assert not server.running and not server.epmd.running
    assert processes_of(server.base_dir) == []


@pytest.mark.rabbitmq
def test_the_management_plugin_serves_its_api_when_enabled() -> None:
    # A folder of its own: closing kills the node (its clean stop takes 5 s more).
    with RabbitMQNode(plugins=["rabbitmq_management"]) as server:
        request = urllib.request.Request(
            f"{server.management_url}/overview",
            headers={
                "Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()
            },
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            overview = json.load(response)
    assert overview["node"] == server.nodename


@pytest.mark.rabbitmq
def test_three_nodes_cluster_and_serve_a_quorum_queue_through_crash_and_restart(
    tmp_path: Path,
) -> None:
    with RabbitMQCluster(3, tmp_path / "cluster") as cluster:
        names = sorted(node.nodename for node in cluster.nodes)
        last = cluster.nodes[-1]  # the start checked the first node's view
        status = json.loads(last.ctl("cluster_status", "--formatter", "json"))
        assert sorted(status["running_nodes"]) == names
        assert len(set(cluster.uris)) == 3

        queue = f"qq-{uuid.uuid4().hex}"
        publish_confirmed(cluster.uris[1], queue, b"one", **{"x-queue-type": "quorum"})
        publish_confirmed(cluster.uris[2], queue, b"two", **{"x-queue-type": "quorum"})
        listed = json.loads(
            last.ctl("list_queues", "name", "type", "members", "--formatter", "json")
        )
        [row] = [row for row in listed if row["name"] == queue]
        assert row["type"] == "quorum"
        assert sorted(row["members"]) == names

        members = json.loads(last.queues("quorum_status", queue, "--formatter", "json"))
        [leader] = [m["Node Name"] for m in members if m["Raft State"] == "leader"]
        [crashed] = [node for node in cluster.nodes if node.nodename == leader]
        crashed.kill()
        survivor = next(node for node in cluster.nodes if node is not crashed)
        assert get_one(survivor.uri, queue) == b"one"

        crashed.restart()
        status = json.loads(survivor.ctl("cluster_status", "--formatter", "json"))
        assert sorted(status["running_nodes"]) == names
        assert get_one(crashed.uri, queue) == b"two"

        publish_confirmed(
            cluster.uris[0], queue, b"three", **{"x-queue-type": "quorum"}
        )
        cluster.stop()
        cluster.start()  # the members start together, each waiting for the others
        assert cluster.running_nodes() == set(names)
        assert get_one(cluster.uris[1], queue) == b"three"
        pids = [node.pid for node in cluster.nodes]
        epmd_pid = cluster.epmd.pid
    assert not any(group_alive(pid) for pid in pids)
    assert epmd_pid is not None and not group_alive(epmd_pid)
    for node in cluster.nodes:
        assert processes_of(node.base_dir) == []
