"""Activity beyond GPU utilization.

Light interactive GPU work reads 0% in NVML, so the control plane also needs to know whether
someone is typing in a terminal, a notebook kernel is computing, or the machine is busy on CPU
or network. The parsers are pure functions over file contents; ActivityMonitor reads the files
and keeps the counters that per-interval rates need.
"""

from __future__ import annotations

import json
import os
import struct
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import wire

UTMP_PATH = "/var/run/utmp"
USER_PROCESS = 7  # utmp entry type of a logged-in session
# glibc's struct utmp on 64-bit Linux, 384 bytes: type, (padding), pid, line[32], id[4],
# user[32], host[256], exit status (2 shorts), session, tv_sec, tv_usec, addr_v6[4], unused[20].
UTMP_RECORD = struct.Struct("<h2xi32s4s32s256shhiii4i20s")
JUPYTER_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class Login:
    user: str
    line: str  # the terminal, relative to /dev: "pts/3"
    pid: int


@dataclass(frozen=True)
class CpuTimes:
    busy: int  # clock ticks, all cores
    total: int


# --- parsers: file contents in, values out -----------------------------------------------------


def parse_utmp(data: bytes) -> list[Login]:
    """The USER_PROCESS entries (logged-in sessions) of a utmp file."""
    logins = []
    for offset in range(0, len(data) - UTMP_RECORD.size + 1, UTMP_RECORD.size):
        kind, pid, line, _id, user = UTMP_RECORD.unpack_from(data, offset)[:5]
        if kind == USER_PROCESS:
            logins.append(Login(user=_c_string(user), line=_c_string(line), pid=pid))
    return logins


def _c_string(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode(errors="replace")


def parse_proc_stat(text: str) -> CpuTimes:
    for line in text.splitlines():
        if line.startswith("cpu "):
            # user nice system idle iowait irq softirq steal [guest guest_nice]; guest time is
            # already counted in user and nice, so only the first eight add up to the total.
            ticks = [int(value) for value in line.split()[1:9]]
            idle = sum(ticks[3:5])
            return CpuTimes(busy=sum(ticks) - idle, total=sum(ticks))
    raise ValueError("/proc/stat has no aggregate 'cpu' line")


def cpu_percent(before: CpuTimes, after: CpuTimes) -> float:
    total = after.total - before.total
    return round(100 * (after.busy - before.busy) / total, 1) if total > 0 else 0.0


def parse_net_dev(text: str) -> dict[str, tuple[int, int]]:
    """Interface -> (received bytes, sent bytes), loopback left out: it is not user traffic."""
    counters = {}
    for line in text.splitlines()[2:]:  # two header lines
        name, colon, rest = line.partition(":")
        fields = rest.split()
        if colon and len(fields) >= 9 and name.strip() != "lo":
            counters[name.strip()] = (int(fields[0]), int(fields[8]))
    return counters


def net_bytes_per_s(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]], elapsed_s: float
) -> tuple[float, float]:
    """Received and sent bytes per second; an interface that appeared or was reset adds nothing."""
    if elapsed_s <= 0:
        return 0.0, 0.0
    received = sent = 0
    for name, (rx, tx) in after.items():
        if name in before:
            received += max(0, rx - before[name][0])
            sent += max(0, tx - before[name][1])
    return round(received / elapsed_s, 1), round(sent / elapsed_s, 1)


def parse_loadavg(text: str) -> float:
    return float(text.split()[0])


def count_busy_kernels(kernels: object) -> int:
    if not isinstance(kernels, list):
        raise ValueError(f"unexpected Jupyter kernels reply: {str(kernels)[:200]}")
    return sum(1 for kernel in kernels if isinstance(kernel, dict) and kernel.get("execution_state") == "busy")


# --- readers -----------------------------------------------------------------------------------


def terminal_sessions(
    utmp_path: str, *, now: float, dev_dir: str = "/dev", proc_dir: str = "/proc"
) -> tuple[int, float | None]:
    """(live login sessions, seconds since the latest input on any of them).

    A terminal's access time moves when it is read, that is when someone types (`w` shows the
    same as IDLE). Entries whose process is gone or whose terminal vanished are stale and left
    out. No utmp file (containers, devcloud machines) means no sessions.
    """
    try:
        logins = parse_utmp(Path(utmp_path).read_bytes())
    except OSError:
        return 0, None
    input_times = []
    for login in logins:
        if not os.path.exists(f"{proc_dir}/{login.pid}"):
            continue
        try:
            input_times.append(os.stat(f"{dev_dir}/{login.line}").st_atime)
        except OSError:
            continue
    if not input_times:
        return 0, None
    return len(input_times), round(max(0.0, now - max(input_times)), 1)


