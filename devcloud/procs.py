"""Machine processes: started with devcloud's marker in their environment, killed by it.

Every process of a machine carries `DEVCLOUD_MACHINE=<run-id>:<machine-id>`. Killing by process
group alone would miss what a user detaches on purpose (`setsid nohup ... &` leaves the group
and the session), so a stop also scans /proc/*/environ for the marker, which children inherit
whatever they do to their session.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable

logger = logging.getLogger(__name__)

MARKER_VAR = "DEVCLOUD_MACHINE"
_MARKER_PREFIX = (MARKER_VAR + "=").encode()

# A process that forks while we scan escapes one round; the next round sees the child.
_KILL_ROUNDS = 50


def marker(run_id: str, machine_id: int) -> str:
    return f"{run_id}:{machine_id}"


def spawn(command: str, *, cwd: str, env: dict[str, str], stdin=subprocess.DEVNULL, stdout, stderr) -> subprocess.Popen:
    """`bash -c COMMAND` in its own session, so its group can be signalled as a whole."""
    return subprocess.Popen(
        ["bash", "-c", command],
        cwd=cwd,
        env=env,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
        close_fds=True,
    )


def marked_processes() -> Iterable[tuple[int, str]]:
    """(pid, marker value) of every live process carrying a devcloud marker."""
    own_pid = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == own_pid:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                environ = handle.read()
        except OSError:  # gone, or not ours to read
            continue
        for item in environ.split(b"\0"):
            if item.startswith(_MARKER_PREFIX):
                yield int(entry), item[len(_MARKER_PREFIX) :].decode(errors="replace")
                break


def kill_marked(matches: Callable[[str], bool], groups: Iterable[subprocess.Popen] = ()) -> int:
    """SIGKILL the given process groups and every process whose marker `matches`; returns how
    many marked processes were found. Zombies have an empty environ, so they do not count."""
    for process in groups:
        if process.returncode is None:  # not reaped yet, so its pid is still its group's id
            _signal_group(process.pid, signal.SIGKILL)
    found = 0
    for _ in range(_KILL_ROUNDS):
        pids = [pid for pid, value in marked_processes() if matches(value)]
        if not pids:
            return found
        found += len(pids)
        for pid in pids:
            _signal(pid, signal.SIGKILL)
        time.sleep(0.005)
    logger.warning("processes kept appearing after %d kill rounds", _KILL_ROUNDS)
    return found


def signal_group(process: subprocess.Popen, signum: int) -> None:
    if process.returncode is None:
        _signal_group(process.pid, signum)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signum)
