"""The table of backends that talk to a real server: one row each.

A template test that holds for every server backend is parametrized over
``SERVER_BACKENDS`` and reads what differs from the row, so that a new backend
is a row here (and a session fixture in conftest.py that starts its warm
server), never a copied test module. See "Adding a backend" in .github/CONTRIBUTING.md.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest


@dataclass(frozen=True)
class Runner:
    """What the checks every node runner passes need to know of one."""

    server: str
    """The runner's class of one node."""
    folder: str
    """The node's attribute holding its data folder."""
    taken_port: str
    """A port option the node binds while it starts."""
    start_failure: str
    """What a start on a taken port says (a regex)."""
    sigterm_logged: str
    """What the node logs when a SIGTERM stops it."""
    epmd: bool = False
    """Whether a node runs an epmd of its own beside it."""


@dataclass(frozen=True)
class Backend:
    name: str
    """The `backend` answer, and the folder of its tests in a package."""
    server_env: str
    """How a generated suite is told where a running server is."""
    server_fixture: str
    """The template's session fixture that yields a warm server's address."""
    program: str
    """A word of the server process's command line, to find leftovers."""
    no_server_env: dict[str, str]
    """What, besides a PATH of the package's venv alone, leaves the runner
    nothing to start a server with (values may name ``{tmp}``)."""
    no_server_files: tuple[str, ...]
    """Tests run where no server can start: they skip outside CI."""
    no_server_hints: tuple[str, ...]
    """What those skips must tell the user."""
    runner: Runner
    """Its node runner: tests/<name>/<name>_server.py in a package."""
    lowest_tier_requirements: tuple[str, ...] = ()
    """Pins for the lower-tier check (one backend runs it on the oldest Protean)."""
    modules_that_must_run: tuple[str, ...] = field(default=())
    """Modules of the package's suite that may never skip in the whole run."""
    cluster: bool = True
    """Whether the package has three-node fault tests (marked ``cluster``)."""
    undeclared: tuple[str, ...] = ()
    """Capabilities its default answers leave out: their tests skip."""
    every_protean_release: bool = True
    """Whether Protean's generic tests run on every release that ships them,
    or on the newest alone (what differs between releases is Protean's, and
    Kafka and RabbitMQ run them all)."""

    @property
    def marker(self) -> pytest.MarkDecorator:
        return getattr(pytest.mark, self.name)

    def server(self, request: pytest.FixtureRequest) -> dict[str, str]:
        """The environment that points a generated suite at the warm server."""
        return {self.server_env: request.getfixturevalue(self.server_fixture)}

    @property
    def runner_module(self) -> ModuleType:
        """The template's runner, loaded through its shim."""
        return importlib.import_module(f"tests.{self.name}_server")

    def node(self, folder: Path | None = None, **options: Any) -> Any:
        return getattr(self.runner_module, self.runner.server)(folder, **options)

    def facts(self, node: Any) -> dict[str, Any]:
        """A started node's process groups (its own first), data folder and log."""
        pids = [node.pid, *([node.epmd.pid] if self.runner.epmd else [])]
        folder = getattr(node, self.runner.folder)
        return {"pids": pids, "folder": str(folder), "log": str(node.log_path)}


KAFKA = Backend(
    name="kafka",
    server_env="KAFKA_BOOTSTRAP_SERVERS",
    server_fixture="kafka_bootstrap",
    program="kafka.Kafka",
    no_server_env={"JAVA_HOME": ""},  # and no java or mvn on PATH
    no_server_files=("tests/test_registration.py", "tests/kafka/test_restart.py"),
    no_server_hints=(
        "python -m tests.kafka.kafka_server start",
        "docker compose up -d",
        "KAFKA_BOOTSTRAP_SERVERS=localhost:9092",
        "the restart test starts a Kafka node of its own",
    ),
    runner=Runner(
        server="KafkaServer",
        folder="data_dir",
        taken_port="port",
        start_failure=r"^Kafka node 1 exited during start-up:\n--- ",
        sigterm_logged="Terminating process due to signal SIGTERM",
    ),
    modules_that_must_run=("test_restart.py", "test_ownership.py"),
)

RABBITMQ = Backend(
    name="rabbitmq",
    server_env="RABBITMQ_URI",
    server_fixture="rabbitmq_uri",
    program="beam.smp",
    # The runner looks for rabbitmq-server there: nothing to start a node with.
    no_server_env={"RABBITMQ_HARNESS_SBIN": "{tmp}/no-rabbitmq"},
    no_server_files=(
        "tests/test_registration.py",
        "tests/conformance/test_publish.py",
    ),
    no_server_hints=(
        "python -m tests.rabbitmq.rabbitmq_server start",
        "docker compose up -d",
        "RABBITMQ_URI=amqp://guest:guest@localhost:5672/%2F",
    ),
    lowest_tier_requirements=("protean==0.15.0",),
    runner=Runner(
        server="RabbitMQNode",
        folder="base_dir",
        taken_port="dist_port",
        start_failure=(
            r"^RabbitMQ node \S+ exited during start-up:\n"
            r"ERROR: could not bind to distribution port"
        ),
        sigterm_logged="SIGTERM received - shutting down",
        epmd=True,
    ),
    modules_that_must_run=("test_ownership.py",),
)

SQS = Backend(
    name="sqs",
    server_env="SQS_ENDPOINT_URL",
    server_fixture="sqs_endpoint",
    program="org.elasticmq.server.Main",
    no_server_env={"JAVA_HOME": ""},  # and no java or mvn on PATH
    no_server_files=("tests/test_registration.py", "tests/sqs/test_restart.py"),
    no_server_hints=(
        "python -m tests.sqs.sqs_server start",
        "SQS_ENDPOINT_URL=http://localhost:9324",
        "the restart tests start an ElasticMQ node of their own",
    ),
    runner=Runner(
        server="ElasticMQServer",
        folder="data_dir",
        taken_port="port",
        start_failure=r"^ElasticMQ could not bind port \d+:\n--- ",
        sigterm_logged="ElasticMQ server stopping",
    ),
    modules_that_must_run=("test_restart.py",),
    cluster=False,  # ElasticMQ is one process; AWS runs SQS's redundancy
    undeclared=("MESSAGE_ORDERING",),
    every_protean_release=False,  # four minutes a release, a new queue per group
)

SERVERS = (KAFKA, RABBITMQ, SQS)
BY_NAME = {backend.name: backend for backend in SERVERS}

SERVER_BACKENDS = [
    pytest.param(backend, marks=backend.marker, id=backend.name) for backend in SERVERS
]
"""Each row carries its marker: `-m "not kafka"` leaves its tests out."""

ALL_BACKENDS = [
    pytest.param(None, id="skeleton"),
    *SERVER_BACKENDS,
]
"""With the skeleton, which needs no server (its row is ``None``)."""


def no_server_env(backend: Backend, bin_dir: Path, tmp: Path) -> dict[str, str]:
    """An environment where the package's runner finds nothing to start."""
    env = {"PATH": str(bin_dir), "HOME": str(Path.home())}
    for key, value in backend.no_server_env.items():
        env[key] = value.format(tmp=tmp)
    return env
