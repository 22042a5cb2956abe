"""ElasticMQ, a real SQS-compatible server, for the tests: one JVM per node,
speaking SQS's JSON and query protocols, its jars and dev-node commands
(``fetch``, ``start``, ``status``, ``stop``) as ``tests/local_servers.py``
describes, the cache named by ``SQS_HARNESS_CACHE``.

Queues and messages live in memory unless ``persistent=True``, which keeps
them in H2 files across a kill and a start on the same port: the restart
tests use it, benchmarks do not (it runs batches 2-2.5x slower). The shell's
``start`` prints ``SQS_ENDPOINT_URL=...`` last, for the tests to reuse.
"""

from __future__ import annotations

import atexit
import logging
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests import local_servers as core

POM = Path(__file__).resolve().parent / "pom.xml"
SERVER_MAIN = "org.elasticmq.server.Main"
# What ElasticMQ logs when its port is taken: the JVM then idles instead of
# exiting, so the runner reads its log rather than waiting for it to end.
BIND_FAILED = "Cannot start SQS rest server"
STARTED = "=== ElasticMQ server"
# A persistent node answers before it has put back what it stored: it logs
# this line per queue once that queue's messages are back.
RESTORED = re.compile(r"Restored \d+ messages in queue (\S+)")
QUEUE_URL = re.compile(r"<QueueUrl>([^<]+)</QueueUrl>")
# ElasticMQ's own region and account: queue URLs and ARNs name them.
REGION = "elasticmq"
ACCOUNT = "000000000000"

log = logging.getLogger(__name__)


class SqsHarnessError(core.HarnessError):
    """ElasticMQ could not be resolved, started or stopped."""


JARS = core.MavenJars(POM, "elasticmq", "SQS_HARNESS_CACHE")
elasticmq_version = JARS.version
cache_root = JARS.cache  # where the jars and dev nodes live
missing_tools = JARS.missing_tools
ensure_artifacts = JARS.ensure


