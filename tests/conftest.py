"""Shared machinery for the template's own tests: render, install, time.

Every render goes through Copier's Python API from a throw-away git copy of the
working tree, so uncommitted template edits are what gets tested and every
generated answers file carries a real `_commit`.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import copier
import pytest
from packaging.requirements import Requirement

from tests.backends import SERVERS

REPO_ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_FILES = ("copier.yml", "template", "hooks")
TIERS = (
    "basic_pubsub",
    "simple_queuing",
    "reliable_messaging",
    "ordered_messaging",
    "enterprise_streaming",
)
BACKENDS = ("skeleton", *(backend.name for backend in SERVERS))
# Partition leases need an atomic store neither Kafka nor RabbitMQ has.
UNSUPPORTED = {
    ("kafka", "enterprise_streaming"),
    ("rabbitmq", "enterprise_streaming"),
    ("sqs", "ordered_messaging"),
    ("sqs", "enterprise_streaming"),
}

TIMINGS: dict[str, float] = {}
"""Steps timed in this process, by key."""
_UNREPORTED: list[tuple[str, float]] = []
_REPORTED: dict[str, float] = {}
"""Steps timed in any process (xdist's workers send theirs with their reports)."""

# The tools of the environment running the tests (copier, ruff, uv) come first,
# so `.venv/bin/python -m pytest` or `-m tests.benchmark` work without activating it.
os.environ["PATH"] = os.pathsep.join(
    [str(Path(sys.executable).parent), os.environ.get("PATH", "")]
)
# Options given to this run (-x, -k ...) are not for the generated suites it
# runs: `-k` alone would deselect all of a package's tests.
os.environ.pop("PYTEST_ADDOPTS", None)


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    )
    return result.stdout.strip()


