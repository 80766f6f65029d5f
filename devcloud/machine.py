"""One emulated machine: its record (what the API shows) and its runtime on this host.

A Machine's fields are guarded by the Cloud's table lock; its `host` (environment, processes,
authorized keys) has a small lock of its own because SSH threads use it without the table.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass, field

import paramiko

from . import procs
from .faults import MachineFaults
from .ssh import SSHServer

# Variables every machine process gets besides the user's; the rest of devcloud's own
# environment stays out, as it would on a real remote machine.
_PASSED_THROUGH = ("PATH", "LANG", "LC_ALL", "TZ")

OCI_ERROR_MSG = (
    "Error response from daemon: failed to create task for container: failed to create shim "
    "task: OCI runtime create failed: runc create failed: unable to start container process: "
    "error during container init: error running hook #0: nvidia-container-cli: initialization "
    "error: nvml error: driver/library version mismatch: unknown"
)


class MachineDown(OSError):
    """A process was to start on a machine that is stopping or stopped."""


@dataclass
class CreateRequest:
    image: str
    disk_gb: float
    label: str = ""
    onstart: str = ""
    env: dict[str, str] = field(default_factory=dict)
    runtype: str = "ssh_direc ssh_proxy"
    target_state: str = "running"


class MachineHost:
    """The machine as its processes and its SSH server see it (implements SessionHost)."""

    def __init__(self, *, disk: str, user_env: dict[str, str], fixed_env: dict[str, str], marker: str):
        self.disk = disk
        self.marker = marker
        self._base_env = {name: os.environ[name] for name in _PASSED_THROUGH if name in os.environ}
        self._base_env.setdefault("PATH", os.defpath)
        self._base_env.update(HOME=disk, USER="root", LOGNAME="root", SHELL="/bin/bash")
        self._user_env = dict(user_env)
        self._fixed_env = dict(fixed_env)  # the marker and DEVCLOUD_*: nobody may override them
        self._lock = threading.Lock()
        self._processes: set[subprocess.Popen] = set()
        self._key_blobs: set[bytes] = set()
        self._accepting = False  # processes may start only between open() and kill_all()

    def process_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {**self._base_env, **self._user_env, **(extra or {}), **self._fixed_env}

    def open(self) -> None:
        with self._lock:
            self._accepting = True

    def spawn(self, command: str, *, extra_env: dict[str, str] | None = None, **streams) -> subprocess.Popen:
        """Start `bash -c COMMAND` on the machine and track it; raises MachineDown once kill_all
        has begun, so nothing can start behind a stop's back."""
        with self._lock:
            if not self._accepting:
                raise MachineDown("the machine is not running")
            process = procs.spawn(command, cwd=self.disk, env=self.process_env(extra_env), **streams)
            self._processes.add(process)
            return process

    def untrack(self, process: subprocess.Popen) -> None:
        with self._lock:
            self._processes.discard(process)

    def authorize(self, key_blob: bytes) -> None:
        with self._lock:
            self._key_blobs.add(key_blob)

    def is_authorized(self, key: paramiko.PKey) -> bool:
        with self._lock:
            return key.asbytes() in self._key_blobs

    def kill_all(self) -> None:
        with self._lock:
            self._accepting = False
            groups = list(self._processes)
        procs.kill_marked(lambda value: value == self.marker, groups=groups)


