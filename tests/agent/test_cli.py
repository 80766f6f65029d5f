"""`python -m agent run` as a process: its exit statuses and what it logs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from .helpers import TOKEN, wait_for

REPO = Path(__file__).resolve().parents[2]


def agent_env(home: Path, **extra: str) -> dict[str, str]:
    """This environment without anything the agent reads, and a HOME of its own."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DUMONT_", "DEVCLOUD_", "JUPYTER_", "XDG_"))}
    return {**clean, "HOME": str(home), "PYTHONPATH": str(REPO), **extra}


def run_agent(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agent", "run", *args],
        cwd=REPO,
        env=agent_env(home, **(env or {})),
        capture_output=True,
        text=True,
        timeout=20,
    )


def agent_args(url: str, tmp_path: Path, *extra: str) -> list[str]:
    return ["--url", url, "--instance-id", "inst-1", "--token", TOKEN, "--interval", "0.05",
            "--gpu-backend", "none", "--state-dir", str(tmp_path / "state"), *extra]


def test_missing_configuration_exits_2_with_a_clear_message(tmp_path):
    result = run_agent(tmp_path, env={"DUMONT_URL": "http://127.0.0.1:8000"})

    assert result.returncode == 2
    assert "cannot start: --instance-id (or DUMONT_INSTANCE_ID) is required" in result.stderr


def test_stop_agent_exits_0_after_heartbeats_with_real_activity(tmp_path, control_plane):
    control_plane.deliver("echo", {"delay_s": 0.2}, id="warm-up")  # a few heartbeats with samples first
    control_plane.deliver("stop_agent", id="stop")

    result = run_agent(tmp_path, *agent_args(control_plane.url, tmp_path))

    assert result.returncode == 0, result.stderr
    assert "stop_agent done and reported; exiting" in result.stderr
    samples = control_plane.samples()
    assert samples, result.stderr
    assert {sample.gpu_error for sample in samples} == {"GPU monitoring is off (--gpu-backend none)"}
    assert any(sample.activity.cpu_percent > 0 for sample in samples)  # read from /proc/stat
    assert {sample.activity.jupyter_busy_kernels for sample in samples} == {None}  # no Jupyter in HOME
    assert (tmp_path / "state" / "commands.json").exists()
    assert control_plane.rejected == []


def test_a_rejected_token_exits_3(tmp_path, control_plane):
    control_plane.status = 401

    result = run_agent(tmp_path, *agent_args(control_plane.url, tmp_path))

    assert result.returncode == 3
    assert "control plane rejected this agent's token (HTTP 401" in result.stderr


def test_out_of_reach_too_long_exits_4_after_trying_to_protect(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"

    result = run_agent(tmp_path, *agent_args(url, tmp_path, "--protect-after", "0.3"))

    assert result.returncode == 4
    assert "control plane unreachable (ConnectionRefused); retrying in" in result.stderr
    assert "protecting the workspace, then stopping" in result.stderr
    assert "cannot protect /workspace" in result.stderr  # no workspace (or settings) on this host


def test_sigterm_stops_the_agent_cleanly(tmp_path, control_plane):
    agent = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", *agent_args(control_plane.url, tmp_path)],
        cwd=REPO, env=agent_env(tmp_path), stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for(lambda: len(control_plane.heartbeats) >= 2, what="two heartbeats")
    finally:
        agent.terminate()
    _, stderr = agent.communicate(timeout=10)

    assert agent.returncode == 0
    assert "SIGTERM: stopping" in stderr