def snapshot_template(destination: Path, tag: str = "v0.0.0") -> Path:
    """Copy the template's files into a fresh, tagged git repository."""
    destination.mkdir(parents=True)
    for name in TEMPLATE_FILES:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(
                source, destination / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        elif source.exists():
            shutil.copy2(source, destination / name)
    commit_as_new_repository(destination, "template")
    git(destination, "tag", tag)
    return destination


def commit_as_new_repository(folder: Path, message: str) -> None:
    """Make `folder` a git repository whose one commit holds all its files."""
    git(folder, "init", "-q", "-b", "main")
    git(folder, "add", "-A")
    author = ("-c", "user.name=t", "-c", "user.email=t@example.com")
    git(folder, *author, "commit", "-qm", message)


@pytest.fixture(scope="session")
def template_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return snapshot_template(tmp_path_factory.mktemp("template") / "src")


def render(
    template: Path, destination: Path, vcs_ref: str = "HEAD", **answers: Any
) -> Path:
    """`copier copy --defaults --data ...` through Copier's API, never trusted."""
    copier.run_copy(
        str(template),
        destination,
        data={"broker_name": "acme", **answers},
        defaults=True,
        unsafe=False,
        quiet=True,
        vcs_ref=vcs_ref,
    )
    return destination


SHELL_BLOCK = re.compile(r"```shell\n(.*?)```", re.DOTALL)


def shell_blocks(markdown: str) -> list[str]:
    """The ```shell blocks of a README, in order: what people paste."""
    return SHELL_BLOCK.findall(markdown)


def protean_requirement(package: Path) -> Requirement:
    """The `protean` requirement a rendered package declares."""
    project = tomllib.loads((package / "pyproject.toml").read_text())["project"]
    [protean] = [
        Requirement(r) for r in project["dependencies"] if r.startswith("protean")
    ]
    return protean


def run(*command: str | Path, cwd: Path, env: Mapping[str, str] | None = None) -> str:
    """Run a command; on failure show its output so the test report explains it."""
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.fail(
            f"`{' '.join(map(str, command))}` exited {result.returncode}\n"
            f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
        )
    return result.stdout


def uv() -> str:
    found = shutil.which("uv")
    if found is None:
        pytest.fail("uv is required: pip install uv")
    return found


def with_dev_tools(package: Path) -> tuple[str, ...]:
    """`make_venv` arguments: the package (non-editable, as users get it) and its
    `dev` dependency group (PEP 735), which holds pytest, ruff and mypy."""
    return (str(package), "--group", f"{package / 'pyproject.toml'}:dev")


def make_venv(path: Path, *requirements: str) -> Path:
    """A fresh virtual environment with `requirements` installed; returns its bin/."""
    run(uv(), "venv", "-q", "--python", sys.executable, path, cwd=path.parent)
    run(
        uv(),
        "pip",
        "install",
        "-q",
        "--python",
        path / "bin" / "python",
        *requirements,
        cwd=path.parent,
    )
    return path / "bin"


@contextmanager
def timed(key: str) -> Iterator[None]:
    """Record how long the block took under `key`, for the end-of-run summary."""
    started = time.perf_counter()
    try:
        yield
    finally:
        TIMINGS[key] = time.perf_counter() - started
        _UNREPORTED.append((key, TIMINGS[key]))


class Stopwatch:
    """Times the named steps of one test, labelled with the test's parameters."""

    def __init__(self, label: str) -> None:
        self.label = label

    def step(self, name: str) -> AbstractContextManager[None]:
        return timed(f"{self.label}: {name}")


@pytest.fixture(autouse=True)
def _report_timings(request: pytest.FixtureRequest) -> Iterator[None]:
    """Hand the test's timed steps to its teardown report, which reaches the
    controlling process when xdist runs the test in a worker."""
    yield
    while _UNREPORTED:
        request.node.user_properties.append(("timing", _UNREPORTED.pop(0)))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for name, value in report.user_properties:
        if name == "timing":
            key, seconds = value
            _REPORTED[key] = seconds


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under `pytest -n` (tests/run.sh): the tests of a server backend that use
    its warm server run in one worker, so the server starts once; the rest run
    wherever a worker is free. Server backends' tests come first, their whole
    generated suites before the rest, so the longest runs start early instead
    of ending the run alone."""
    for item in items:
        for backend in SERVERS:
            if item.get_closest_marker(backend.name) and (
                backend.server_fixture in item.fixturenames
                or item.get_closest_marker("warm_server")
            ):
                item.add_marker(pytest.mark.xdist_group(backend.name))

    def order(item: pytest.Item) -> tuple[bool, bool]:
        on_a_server = any(item.get_closest_marker(b.name) for b in SERVERS)
        return not on_a_server, item.path.name != "test_server_packages.py"

    items.sort(key=order)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _REPORTED:
        terminalreporter.section("timings (seconds)")
        for key, seconds in _REPORTED.items():
            terminalreporter.write_line(f"{seconds:8.2f}  {key}")


@pytest.fixture
def stopwatch(request: pytest.FixtureRequest) -> Stopwatch:
    callspec = getattr(request.node, "callspec", None)
    return Stopwatch(callspec.id if callspec else request.node.name)


@contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    """A throw-away `redis-server` on a free loopback port, without persistence,
    stopped by its PID; yields its URL. Raises RuntimeError, with the server's
    log, when it is missing or does not start."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is required: apt-get install redis-server")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    log = workdir / "redis.log"
    process = subprocess.Popen(
        [
            *(binary, "--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no"),  # nothing written to disk
            *("--dir", str(workdir), "--logfile", str(log)),
        ],
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    shown = log.read_text() if log.exists() else "(no log)"
                    raise RuntimeError(
                        f"redis-server did not start:\n{shown}"
                    ) from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One warm Kafka broker for the whole session: the one named by
    `KAFKA_BOOTSTRAP_SERVERS`, or a fresh KRaft node from the runner generated
    Kafka packages carry (`tests/kafka_server.py` loads it from `template/`).

    A broker that cannot start fails the tests with its log; it never skips them.
    """
    from tests.kafka_server import KafkaServer

    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    with KafkaServer(tmp_path_factory.mktemp("kafka") / "data") as server:
        yield server.bootstrap_servers


@pytest.fixture(scope="session")
def rabbitmq_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One warm RabbitMQ node for the whole session: the one named by
    `RABBITMQ_URI`, or a node from the runner generated RabbitMQ packages carry
    (`tests/rabbitmq_server.py` loads it from `template/`).

    A node that cannot start fails the tests with its log; it never skips them.
    """
    from tests.rabbitmq_server import RabbitMQNode

    configured = os.environ.get("RABBITMQ_URI")
    if configured:
        yield configured
        return
    with RabbitMQNode(tmp_path_factory.mktemp("rabbitmq")) as node:
        yield node.uri


@pytest.fixture(scope="session")
def sqs_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One warm ElasticMQ for the whole session: the SQS `SQS_ENDPOINT_URL`
    names, or a node from the runner generated SQS packages carry
    (`tests/sqs_server.py` loads it from `template/`).

    A node that cannot start fails the tests with its log; it never skips them.
    """
    from tests.sqs_server import ElasticMQServer

    configured = os.environ.get("SQS_ENDPOINT_URL")
    if configured:
        yield configured
        return
    with ElasticMQServer(tmp_path_factory.mktemp("sqs") / "data") as server:
        yield server.endpoint_url


def check_lint_types_and_build(bin_dir: Path, package: Path, dist: Path) -> None:
    """What the generated CI runs besides the tests: ruff, mypy, build, twine."""
    run(bin_dir / "ruff", "check", ".", cwd=package)
    run(bin_dir / "ruff", "format", "--check", ".", cwd=package)
    run(bin_dir / "mypy", "--strict", cwd=package)
    run(bin_dir / "python", "-m", "build", "--outdir", dist, package, cwd=package)
    artefacts = sorted(path.name for path in dist.iterdir())
    assert sorted(name.rsplit(".", 1)[-1] for name in artefacts) == ["gz", "whl"]
    run(bin_dir / "twine", "check", "--strict", *dist.iterdir(), cwd=package)


def run_generated_tests(
    bin_dir: Path, package: Path, *paths: str, env: Mapping[str, str] | None = None
) -> tuple[str, list[str]]:
    """Run a generated package's pytest; return its output and its skip lines."""
    output = run(
        bin_dir / "pytest",
        "-q",
        "-rs",
        "-p",
        "no:cacheprovider",
        *paths,
        cwd=package,
        env=env,
    )
    summary = output.strip().splitlines()[-1]
    assert " passed" in summary, summary
    # "1 xfailed" is a test expected to fail that did: not a failure.
    assert not re.search(r"\b\d+ (failed|errors?)\b", summary), summary
    return output, [line for line in output.splitlines() if line.startswith("SKIPPED")]


def processes_under(folder: Path, program: str) -> list[str]:
    """Command lines of running processes of ``program`` (a word of their
    command line: ``kafka.Kafka``, ``beam.smp``) whose files live under ``folder``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:  # exited meanwhile
            continue
        text = b" ".join(args).decode(errors="replace")
        if program in text and str(folder) in text:
            found.append(text)
    return found


def check_cluster_module(
    package: Path,
    backend: str,
    program: str,
    tmp_path: Path,
    stopwatch: Stopwatch,
    cluster: bool = True,
) -> None:
    """A plain `pytest` deselects the package's three-node module; `pytest -m
    cluster` runs every test in it, as CI does, where none may skip, and no
    server process of ``program`` outlives it."""
    module = Path(f"tests/{backend}/test_cluster_faults.py")
    if not cluster:
        # A server without a cluster: no test carries the marker. pytest
        # collects nothing (exit 5), or, from pytest 9, refuses the marker the
        # package does not declare (exit 4); a test that carried it would fail
        # the collection under --strict-markers instead.
        assert not (package / module).exists()
        bin_dir = make_venv(tmp_path / "venv", *with_dev_tools(package))
        marked = subprocess.run(
            [bin_dir / "pytest", "-q", "-p", "no:cacheprovider", "-m", "cluster",
             "--collect-only"],
            cwd=package, capture_output=True, text=True, check=False,
        )  # fmt: skip
        said = marked.stdout + marked.stderr
        assert marked.returncode == 5 or (
            marked.returncode == 4 and "Unknown marker(s)" in said
        ), said
        return
    count = len(re.findall(r"^def test_", (package / module).read_text(), re.M))
    assert count >= 2
    with stopwatch.step("install"):
        bin_dir = make_venv(tmp_path / "venv", *with_dev_tools(package))
    plain = subprocess.run(
        [bin_dir / "pytest", "-q", "-p", "no:cacheprovider", "--collect-only", module],
        cwd=package, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert plain.returncode == 5, plain.stdout  # pytest's "no tests collected"
    assert f"no tests collected ({count} deselected)" in plain.stdout
    scratch = tmp_path / "tmp"  # the cluster's nodes keep their files here
    scratch.mkdir()
    with stopwatch.step("cluster fault tests"):
        output, skipped = run_generated_tests(
            bin_dir, package, "-m", "cluster",
            env={"TMPDIR": str(scratch), "CI": "true"},
        )  # fmt: skip
    summary = output.strip().splitlines()[-1]
    assert re.match(rf"{count} passed, \d+ deselected in ", summary), output[-4000:]
    assert not skipped
    assert not processes_under(scratch, program), "a node outlived the test session"


NEWEST_PROTEAN = "0.18.0"
"""The newest Protean release the packages admit."""


def skipped_for_a_capability(line: str) -> bool:
    """A conformance test skipped for a capability the broker does not
    declare, or a test of what an undeclared one does, skipped because the
    broker declares it."""
    return "does not declare" in line or "the broker declares" in line


def check_the_whole_suite(
    package: Path,
    server_env: str,
    program: str,
    tmp_path: Path,
    stopwatch: Stopwatch,
    undeclared: tuple[str, ...] = (),
) -> list[str]:
    """Install ``package`` non-editable with the newest Protean and run its
    whole suite, the servers its own tests start (``server_env`` empty), as in
    CI: none may fail, no server process of ``program`` may outlive it, and
    only what the default answers leave out may skip. Returns the skip lines."""
    assert NEWEST_PROTEAN in protean_requirement(package).specifier
    with stopwatch.step("install"):
        bin_dir = make_venv(
            tmp_path / "venv", *with_dev_tools(package), f"protean=={NEWEST_PROTEAN}"
        )
    scratch = tmp_path / "tmp"  # every node the package starts keeps its files here
    scratch.mkdir()
    with stopwatch.step("generated tests"):
        _, skipped = run_generated_tests(
            bin_dir, package,
            env={server_env: "", "TMPDIR": str(scratch), "CI": "true"},
        )  # fmt: skip
    # The default answers declare everything the adapter implements except
    # partition leases, so only the partitioning tests may skip, besides the
    # Observatory check when protean[server] is not installed, and the
    # conformance tests the backend's conftest snippet lists, with its
    # reasons, as promises its transport does not make, and the tests of
    # capabilities the backend does not implement (``undeclared``).
    allowed = (
        "STREAM_PARTITIONING",
        "(protean[server])",
        "not promised by this transport",
        "the broker declares",  # a test of what an undeclared capability does
        *(f"the broker does not declare {c}" for c in undeclared),
    )
    assert all(any(a in line for a in allowed) for line in skipped), skipped
    assert not processes_under(scratch, program), "a server outlived the session"
    return skipped


def check_a_lower_tier(
    template_src: Path,
    backend: str,
    env: Mapping[str, str],
    tmp_path: Path,
    *requirements: str,
) -> None:
    """``backend`` at ``simple_queuing`` with no extras: its conformance suite
    skips, naming it, every capability the tier leaves out, and runs the rest."""
    package = render(
        template_src,
        tmp_path / f"protean-{backend}-broker",
        broker_name=backend,
        backend=backend,
        capability_tier="simple_queuing",
        extra_capabilities=[],
    )
    bin_dir = make_venv(tmp_path / "venv", *with_dev_tools(package), *requirements)
    _, skip_lines = run_generated_tests(
        bin_dir, package, "tests/conformance", "tests/test_registration.py",
        env={**env, "CI": "true"},
    )  # fmt: skip
    skipped = " ".join(skip_lines)
    for undeclared in (
        "ACK_NACK",
        "BLOCKING_READ",
        "DEAD_LETTER_QUEUE",
        "MESSAGE_ORDERING",
    ):
        assert f"does not declare {undeclared}" in skipped
    assert "does not declare CONSUMER_GROUPS" not in skipped


def run_without_a_server(
    bin_dir: Path, package: Path, files: Sequence[str], env: Mapping[str, str]
) -> str:
    """Run the package's pytest on ``files`` where it can reach no server and
    start none (``env``): outside CI the tests skip, saying how to get one; in
    CI they fail. Returns what the skipping run printed."""
    command = [str(bin_dir / "pytest"), "-q", "-rs", "-p", "no:cacheprovider", *files]
    outputs = []
    for ci, code in (("", 0), ("true", 1)):
        result = subprocess.run(
            command, cwd=package, env={**env, "CI": ci},
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert result.returncode == code, result.stdout
        outputs.append(result.stdout)
    assert "In CI integration tests must run" in outputs[1]
    return outputs[0]
