"""Checks of the ElasticMQ runner generated SQS packages carry, against real
nodes: what only it has (``test_server_runners.py`` checks what every runner
does). Plain stdlib SQS calls (the query protocol), as the runner's probe."""

from __future__ import annotations

import re
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.runners import runner_path
from tests.sqs_server import ElasticMQServer, elasticmq_version, queue_names


def call(endpoint: str, action: str, **params: str) -> str:
    """One SQS request; the reply's XML as text."""
    body = urllib.parse.urlencode({"Action": action, **params}).encode()
    request = urllib.request.Request(
        endpoint + "/",
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        return str(reply.read().decode())


def depth(endpoint: str, queue_url: str) -> int:
    reply = call(
        endpoint,
        "GetQueueAttributes",
        QueueUrl=queue_url,
        **{"AttributeName.1": "ApproximateNumberOfMessages"},
    )
    [value] = re.findall(r"<Value>(\d+)</Value>", reply)
    return int(value)


def make_queue_with(server: ElasticMQServer, name: str, count: int) -> str:
    reply = call(server.endpoint_url, "CreateQueue", QueueName=name)
    [url] = re.findall(r"<QueueUrl>([^<]+)</QueueUrl>", reply)
    for n in range(count):
        call(server.endpoint_url, "SendMessage", QueueUrl=url, MessageBody=f"m{n}")
    return url


def test_the_pom_stands_next_to_the_runner_sqs_packages_get() -> None:
    assert (runner_path("sqs").parent / "pom.xml").is_file()
    assert re.fullmatch(r"1\.7\.\d+", elasticmq_version())  # 1 MiB messages


@pytest.mark.sqs
def test_a_persistent_node_keeps_every_acknowledged_send_when_killed(
    tmp_path: Path,
) -> None:
    """SIGKILL flushes nothing: what ElasticMQ acknowledged must already be
    in H2 (WRITE_DELAY=0), and ``start`` returns once it is back."""
    with ElasticMQServer(tmp_path / "node", persistent=True) as server:
        url = make_queue_with(server, "kept", 200)
        make_queue_with(server, "empty", 0)
        server.kill()
        server.start()
        assert depth(server.endpoint_url, url) == 200
        assert sorted(queue_names(server.endpoint_url) or []) == ["empty", "kept"]


@pytest.mark.sqs
def test_an_in_memory_node_starts_empty_again(tmp_path: Path) -> None:
    with ElasticMQServer(tmp_path / "node") as server:
        make_queue_with(server, "gone", 1)
        server.stop()
        server.start()
        assert queue_names(server.endpoint_url) == []
