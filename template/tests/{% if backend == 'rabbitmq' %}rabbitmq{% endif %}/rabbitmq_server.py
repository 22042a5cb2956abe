"""Run real RabbitMQ nodes for the tests, without Docker.

Needs the ``rabbitmq-server`` that the operating system packages (Debian and
Ubuntu: ``apt-get install rabbitmq-server``). Its system service is neither
used nor touched: each node runs the server's own start script as a child
process, with its data in a folder of its own and every port a free loopback
port, so parallel test runs never meet. ``RABBITMQ_HARNESS_SBIN`` names the
folder holding ``rabbitmq-server`` and ``rabbitmqctl`` where it is not
Debian's ``/usr/lib/rabbitmq/bin``.

From tests (``RabbitMQCluster(3)`` likewise gives three clustered nodes)::

    with RabbitMQNode() as node:
        pika.BlockingConnection(pika.URLParameters(node.uri))
        node.kill()      # SIGKILL, as a crash
        node.restart()   # the same ports and data
        node.ctl("list_queues", "name", "messages")

From a shell, a long-lived node for development, this package's own (its data
in ``~/.cache/protean-broker-template`` or ``RABBITMQ_HARNESS_CACHE``, below
``dev-nodes/<package folder>-<hash>/``)::

    python -m tests.rabbitmq.rabbitmq_server start   # last line: RABBITMQ_URI=...
    python -m tests.rabbitmq.rabbitmq_server status
    python -m tests.rabbitmq.rabbitmq_server stop
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tests import local_servers as core

NODE_HOST = "localhost"  # the host part of node names: short names, no DNS
DEFAULT_SBIN = Path("/usr/lib/rabbitmq/bin")
AMQP_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_METHOD = 1
CONNECTION_START = (10, 10)  # class and method ids of Connection.Start
MANAGEMENT = "rabbitmq_management"
SYNC_TO_DISK = "mnesia:sync_log(), [ok = dets:sync(T) || T <- dets:all()], ok."
EPMD_NAMES_REQUEST = b"\x00\x01n"  # length 1, NAMES_REQ (110)
START_MARKER = "===== starting "

log = logging.getLogger(__name__)

# What a node is given, and why. Everything else is the server's default, as a
# production node runs it (consumer_timeout, heartbeat, delivery limits,
# memory and disk alarms): tests see what users will see.
#
#   environment / setting            here               why
#   RABBITMQ_CONF_ENV_FILE           /dev/null          the system service's
#                                                       rabbitmq-env.conf is not ours
#   RABBITMQ_CONFIG_FILE(S),         files in the       nothing of /etc/rabbitmq
#   RABBITMQ_ADVANCED_CONFIG_FILE,   node's folder      (config, plugins, data) is
#   RABBITMQ_ENABLED_PLUGINS_FILE,                      read or written
#   RABBITMQ_MNESIA_BASE, _LOG_BASE
#   HOME                             the node's folder  holds its .erlang.cookie
#   RABBITMQ_NODENAME                <name>@localhost   unique per node
#   listeners.tcp.1                  127.0.0.1:<free>   AMQP on loopback only
#   RABBITMQ_DIST_PORT, -kernel      127.0.0.1:<free>   inter-node and CLI port
#     inet_dist_use_interface
#   ERL_EPMD_PORT, -start_epmd false <free>             an Erlang port mapper per
#                                                       node (one per cluster), of
#                                                       the harness's: no two runs
#                                                       share one, none outlives
#   RABBITMQ_CTL_DIST_PORT_MIN/MAX   0                  rabbitmqctl's own port: any
#                                                       free one, not one of eleven
#   management.tcp.ip/port           127.0.0.1:<free>   only with the management
#                                                       plugin (``plugins``)
#   cluster_formation.*              classic_config     only in a RabbitMQCluster:
#                                                       new nodes join the first


class RabbitMQHarnessError(core.HarnessError):
    """A node could not be started, reached or stopped."""


def sbin_dir() -> Path:
    """Where ``rabbitmq-server`` and ``rabbitmqctl`` are (``RABBITMQ_HARNESS_SBIN``)."""
    configured = os.environ.get("RABBITMQ_HARNESS_SBIN")
    return Path(configured).expanduser() if configured else DEFAULT_SBIN


def cache_root() -> Path:
    """Where the CLI's dev nodes live; ``RABBITMQ_HARNESS_CACHE`` overrides it."""
    return core.user_cache("RABBITMQ_HARNESS_CACHE")


