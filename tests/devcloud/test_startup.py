"""The process itself: ready line, clean shutdown, and cleanup of a previous run's leftovers."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import devcloud
from devcloud.testing import run_devcloud

from .helpers import Vast, process_alive, wait_for


def _machine_with_a_sleeper(cloud) -> tuple[dict, list[int]]:
    vast = Vast(cloud)
    instance_id = vast.create(onstart="setsid nohup sleep 1000 > /dev/null 2>&1 < /dev/null & exec sleep 1000")
    machine = wait_for(lambda: (m := cloud.machine(instance_id)) and len(m["pids"]) >= 2 and m, what="sleepers")
    return machine, machine["pids"]


def test_sigterm_kills_machine_processes(tmp_path):
    with run_devcloud(tmp_path / "state") as cloud:
        _, pids = _machine_with_a_sleeper(cloud)
    assert cloud.process.returncode == 0
    assert not any(process_alive(pid) for pid in pids)


def test_start_up_removes_what_a_killed_run_left(tmp_path):
    with run_devcloud(tmp_path / "state") as crashed:
        machine, pids = _machine_with_a_sleeper(crashed)
        crashed.process.send_signal(signal.SIGKILL)
        crashed.process.wait()
    assert all(process_alive(pid) for pid in pids)

    with run_devcloud(tmp_path / "state") as cloud:
        assert not any(process_alive(pid) for pid in pids)
        assert not os.path.exists(machine["dir"])
        assert cloud.machines() == []
        assert Vast(cloud).create() > machine["id"]  # ids are never reused


def test_bad_arguments_exit_with_usage(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "devcloud", "--state-dir", str(tmp_path), "--api-key", "k", "--boot-delay", "soon"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(devcloud.__file__).parent.parent)},
    )
    assert result.returncode == 2
    assert "boot delay" in result.stderr
