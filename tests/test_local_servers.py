"""Checks of what the server runners of generated packages share
(``tests/local_servers.py``, loaded from the template)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.local_servers import (
    HOST,
    DevNode,
    Guard,
    ProcessGroup,
    ephemeral_ports,
    free_ports,
)


def test_ports_are_free_and_never_ones_the_kernel_hands_out() -> None:
    ports = free_ports(200)
    assert len(set(ports)) == 200
    assert all(10000 <= port < ephemeral_ports().start for port in ports)
    with socket.socket() as sock:
        sock.bind((HOST, ports[0]))  # free: nothing else is bound to it


def test_a_process_group_whose_number_came_round_again_is_not_signalled() -> None:
    sleeper = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        group = ProcessGroup(sleeper.pid)
        assert group.alive()
        group.started = "a process that ended"  # as if the number were reused
        assert not group.alive()
        group.signal(signal.SIGKILL)
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not ProcessGroup(sleeper.pid).alive()


def test_an_abandoned_guard_ends_its_group_and_deletes_its_folders(
    tmp_path: Path,
) -> None:
    def guarded(folder: Path) -> tuple[subprocess.Popen[bytes], Guard]:
        (folder / "data").mkdir(parents=True)
        sleeper = subprocess.Popen(["sleep", "60"], start_new_session=True)
        return sleeper, Guard(ProcessGroup(sleeper.pid), 10.0, [folder, tmp_path])

    kept, released = guarded(tmp_path / "kept")
    released.release()  # as stop() does: the guard exits, touching nothing
    ended, abandoned = guarded(tmp_path / "ended")
    assert abandoned._proc.stdin is not None
    abandoned._proc.stdin.close()  # as when this process dies
    assert ended.wait(timeout=30) == -signal.SIGTERM  # the grace period's signal
    abandoned._proc.wait(timeout=30)
    assert not (tmp_path / "ended").exists()
    assert kept.poll() is None and (tmp_path / "kept" / "data").is_dir()
    assert tmp_path.is_dir()  # not empty: only deleted once it is
    kept.kill()
    kept.wait()


class Recorded:
    """A stand-in server for the dev-node CLI: running while it has a pid."""

    def __init__(self, folder: Path, pid: int | None = None) -> None:
        self.folder, self.pid = folder, pid

    @property
    def running(self) -> bool:
        return self.pid is not None

    @property
    def log_path(self) -> Path:
        return self.folder / "log"

    def start(self) -> None:
        self.pid = os.getpid()

    def stop(self) -> None:
        self.pid = None


class RecordedDevNode(DevNode[Recorded]):
    name = "Recorded"
    variable = "RECORDED"

    def make(self, data_dir: Path) -> Recorded:
        return Recorded(data_dir)

    def record(self, node: Recorded) -> dict[str, Any]:
        return {"pid": node.pid, "folder": str(node.folder)}

    def adopt(self, state: Mapping[str, Any]) -> Recorded:
        return Recorded(Path(state["folder"]), state["pid"])

    def answers(self, node: Recorded) -> bool:
        return True

    def address(self, node: Recorded) -> str:
        return str(node.folder)


def test_each_package_root_keeps_a_dev_node_of_its_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    mine, other = (
        RecordedDevNode("recorded", cache, tmp_path / root) for root in ("a", "b")
    )
    assert mine.start() == 0
    assert capsys.readouterr().out == f"RECORDED={mine.data_dir}\n"
    assert other.status() == 1  # another package sees no node
    assert other.stop() == 0 and mine.status() == 0  # nor stops this one
    assert "no Recorded node recorded" in capsys.readouterr().err
    assert mine.stop() == 0 and mine.status() == 1
    assert not mine.folder.exists()
    assert mine.folder.parent == other.folder.parent == cache / "dev-nodes"