def missing_tools() -> list[str]:
    """What this machine lacks to start a node; empty when it can start one."""
    missing = [
        str(sbin_dir() / tool)
        for tool in ("rabbitmq-server", "rabbitmqctl")
        if not os.access(sbin_dir() / tool, os.X_OK)
    ]
    if shutil.which("epmd") is None:
        missing.append("epmd")
    return missing


def amqp_ready(host: str, port: int, timeout: float = 2.0) -> bool:
    """Whether the server answers an AMQP 0-9-1 protocol header with
    Connection.Start: it then accepts clients. Plain stdlib, so the CLI
    checks a node without a client library."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(AMQP_HEADER)
            frame_type, channel, _size = struct.unpack(">BHI", core.recv_exact(sock, 7))
            method = struct.unpack(">HH", core.recv_exact(sock, 4))
    except (OSError, struct.error):
        return False
    return (frame_type, channel, method) == (FRAME_METHOD, 0, CONNECTION_START)


def _clean_environ() -> dict[str, str]:
    """The caller's environment less RabbitMQ's and Erlang's own variables,
    which would otherwise change the node (a RABBITMQ_NODE_PORT, ERL_FLAGS)."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("RABBITMQ_", "ERL_"))
    }


class Epmd:
    """An Erlang port mapper daemon on its own loopback port.

    Erlang nodes find each other through it. The one a node would start by
    itself outlives the node and is shared by every node using its port, so
    the harness runs its own, in its own session, and stops it itself.
    """

    def __init__(
        self, port: int | None = None, *, pid: int | None = None, detach: bool = False
    ) -> None:
        self.port = port or core.free_ports(1)[0]
        self.detach = detach
        self._group = None if pid is None else core.ProcessGroup(pid)
        self._proc: subprocess.Popen[bytes] | None = None
        self._guard: core.Guard | None = None

    @property
    def pid(self) -> int | None:
        return None if self._group is None else self._group.pgid

    @property
    def running(self) -> bool:
        if self._proc is not None:
            self._proc.poll()  # reap it once it exited: its zombie would count
        return self._group is not None and self._group.alive()

    def start(self, timeout: float = 10.0) -> None:
        if self.running:
            return
        epmd = shutil.which("epmd")
        if epmd is None:
            raise RabbitMQHarnessError("epmd not found on PATH (Erlang's erts)")
        # Its errors go to a file: a pipe nobody reads while it runs could fill.
        with tempfile.TemporaryFile() as errors:
            self._proc = subprocess.Popen(
                [epmd, "-port", str(self.port), "-address", core.HOST],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=errors,
                start_new_session=True,
            )
            self._group = core.ProcessGroup(self._proc.pid)
            if not self.detach:
                self._guard = core.Guard(self._group, grace=0)
                atexit.register(self.stop)
            deadline = time.monotonic() + timeout
            while self._proc.poll() is None and time.monotonic() < deadline:
                if self._answers():
                    return
                time.sleep(0.05)
            exited = self._proc.poll() is not None
            self.stop()
            errors.seek(0)
            said = errors.read().decode(errors="replace").strip()
            what = "exited (is the port taken?)" if exited else "did not answer"
            raise RabbitMQHarnessError(f"epmd on port {self.port} {what} {said}")

    def stop(self) -> None:
        if self._group is None:
            return
        self._group.signal(signal.SIGKILL)  # it keeps no state worth a clean exit
        if not self._group.wait_gone(10.0, self._proc):
            raise RabbitMQHarnessError(f"epmd {self._group.pgid} survived SIGKILL")
        if self._guard is not None:
            self._guard.release()
        atexit.unregister(self.stop)
        self._group = None
        self._proc = None
        self._guard = None

    def _answers(self) -> bool:
        """Whether epmd itself (not whatever else took the port) answers a
        NAMES request, whose reply starts with the port it listens on."""
        try:
            with socket.create_connection((core.HOST, self.port), timeout=1) as sock:
                sock.settimeout(1)
                sock.sendall(EPMD_NAMES_REQUEST)
                (port,) = struct.unpack(">I", core.recv_exact(sock, 4))
        except (OSError, struct.error):
            return False
        return bool(port == self.port)