def queue_names(endpoint_url: str, timeout: float = 2.0) -> list[str] | None:
    """The queues an SQS ``ListQueues`` names (query protocol, unsigned:
    ElasticMQ does not check signatures); None when it is not answered.

    Plain stdlib, so the CLI can check a node without boto3.
    """
    request = urllib.request.Request(
        endpoint_url + "/",
        data=b"Action=ListQueues&Version=2012-11-05",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            body = reply.read().decode()
    except (OSError, urllib.error.URLError):
        return None
    if "ListQueuesResponse" not in body:
        return None
    return [url.rsplit("/", 1)[-1] for url in QUEUE_URL.findall(body)]


def list_queues_answers(endpoint_url: str, timeout: float = 2.0) -> bool:
    """Whether the node serves SQS requests: ``ListQueues`` is answered."""
    return queue_names(endpoint_url, timeout) is not None


def _block(name: str, **values: object) -> str:
    """One HOCON object on a line: ``name { key = value, ... }``."""

    def literal(value: object) -> str:
        if isinstance(value, bool):
            return str(value).lower()
        return str(value) if isinstance(value, int) else f'"{value}"'

    pairs = ", ".join(f"{key} = {literal(value)}" for key, value in values.items())
    return name + " { " + pairs + " }"


def config_text(port: int, data_dir: Path, persistent: bool) -> str:
    """ElasticMQ's configuration (HOCON): SQS on loopback only, with AWS's
    limits (``strict``), no statistics UI; with ``persistent``, queues in a
    file and messages in H2, written at once (``WRITE_DELAY=0``: with H2's
    default, acknowledged sends were lost when the server was killed)."""
    lines = [
        'include classpath("application.conf")',
        _block("node-address", protocol="http", host=core.HOST, port=port,
               **{"context-path": ""}),
        _block("rest-sqs", enabled=True, **{"bind-port": port,
               "bind-hostname": core.HOST, "sqs-limits": "strict"}),
        _block("rest-stats", enabled=False),
        "generate-node-address = false",
        _block("aws", region=REGION, accountId=ACCOUNT),
    ]  # fmt: skip
    if persistent:
        store = f"jdbc:h2:{data_dir / 'messages'};WRITE_DELAY=0"
        lines += [
            _block("queues-storage", enabled=True, path=str(data_dir / "queues.conf")),
            _block("messages-storage", enabled=True, uri=store),
        ]
    return "\n".join(lines) + "\n"


class ElasticMQServer(core.StartsAndCloses):
    """One ElasticMQ node on loopback.

    The port is picked once, so ``stop()`` (or ``kill()``) then ``start()``
    brings the node back on the same address; with ``persistent`` it brings
    back its queues and messages too. The JVM runs in its own session; unless
    ``detach`` is set it is stopped when this interpreter exits, by a guard
    process if the interpreter is killed, so a crashed test run leaks no node.
    """

    def __init__(
        self,
        data_dir: Path | str | None = None,
        *,
        port: int | None = None,
        persistent: bool = False,
        heap: str = "256m",
        start_timeout: float = 60.0,
        stop_timeout: float = 20.0,
        detach: bool = False,
    ) -> None:
        self.data_dir, self._own_dir = core.data_folder(data_dir, "elasticmq-")
        self.port = port or core.free_ports(1)[0]
        self.persistent = persistent
        self.heap = heap
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.detach = detach
        self.pid: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._guard: core.Guard | None = None
        self._log_start = 0
        # The queues a persistent node held when this object last stopped it:
        # a restart is ready once each has its messages back.
        self._stored: set[str] = set()

    @property
    def endpoint_url(self) -> str:
        """What clients are given as their endpoint: ``http://127.0.0.1:<port>``."""
        return f"http://{core.HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "elasticmq.log"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "elasticmq.conf"

    @property
    def running(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        return self.pid is not None and core.group_alive(self.pid)

    def start(self) -> None:
        """Launch the JVM and return once ``ListQueues`` is answered and, on
        a persistent node, its stored queues and messages are back."""
        if self.running:
            return
        began = time.monotonic()
        self._launch()
        try:
            core.wait_until_ready(
                f"ElasticMQ on port {self.port}",
                self._serves,
                self._failed,
                self.log_tail,
                deadline=began + self.start_timeout,
                timeout=self.start_timeout,
                error=SqsHarnessError,
            )
        except BaseException:
            self.stop(graceful=False)
            raise
        took = time.monotonic() - began
        log.info("ElasticMQ ready on %s in %.1fs", self.endpoint_url, took)

    def stop(self, *, graceful: bool = True) -> None:
        """SIGTERM for a clean shutdown, SIGKILL if it lingers (or at once
        with ``graceful=False``); the data folder stays."""
        if self.pid is None:
            return
        if self.persistent:
            self._stored = set(queue_names(self.endpoint_url) or ())
        group = core.ProcessGroup(self.pid)
        group.signal(signal.SIGTERM if graceful else signal.SIGKILL)
        if not group.wait_gone(self.stop_timeout, self._proc):
            log.warning("ElasticMQ pid %s ignored SIGTERM; killing it", self.pid)
            group.signal(signal.SIGKILL)
            group.wait_gone(10.0, self._proc)
        atexit.unregister(self.stop)
        if self._guard is not None:
            self._guard.release()
        self.pid, self._proc, self._guard = None, None, None

    def kill(self) -> None:
        """SIGKILL, as a server that crashes: nothing is flushed."""
        self.stop(graceful=False)

    def close(self) -> None:
        """Stop, and delete the data folder if this object made it."""
        self.stop(graceful=not self._own_dir)
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def log_tail(self, lines: int = core.LOG_TAIL_LINES) -> str:
        """The log's last lines, after its path."""
        return f"--- {self.log_path}\n{core.tail(self.log_path, lines)}"

    def _this_run(self) -> str:
        """What this node has logged since its latest launch."""
        try:
            with self.log_path.open("rb") as text:
                text.seek(self._log_start)
                return text.read().decode(errors="replace")
        except OSError:
            return ""

    def _serves(self) -> bool:
        logged = self._this_run()
        if STARTED not in logged or not list_queues_answers(self.endpoint_url):
            return False
        return self._stored <= set(RESTORED.findall(logged))

    def _failed(self) -> bool:
        if BIND_FAILED in self._this_run():
            raise SqsHarnessError(
                f"ElasticMQ could not bind port {self.port}:\n{self.log_tail()}"
            )
        return not self.running

    def _launch(self) -> None:
        lib = ensure_artifacts()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            config_text(self.port, self.data_dir, self.persistent)
        )
        with self.log_path.open("ab") as out:
            out.write(f"\n===== starting node at {time.ctime()} =====\n".encode())
            out.flush()
            self._log_start = out.tell()
            config = f"-Dconfig.file={self.config_path}"
            self._proc = subprocess.Popen(
                [*core.java(lib, self.heap, config), SERVER_MAIN],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own group: ^C in pytest or CLI exit spares it
            )
        self.pid = self._proc.pid
        if not self.detach:
            atexit.register(self.stop)  # by the guard on SIGKILL or a crash
            temporary = [self.data_dir] if self._own_dir else []
            self._guard = core.Guard(
                core.ProcessGroup(self.pid),
                0 if temporary else self.stop_timeout,
                temporary,
            )


# --- CLI: a long-lived node for development and CI scripts ---------------------


class ElasticMQDevNode(core.DevNode[ElasticMQServer]):
    """This package's dev node, and ``fetch`` to resolve the jars alone."""

    name = "ElasticMQ"
    variable = "SQS_ENDPOINT_URL"
    jars = JARS

    def make(self, data_dir: Path) -> ElasticMQServer:
        return ElasticMQServer(data_dir, detach=True)

    def record(self, node: ElasticMQServer) -> dict[str, Any]:
        return {
            "pid": node.pid,
            "port": node.port,
            "data_dir": str(node.data_dir),
            "version": elasticmq_version(),
        }

    def adopt(self, state: Mapping[str, Any]) -> ElasticMQServer:
        server = ElasticMQServer(state["data_dir"], port=int(state["port"]))
        pid = int(state["pid"])
        # A recycled PID would not be a JVM running this very configuration.
        ours = core.process_has(
            pid, "cmdline", SERVER_MAIN, f"-Dconfig.file={server.config_path}"
        )
        server.pid = pid if ours else None
        return server

    def answers(self, node: ElasticMQServer) -> bool:
        return list_queues_answers(node.endpoint_url)

    def address(self, node: ElasticMQServer) -> str:
        return node.endpoint_url


def main(argv: list[str] | None = None) -> int:
    return ElasticMQDevNode("sqs", cache_root()).main(argv)


if __name__ == "__main__":
    sys.exit(main())
