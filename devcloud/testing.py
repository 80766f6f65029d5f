"""Start devcloud for a test and talk to its admin API.

    from devcloud.testing import run_devcloud, new_ssh_key

    with run_devcloud(tmp_path / "devcloud") as cloud:
        cloud.url, cloud.api_key          # give these to VastProvider(api_key, base_url=...)
        cloud.faults(oci_error=1)         # merge fault knobs; returns the knobs now in force
        cloud.reset_faults()              # all knobs off, boot delay and time scale as started
        cloud.set_gpu(instance_id, 37)    # or [37, 0] per GPU; returns the GPU view
        cloud.gpu(instance_id)            # {"gpus": [{"index", "utilization", ...}]}
        cloud.machines()                  # internals: dir, disk, pids, ssh_port, token, faults
        cloud.machine(instance_id)        # one of those, or None
        cloud.api("GET", "/api/v1/instances/")   # any call with the account key -> (status, body)

`run_devcloud(state_dir, *, api_key="test-key", boot_delay="fixed:0.2", time_scale=1.0, seed=1,
fail_rate=0.0, offers=40, startup_timeout=30.0)` runs `python -m devcloud` with this interpreter
on a free port (no random machine failures unless `fail_rate` says so), waits
for its ready line and, on exit, stops it with SIGTERM (SIGKILL after 10 s), which kills every
machine process. Its log goes to `<state_dir>.log` (beside the state dir, which devcloud owns).

`new_ssh_key()` returns (paramiko key, "ssh-ed25519 AAAA... devcloud-test") for tests that
need to reach a machine; add the public line with POST /api/v0/ssh/ before creating it.
Uses only the standard library and paramiko, so it works in any test suite.
"""

from __future__ import annotations

import io
import json
import os
import select
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

_PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)


class DevcloudError(RuntimeError):
    pass


@dataclass
class DevCloud:
    url: str
    api_key: str
    state_dir: Path
    log_path: Path
    process: subprocess.Popen

    def api(self, method: str, path: str, body: object = None, *, key: str | None = None) -> tuple[int, object]:
        """Call devcloud with the account key (or `key`); returns (status, decoded body)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {key or self.api_key}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                return reply.status, _decode(reply.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _decode(exc.read())

    def faults(self, **knobs: object) -> dict:
        return self._ok("POST", "/_devcloud/faults", knobs)

    def reset_faults(self) -> dict:
        return self._ok("DELETE", "/_devcloud/faults")

    def set_gpu(self, machine_id: int | str, utilization: float | list[float]) -> dict:
        return self._ok("PUT", f"/_devcloud/machines/{machine_id}/gpu", {"utilization": utilization})

    def gpu(self, machine_id: int | str) -> dict:
        return self._ok("GET", f"/_devcloud/machines/{machine_id}/gpu")

    def machines(self) -> list[dict]:
        return self._ok("GET", "/_devcloud/machines")["machines"]

    def destroyed(self) -> list[dict]:
        """Machines destroyed so far: id, label, destroyed_at (Unix time)."""
        return self._ok("GET", "/_devcloud/destroyed")["destroyed"]

    def machine(self, machine_id: int | str) -> dict | None:
        return next((m for m in self.machines() if m["id"] == int(machine_id)), None)

    def _ok(self, method: str, path: str, body: object = None) -> dict:
        status, reply = self.api(method, path, body)
        if status != 200:
            raise DevcloudError(f"{method} {path} -> {status}: {reply}")
        return reply


@contextmanager
def run_devcloud(
    state_dir: str | os.PathLike,
    *,
    api_key: str = "test-key",
    boot_delay: str = "fixed:0.2",
    time_scale: float = 1.0,
    seed: int = 1,
    fail_rate: float = 0.0,
    offers: int = 40,
    startup_timeout: float = 30.0,
) -> Iterator[DevCloud]:
    state_dir = Path(state_dir)
    state_dir.parent.mkdir(parents=True, exist_ok=True)
    log_path = state_dir.with_name(state_dir.name + ".log")
    command = [
        sys.executable,
        "-m",
        "devcloud",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--state-dir",
        str(state_dir),
        "--api-key",
        api_key,
        "--boot-delay",
        boot_delay,
        "--time-scale",
        str(time_scale),
        "--seed",
        str(seed),
        "--fail-rate",
        str(fail_rate),
        "--offers",
        str(offers),
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_PACKAGE_PARENT, os.environ.get("PYTHONPATH")]))}
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, env=env)
    try:
        url = _wait_for_ready_line(process, startup_timeout, log_path)
        yield DevCloud(url=url, api_key=api_key, state_dir=state_dir, log_path=log_path, process=process)
    finally:
        _stop(process)


def new_ssh_key(comment: str = "devcloud-test") -> tuple[paramiko.PKey, str]:
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    key = paramiko.Ed25519Key.from_private_key(io.StringIO(pem.decode()))
    return key, f"{key.get_name()} {key.get_base64()} {comment}"


def _wait_for_ready_line(process: subprocess.Popen, timeout: float, log_path: Path) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.1)
        if ready:
            line = process.stdout.readline().decode().strip()
            if line.startswith("devcloud ready "):
                return line.split()[-1]
            if not line and process.poll() is not None:
                break
        elif process.poll() is not None:
            break
    _stop(process)
    raise DevcloudError(f"devcloud did not start; log {log_path}:\n{_tail(log_path)}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout:
        process.stdout.close()


def _decode(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