class RabbitMQNode(core.StartsAndCloses):
    """One RabbitMQ node on loopback, its data in ``base_dir``.

    Ports are picked once, so ``restart()`` (after ``stop()`` or ``kill()``)
    brings the same node back on the same address and data, as a restarted
    server would. The node runs in its own session; unless ``detach`` is set
    it is stopped when this interpreter exits, so a crashed test run leaks no
    node. A node owns its ``epmd`` unless one is given (a cluster shares one).
    ``plugins`` are enabled at boot (``"rabbitmq_management"`` also opens
    ``management_port``); the server enables none by default.
    """

    def __init__(
        self,
        base_dir: Path | None = None,
        name: str | None = None,
        *,
        amqp_port: int | None = None,
        dist_port: int | None = None,
        management_port: int | None = None,
        epmd: Epmd | None = None,
        cookie: str | None = None,
        plugins: Sequence[str] = (),
        cluster_with: Sequence[str] = (),
        stop_timeout: float = 30.0,
        detach: bool = False,
    ) -> None:
        self.base_dir, self._own_dir = core.data_folder(base_dir, "rabbitmq-harness-")
        self.name = name or f"rmq-{secrets.token_hex(4)}"
        picked = iter(core.free_ports(4))
        self.amqp_port = amqp_port or next(picked)
        self.dist_port = dist_port or next(picked)
        self.plugins = tuple(plugins)
        self.management_port = (
            (management_port or next(picked)) if (MANAGEMENT in self.plugins) else None
        )
        self._own_epmd = epmd is None
        self.epmd = Epmd(next(picked), detach=detach) if epmd is None else epmd
        self._cookie = cookie
        self.cluster_with = tuple(cluster_with)
        self.stop_timeout = stop_timeout
        self.detach = detach
        self._group: core.ProcessGroup | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._guard: core.Guard | None = None
        # Deleted by the guard if this process dies: temporary folders only.
        self._temporary: list[Path] = [self.base_dir] if self._own_dir else []
        if not detach:
            atexit.register(self._clean_up_at_exit)

    # --- addresses --------------------------------------------------------

    @property
    def nodename(self) -> str:
        """The Erlang node name, ``<name>@localhost``, as rabbitmqctl wants it."""
        return f"{self.name}@{NODE_HOST}"

    @property
    def uri(self) -> str:
        """The AMQP URI of the default user (``guest`` may sign in on loopback)."""
        return self.uri_for("guest", "guest")

    def uri_for(self, user: str, password: str, vhost: str = "/") -> str:
        """The AMQP URI that signs ``user`` in to ``vhost`` on this node."""
        return (
            f"amqp://{quote(user, safe='')}:{quote(password, safe='')}"
            f"@{core.HOST}:{self.amqp_port}/{quote(vhost, safe='')}"
        )

    @property
    def management_url(self) -> str:
        """The management plugin's HTTP API, for nodes started with it."""
        if self.management_port is None:
            raise RabbitMQHarnessError(f"{self.nodename} runs without {MANAGEMENT}")
        return f"http://{core.HOST}:{self.management_port}/api"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "log" / f"{self.nodename}.log"

    @property
    def output_path(self) -> Path:
        """What the start script prints: boot errors before logging is up."""
        return self.base_dir / "server.out"

    @property
    def has_data(self) -> bool:
        """Whether the node booted before: its database folder has content."""
        return any((self.base_dir / "mnesia" / self.nodename).glob("*"))

    @property
    def home(self) -> Path:
        return self.base_dir / "home"

    @property
    def cookie(self) -> str:
        """The Erlang cookie nodes and rabbitmqctl authenticate with; a node's
        folder keeps it, so a restart in another process still matches."""
        if self._cookie is None:
            path = self.home / ".erlang.cookie"
            self._cookie = (
                path.read_text().strip() if path.exists() else secrets.token_hex(16)
            )
        return self._cookie

    # --- life cycle -------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The start script's process, which leads the node's process group."""
        return None if self._group is None else self._group.pgid

    @property
    def running(self) -> bool:
        """Whether any process of the node is alive (not whether it serves)."""
        if self._proc is not None:
            self._proc.poll()  # reap the script once it exited: its zombie counts
        return self._group is not None and self._group.alive()

    def start(self, timeout: float = 60.0) -> None:
        """Boot the node; return once AMQP accepts connections.

        On failure the node's processes are killed and the error carries the
        tail of its log.
        """
        if self.running:
            return
        began = time.monotonic()
        self._launch()
        self._wait_ready(began + timeout, timeout)
        log.info(
            "RabbitMQ node %s ready on %s in %.1fs",
            self.nodename,
            self.amqp_port,
            time.monotonic() - began,
        )

    def stop(self) -> None:
        """Stop cleanly (SIGTERM: the server's own shutdown), KILL after
        ``stop_timeout``; then stop the node's own epmd."""
        if self._group is not None:
            self._signal_script(signal.SIGTERM)
            if not self._group.wait_gone(self.stop_timeout, self._proc):
                log.warning("%s ignored SIGTERM; killing it", self.nodename)
                self._kill_group()
            self._forget_process()
        if self._own_epmd:
            self.epmd.stop()

    def kill(self) -> None:
        """SIGKILL every process of the node, as a crash; data stays for
        ``restart()``. The epmd stays up, as the host's would.

        A crash loses what the server had not written yet: queues and
        exchanges declared in the last two seconds or so (RabbitMQ 3.x writes
        its schema through a delayed-write log), and a quorum queue declared
        in the last half second (its registry is saved twice a second), with
        their confirmed messages. ``sync()`` first makes a crash test
        deterministic.
        """
        if self._group is not None:
            self._kill_group()
            self._forget_process()

    def sync(self) -> None:
        """Write what the node holds in memory to disk now (Mnesia's log and
        every open DETS table), as it would by itself within seconds."""
        self.ctl("eval", SYNC_TO_DISK)

    def restart(self, timeout: float = 60.0) -> None:
        """Stop the node if it runs, then start it on the same ports and data."""
        self.stop()
        self.start(timeout)

    def close(self) -> None:
        """Stop, and delete the data folder if this object made it."""
        if self._own_dir:
            self.kill()  # the data is about to go: no need to shut down cleanly
            self.stop()
            shutil.rmtree(self.base_dir, ignore_errors=True)
        else:
            self.stop()
        atexit.unregister(self._clean_up_at_exit)

    def ctl(self, *args: str, timeout: float = 60.0) -> str:
        """Run ``rabbitmqctl`` against this node and return what it printed."""
        return self._cli("rabbitmqctl", args, timeout)

    def queues(self, *args: str, timeout: float = 60.0) -> str:
        """Run ``rabbitmq-queues`` (quorum queue membership and status)."""
        return self._cli("rabbitmq-queues", args, timeout)

    def add_user(self, user: str, password: str, vhost: str = "/") -> str:
        """Create ``user`` with all permissions on ``vhost``; return its URI
        (for tests of credentials: clients sign in as ``guest`` otherwise)."""
        self.ctl("add_user", user, password)
        self.ctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        return self.uri_for(user, password, vhost)

    def log_tail(self, lines: int = core.LOG_TAIL_LINES) -> str:
        """Why the last start failed, as far as the node said: the start
        script's ``ERROR:`` lines first, then its output and log tails."""
        output = self._last_output().splitlines()
        reasons = [line for line in output if line.startswith("ERROR:")]
        return "\n".join(
            [
                *reasons,
                f"--- {self.output_path} (this start)",
                *(output[-lines:] or ["(empty)"]),
                f"--- {self.log_path}",
                core.tail(self.log_path, lines),
            ]
        )

    # --- internals --------------------------------------------------------

    def _launch(self) -> None:
        """Write the node's files and start its script, without waiting."""
        missing = missing_tools()
        if missing:
            raise RabbitMQHarnessError(
                f"cannot start RabbitMQ: not found: {', '.join(missing)} (install "
                "rabbitmq-server; RABBITMQ_HARNESS_SBIN names another folder)"
            )
        self._write_files()
        self.epmd.start()
        with self.output_path.open("ab") as out:
            out.write(f"\n{START_MARKER}{self.nodename} at {time.ctime()}\n".encode())
            out.flush()
            self._proc = subprocess.Popen(
                [str(sbin_dir() / "rabbitmq-server")],
                cwd=self.base_dir,
                env=self._environ(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own group: one signal reaches the whole tree
            )
        self._group = core.ProcessGroup(self._proc.pid)
        if not self.detach:
            self._guard = core.Guard(self._group, self.stop_timeout, self._temporary)

    def _last_output(self) -> str:
        """What the start script printed since the last start began."""
        try:
            text = self.output_path.read_text(errors="replace")
        except OSError:
            return ""
        return text.rpartition(START_MARKER)[2].partition("\n")[2]

    def _wait_ready(self, deadline: float, timeout: float) -> None:
        """Wait until AMQP answers; kill the node on failure or interruption."""
        try:
            core.wait_until_ready(
                f"RabbitMQ node {self.nodename}",
                lambda: amqp_ready(core.HOST, self.amqp_port),
                self._script_exited,
                self.log_tail,
                deadline=deadline,
                timeout=timeout,
                error=RabbitMQHarnessError,
            )
        except BaseException:
            self.kill()
            if self._own_epmd:
                self.epmd.stop()
            raise

    def _script_exited(self) -> bool:
        return self._proc is not None and self._proc.poll() is not None

    def _write_files(self) -> None:
        for folder in ("home", "mnesia", "log", "conf.d"):
            (self.base_dir / folder).mkdir(parents=True, exist_ok=True)
        cookie_path = self.home / ".erlang.cookie"
        if not cookie_path.exists() or cookie_path.read_text().strip() != self.cookie:
            cookie_path.unlink(missing_ok=True)
            cookie_path.write_text(self.cookie)
        cookie_path.chmod(0o400)  # Erlang refuses a cookie others can read
        plugins = ",".join(self.plugins)
        (self.base_dir / "enabled_plugins").write_text(f"[{plugins}].\n")
        (self.base_dir / "rabbitmq.conf").write_text(
            "".join(f"{key} = {value}\n" for key, value in self._config().items())
        )

    def _config(self) -> dict[str, str]:
        """rabbitmq.conf: addresses, and peers to join (the table above)."""
        config = {"listeners.tcp.1": f"{core.HOST}:{self.amqp_port}"}
        if self.management_port is not None:
            config["management.tcp.ip"] = core.HOST
            config["management.tcp.port"] = str(self.management_port)
        if self.cluster_with:
            config["cluster_formation.peer_discovery_backend"] = "classic_config"
            for index, peer in enumerate(self.cluster_with, start=1):
                config[f"cluster_formation.classic_config.nodes.{index}"] = peer
        return config

    def _environ(self) -> dict[str, str]:
        """The start script's and the CLI tools' environment (the table above)."""
        return {
            **_clean_environ(),
            "HOME": str(self.home),
            "LC_ALL": "C.UTF-8",  # the CLI tools warn on other encodings
            "ERL_EPMD_PORT": str(self.epmd.port),
            "ERL_EPMD_ADDRESS": core.HOST,
            "ERL_CRASH_DUMP": str(self.base_dir / "erl_crash.dump"),
            "RABBITMQ_CONF_ENV_FILE": os.devnull,
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_CONFIG_FILE": str(self.base_dir / "rabbitmq.conf"),
            "RABBITMQ_CONFIG_FILES": str(self.base_dir / "conf.d"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.base_dir / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base_dir / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.base_dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base_dir / "log"),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": (
                "-start_epmd false -kernel inet_dist_use_interface {127,0,0,1}"
            ),
            "RABBITMQ_CTL_DIST_PORT_MIN": "0",
            "RABBITMQ_CTL_DIST_PORT_MAX": "0",
        }

    def _cli(self, tool: str, args: Sequence[str], timeout: float) -> str:
        command = [str(sbin_dir() / tool), "-n", self.nodename, *args]
        try:
            done = subprocess.run(
                command,
                env=self._environ(),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as err:
            raise RabbitMQHarnessError(
                f"{tool} {' '.join(args)} on {self.nodename}: "
                f"no answer in {timeout:.0f}s"
            ) from err
        if done.returncode != 0:
            raise RabbitMQHarnessError(
                f"{tool} {' '.join(args)} on {self.nodename} failed "
                f"({done.returncode}):\n{done.stderr}{done.stdout}"
            )
        return done.stdout

    def _signal_script(self, sig: signal.Signals) -> None:
        """Signal the start script, which forwards SIGTERM to the Erlang VM
        and waits for it. (Signalling the whole group would also hit the VM's
        port helper, whose early death makes the VM abort.)"""
        if self._group is not None:
            self._group.signal(sig, leader_only=True)

    def _kill_group(self) -> None:
        if self._group is None:
            return
        self._group.signal(signal.SIGKILL)
        if not self._group.wait_gone(10.0, self._proc):
            raise RabbitMQHarnessError(f"{self.nodename} survived SIGKILL")

    def _adopt(self, pid: int) -> None:
        """Take over a node another process started (the CLI's dev node)."""
        self._group = core.ProcessGroup(pid)

    def _forget_process(self) -> None:
        if self._guard is not None:
            self._guard.release()
        self._group, self._proc, self._guard = None, None, None

    def _clean_up_at_exit(self) -> None:
        if self._own_dir:
            self.close()
        else:
            self.stop()


class RabbitMQCluster(core.StartsAndCloses):
    """Nodes clustered from their first boot, sharing one epmd and cookie.

    Quorum queues declared on it get a member on every node (the server's
    default group size is the cluster's size). ``nodes[i]`` can be killed,
    stopped and restarted alone while the others serve.
    """

    def __init__(
        self,
        size: int = 3,
        base_dir: Path | None = None,
        *,
        plugins: Sequence[str] = (),
    ) -> None:
        if size < 1:
            raise RabbitMQHarnessError(f"a cluster needs a node, not {size}")
        self.base_dir, self._own_dir = core.data_folder(base_dir, "rabbitmq-cluster-")
        self.epmd = Epmd()
        tag = secrets.token_hex(3)
        names = [f"rmq-{tag}-{index}" for index in range(1, size + 1)]
        seed = f"{names[0]}@{NODE_HOST}"
        cookie = secrets.token_hex(16)
        # The first node forms the cluster; the others join it at their first
        # boot. Naming no peers for the first spares it the server's ten
        # half-second attempts to join peers that are not up yet.
        self.nodes = [
            RabbitMQNode(
                self.base_dir / name,
                name,
                epmd=self.epmd,
                cookie=cookie,
                plugins=plugins,
                cluster_with=[seed] if index else [],
            )
            for index, name in enumerate(names)
        ]
        if self._own_dir:
            for node in self.nodes:
                node._temporary = [node.base_dir, self.base_dir]
        atexit.register(self.close)

    @property
    def uris(self) -> list[str]:
        """Every node's AMQP URI, in node order."""
        return [node.uri for node in self.nodes]

    def start(self, timeout: float = 180.0) -> None:
        """Boot a new cluster's first node, then the others together: each
        joins the first at boot (peer discovery), so none waits on a
        ``join_cluster`` and its app restart. Nodes that were members before
        (a ``stop()`` then ``start()``) wait at boot for the peers they last
        saw, so they all start at once. Returns once every node serves AMQP
        and the first lists all as running. Three nodes booting share the
        machine's cores, hence the longer default timeout."""
        began = time.monotonic()
        deadline = began + timeout
        first, *rest = self.nodes
        together = self.nodes if any(n.has_data for n in self.nodes) else rest
        try:
            if first not in together and not first.running:
                first._launch()
                first._wait_ready(deadline, timeout)
            for node in together:
                if not node.running:
                    node._launch()
            for node in together:
                node._wait_ready(deadline, timeout)
            self._wait_clustered(deadline)
        except BaseException:
            self.stop()
            raise
        log.info(
            "RabbitMQ cluster of %d ready in %.1fs",
            len(self.nodes),
            time.monotonic() - began,
        )

    def running_nodes(self) -> set[str]:
        """The node names a running member reports as running."""
        for node in self.nodes:
            if node.running:
                status = json.loads(node.ctl("cluster_status", "--formatter", "json"))
                return set(status["running_nodes"])
        return set()

    def stop(self) -> None:
        """Signal every node at once (none waits on another's shutdown), then
        stop the shared epmd."""
        for node in self.nodes:
            node._signal_script(signal.SIGTERM)
        for node in self.nodes:
            node.stop()
        self.epmd.stop()

    def close(self) -> None:
        """Stop, and delete the data folder if this object made it (killing
        the nodes first: their data is about to go)."""
        if self._own_dir:
            for node in self.nodes:  # all at once, then wait for each
                if node._group is not None:
                    node._group.signal(signal.SIGKILL)
            for node in self.nodes:
                node.kill()
        self.stop()
        for node in self.nodes:
            atexit.unregister(node._clean_up_at_exit)
        if self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)
        atexit.unregister(self.close)

    def _wait_clustered(self, deadline: float) -> None:
        expected = {node.nodename for node in self.nodes}
        while True:
            running = self.running_nodes()
            if running == expected:
                return
            if time.monotonic() > deadline:
                raise RabbitMQHarnessError(
                    f"cluster did not form: running {sorted(running)}, expected "
                    f"{sorted(expected)}\n{self.nodes[-1].log_tail()}"
                )
            time.sleep(0.5)


