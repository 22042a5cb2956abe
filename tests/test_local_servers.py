"""Checks of what the server runners of generated packages share
(``tests/local_servers.py``, loaded from the template)."""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

from tests.local_servers import (
    HOST,
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