@dataclass(eq=False)
class Machine:
    id: int
    offer: dict  # a copy of the offer as it was rented
    request: CreateRequest
    dir: str
    token: str
    faults: MachineFaults
    host: MachineHost
    host_key: paramiko.PKey
    ssh_port: int
    created_at: float = field(default_factory=time.time)
    actual_status: str | None = None
    intended_status: str = "running"
    status_msg: str = ""
    generation: int = 0  # bumped by every start/stop/destroy; a boot of an older one gives up
    boots: int = 0
    running_since: float | None = None
    cancel_boot: threading.Event | None = None
    ssh: SSHServer | None = None
    destroyed: bool = False
    gpu_util: list[float] = field(default_factory=list)
    # Serializes lifecycle side effects (kill, SSH start/stop, onstart) of this machine.
    ops_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def disk(self) -> str:
        return os.path.join(self.dir, "disk")

    @property
    def onstart_log(self) -> str:
        return os.path.join(self.dir, "onstart.log")

    def api_view(self) -> dict:
        """The instance object of vast's API."""
        offer, request = self.offer, self.request
        running = self.actual_status == "running"
        assigned = self.actual_status is not None  # vast leaves the address empty while provisioning
        storage_per_hour = offer["storage_cost"] * request.disk_gb / (30 * 24)
        return {
            "id": self.id,
            "label": request.label,
            "actual_status": self.actual_status,
            "intended_status": self.intended_status,
            "cur_state": self.intended_status,
            "next_state": self.intended_status,
            "status_msg": self.status_msg,
            "image_uuid": request.image,
            "image_runtype": request.runtype,
            "onstart": request.onstart,
            "extra_env": [[name, value] for name, value in request.env.items()],
            "ssh_host": "127.0.0.1" if assigned else None,
            "ssh_port": self.ssh_port if assigned else None,
            "ssh_idx": "1",
            # vast really sends the address with trailing whitespace; clients must strip it.
            "public_ipaddr": "127.0.0.1\n" if assigned else None,
            "local_ipaddrs": "127.0.0.1 \n",
            "ports": {"22/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(self.ssh_port)}]} if running else {},
            "machine_id": offer["machine_id"],
            "host_id": offer["host_id"],
            "bundle_id": offer["bundle_id"],
            "gpu_name": offer["gpu_name"],
            "num_gpus": offer["num_gpus"],
            "gpu_ram": offer["gpu_ram"],
            "gpu_totalram": offer["gpu_ram"],
            "gpu_util": self.mean_gpu_util() if running else None,
            "cpu_name": offer["cpu_name"],
            "cpu_cores": offer["cpu_cores"],
            "cpu_ram": offer["cpu_ram"],
            "disk_space": request.disk_gb,
            "storage_cost": offer["storage_cost"],
            "dph_base": offer["dph_base"],
            "dph_total": round(offer["dph_base"] + storage_per_hour, 6),
            "inet_up": offer["inet_up"],
            "inet_down": offer["inet_down"],
            "reliability2": offer["reliability2"],
            "geolocation": offer["geolocation"],
            "verification": offer["verification"],
            "direct_port_count": offer["direct_port_count"],
            "start_date": self.created_at,
            "uptime_mins": self.uptime_minutes(),
            "is_bid": False,
        }

    def admin_view(self, pids: list[int]) -> dict:
        return {
            "id": self.id,
            "label": self.request.label,
            "dir": self.dir,
            "disk": self.disk,
            "onstart_log": self.onstart_log,
            "actual_status": self.actual_status,
            "intended_status": self.intended_status,
            "boots": self.boots,
            "ssh_port": self.ssh_port,
            "ssh_listening": self.ssh is not None,
            "host_key": f"{self.host_key.get_name()} {self.host_key.get_base64()}",
            "marker": self.host.marker,
            "token": self.token,
            "pids": pids,
            "faults": self.faults.flags(),
            "ssh_delay_s": self.faults.ssh_delay_s,
            "exit_delay_s": self.faults.exit_delay_s,
            "offer_id": self.offer["id"],
        }

    def uptime_minutes(self) -> float | None:
        # running_since is cleared as soon as a stop or exit begins, before the status changes.
        if self.actual_status != "running" or self.running_since is None:
            return None
        return round((time.time() - self.running_since) / 60, 3)

    def mean_gpu_util(self) -> float:
        return round(sum(self.gpu_util) / len(self.gpu_util), 2) if self.gpu_util else 0.0

    def gpu_view(self) -> dict:
        total = self.offer["gpu_ram"]
        return {
            "gpus": [
                {
                    "index": index,
                    "name": self.offer["gpu_name"],
                    "utilization": util,
                    "memory_used_mb": round(total * util / 100),
                    "memory_total_mb": total,
                }
                for index, util in enumerate(self.gpu_util)
            ]
        }