# --- CLI: a long-lived node for development and CI scripts --------------------


class RabbitMQDevNode(core.DevNode[RabbitMQNode]):
    """This package's dev node, with its own epmd."""

    name = "RabbitMQ"
    variable = "RABBITMQ_URI"

    def make(self, data_dir: Path) -> RabbitMQNode:
        return RabbitMQNode(data_dir, "rmq-dev", detach=True)

    def record(self, node: RabbitMQNode) -> dict[str, Any]:
        return {
            "name": node.name,
            "base_dir": str(node.base_dir),
            "pid": node.pid,
            "amqp_port": node.amqp_port,
            "dist_port": node.dist_port,
            "epmd_port": node.epmd.port,
            "epmd_pid": node.epmd.pid,
        }

    def adopt(self, state: Mapping[str, Any]) -> RabbitMQNode:
        base_dir = Path(state["base_dir"])
        node = RabbitMQNode(
            base_dir,
            state["name"],
            amqp_port=int(state["amqp_port"]),
            dist_port=int(state["dist_port"]),
            detach=True,
        )
        pid, epmd_pid, epmd_port = (
            int(state[key]) for key in ("pid", "epmd_pid", "epmd_port")
        )
        # Recycled PIDs: the start script's environment names the node's
        # folder (its command line is only the script's path); epmd's command
        # line names its port.
        epmd_ours = core.process_has(epmd_pid, "cmdline", "-port", str(epmd_port))
        node.epmd = Epmd(epmd_port, pid=epmd_pid if epmd_ours else None, detach=True)
        mnesia = f"RABBITMQ_MNESIA_BASE={base_dir / 'mnesia'}"
        if core.process_has(pid, "environ", mnesia):
            node._adopt(pid)
        return node

    def answers(self, node: RabbitMQNode) -> bool:
        return amqp_ready(core.HOST, node.amqp_port)

    def address(self, node: RabbitMQNode) -> str:
        return node.uri


def main(argv: list[str] | None = None) -> int:
    return RabbitMQDevNode("rabbitmq", cache_root()).main(argv)


if __name__ == "__main__":
    sys.exit(main())