def jupyter_runtime_dirs(env: dict[str, str], home: Path) -> list[Path]:
    """Where running Jupyter servers leave their connection files, by Jupyter's own rules."""
    if env.get("JUPYTER_RUNTIME_DIR"):
        return [Path(env["JUPYTER_RUNTIME_DIR"])]
    data_dir = env.get("JUPYTER_DATA_DIR") or Path(env.get("XDG_DATA_HOME") or home / ".local" / "share") / "jupyter"
    return [Path(data_dir) / "runtime"]


def jupyter_servers(runtime_dirs: list[Path]) -> list[tuple[str, str]]:
    """(base URL ending in '/', token) of each server that left a runtime file."""
    servers = {}
    for directory in runtime_dirs:
        for path in sorted([*directory.glob("jpserver-*.json"), *directory.glob("nbserver-*.json")]):
            try:
                info = json.loads(path.read_text())
                url = info["url"]
            except (OSError, ValueError, KeyError, TypeError):
                continue  # a server writing or removing its file right now
            servers[url.rstrip("/") + "/"] = info.get("token") or ""
    return list(servers.items())


def busy_jupyter_kernels(runtime_dirs: list[Path]) -> int | None:
    """Busy kernels over every Jupyter server that answers; None when none answers."""
    busy, answered = 0, False
    for url, token in jupyter_servers(runtime_dirs):
        try:
            busy += count_busy_kernels(_get_kernels(url, token))
        except (OSError, ValueError):
            continue  # a stale runtime file, or a server going down: not a running notebook
        answered = True
    return busy if answered else None


_LOCAL_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # Jupyter is local


def _get_kernels(url: str, token: str) -> object:
    request = urllib.request.Request(f"{url}api/kernels")
    if token:
        request.add_header("Authorization", f"token {token}")  # kept out of URLs and logs
    with _LOCAL_OPENER.open(request, timeout=JUPYTER_TIMEOUT_S) as reply:
        return json.load(reply)


def _read(path: str, parse: Callable):
    """`parse(text)` of the file, or None where the file is missing or not as expected."""
    try:
        return parse(Path(path).read_text())
    except (OSError, ValueError, IndexError):
        return None


class ActivityMonitor:
    """Reads the activity signals; CPU percent and network rates cover the time since the
    previous read (or since the monitor was made)."""

    def __init__(
        self,
        *,
        env: dict[str, str],
        proc_dir: str = "/proc",
        utmp_path: str = UTMP_PATH,
        dev_dir: str = "/dev",
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ):
        self._proc_dir = proc_dir
        self._utmp_path = utmp_path
        self._dev_dir = dev_dir
        self._jupyter_dirs = jupyter_runtime_dirs(env, Path.home())
        self._clock = clock
        self._wall_clock = wall_clock
        self._cpu = self._read_cpu()
        self._net = self._read_net()
        self._read_at = clock()

    def read(self) -> wire.Activity:
        cpu, net, read_at = self._read_cpu(), self._read_net(), self._clock()
        rx_per_s, tx_per_s = net_bytes_per_s(self._net or {}, net or {}, read_at - self._read_at)
        sessions, input_age = terminal_sessions(
            self._utmp_path, now=self._wall_clock(), dev_dir=self._dev_dir, proc_dir=self._proc_dir
        )
        activity = wire.Activity(
            ssh_sessions=sessions,
            last_input_age_s=input_age,
            jupyter_busy_kernels=busy_jupyter_kernels(self._jupyter_dirs),
            cpu_load_1m=_read(f"{self._proc_dir}/loadavg", parse_loadavg) or 0.0,
            cpu_percent=cpu_percent(self._cpu, cpu) if self._cpu and cpu else 0.0,
            net_rx_bytes_per_s=rx_per_s,
            net_tx_bytes_per_s=tx_per_s,
        )
        self._cpu, self._net, self._read_at = cpu, net, read_at
        return activity

    def _read_cpu(self) -> CpuTimes | None:
        return _read(f"{self._proc_dir}/stat", parse_proc_stat)

    def _read_net(self) -> dict[str, tuple[int, int]] | None:
        return _read(f"{self._proc_dir}/net/dev", parse_net_dev)
