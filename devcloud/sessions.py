"""One SSH `exec` request: `bash -c CMD` on the machine, wired to the channel.

Two threads per command: this session's (output to the channel, then the exit status) and a
stdin pump (channel to the process, so `cat > file` uploads work). Both end when the command
ends or the client goes away, so long-lived connections do not accumulate threads.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import threading
import time
from typing import Protocol

import paramiko

from . import procs

logger = logging.getLogger(__name__)

# After bash exits, output still coming from children it left behind is forwarded this long.
# OpenSSH would wait for every holder of the pipe to close it; a detached `nohup x &` whose
# output was not redirected would then hang the client forever, which helps nobody here.
OUTPUT_GRACE_S = 0.3

# A client that disconnects mid-command hangs the command up (SIGHUP to its process group, as a
# terminal would); bash itself is killed if it is still there after this long.
HANGUP_GRACE_S = 2.0

_POLL_S = 0.1


class SessionHost(Protocol):
    """What a session needs from its machine."""

    disk: str

    def spawn(self, command: str, *, extra_env: dict[str, str] | None = None, **streams) -> subprocess.Popen:
        """Start and track `bash -c COMMAND` on the machine; OSError when it cannot."""

    def untrack(self, process: subprocess.Popen) -> None: ...


class ExecSession:
    def __init__(self, channel: paramiko.Channel, command: str, *, host: SessionHost, extra_env: dict[str, str]):
        self.channel = channel
        self.command = command
        self.host = host
        self.extra_env = extra_env
        self._hung_up_at: float | None = None

    def start(self) -> None:
        threading.Thread(target=self._run, name=f"ssh-exec-{self.channel.get_id()}", daemon=True).start()

    def _run(self) -> None:
        try:
            process = self.host.spawn(
                self.command,
                extra_env=self.extra_env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except OSError as exc:
            self._fail(f"devcloud: cannot run the command: {exc}\n", 127)
            return
        try:
            threading.Thread(target=self._pump_stdin, args=(process,), name="ssh-stdin", daemon=True).start()
            self._forward_until_exit(process)
            self._send_exit_status(process.returncode)
        finally:
            self.host.untrack(process)
            close_after_reply(self.channel)  # also wakes the stdin pump

    def _forward_until_exit(self, process: subprocess.Popen) -> None:
        streams = {
            process.stdout.fileno(): (process.stdout, self.channel.sendall),
            process.stderr.fileno(): (process.stderr, self.channel.sendall_stderr),
        }
        exited_at = None
        try:
            while True:
                if process.poll() is not None:
                    exited_at = exited_at or time.monotonic()
                    if not streams or time.monotonic() - exited_at > OUTPUT_GRACE_S:
                        return
                self._hang_up_if_client_gone(process)
                if streams:
                    self._forward_ready(streams, process)
                else:
                    time.sleep(_POLL_S)
        finally:
            for stream, _ in streams.values():
                stream.close()

    def _forward_ready(self, streams: dict, process: subprocess.Popen) -> None:
        ready, _, _ = select.select(list(streams), [], [], _POLL_S)
        for fd in ready:
            data = os.read(fd, 65536)
            if not data:
                streams.pop(fd)[0].close()
                continue
            if self._hung_up_at is not None:
                continue  # keep draining so the command is not blocked on a full pipe
            try:
                streams[fd][1](data)
            except (OSError, EOFError):
                self._hang_up(process)

    def _hang_up_if_client_gone(self, process: subprocess.Popen) -> None:
        if self._hung_up_at is None:
            transport = self.channel.get_transport()
            if self.channel.closed or transport is None or not transport.is_active():
                self._hang_up(process)
        elif time.monotonic() - self._hung_up_at > HANGUP_GRACE_S and process.poll() is None:
            process.kill()

    def _hang_up(self, process: subprocess.Popen) -> None:
        self._hung_up_at = time.monotonic()
        procs.signal_group(process, signal.SIGHUP)

    def _pump_stdin(self, process: subprocess.Popen) -> None:
        try:
            while data := self.channel.recv(65536):
                _write_all(process.stdin, data)
        except (OSError, EOFError):
            pass  # the command stopped reading, or the channel went away
        finally:
            with contextlib.suppress(OSError):
                process.stdin.close()

    def _send_exit_status(self, returncode: int | None) -> None:
        if returncode is None:
            returncode = 255
        elif returncode < 0:  # killed by a signal: report it the way a shell does
            returncode = 128 - returncode
        with contextlib.suppress(OSError, EOFError):
            self.channel.send_exit_status(returncode)

    def _fail(self, message: str, status: int) -> None:
        try:
            self.channel.sendall_stderr(message)
            self.channel.send_exit_status(status)
        except (OSError, EOFError):
            pass
        close_after_reply(self.channel)


def refuse_shell(channel: paramiko.Channel) -> None:
    """Interactive shells are not emulated; say so on the channel instead of hanging."""

    def explain() -> None:
        try:
            channel.sendall_stderr(b"devcloud: interactive shells are not supported; run commands with exec\r\n")
            channel.send_exit_status(1)
        except (OSError, EOFError):
            pass
        close_after_reply(channel)

    threading.Thread(target=explain, name="ssh-shell-refusal", daemon=True).start()


def close_after_reply(channel: paramiko.Channel) -> None:
    """Close the channel, but not before paramiko has answered the request that started it.

    paramiko answers an exec/shell request on its transport thread after our callback returns,
    while the session runs on a thread of its own; a fast command could close the channel first,
    and the client would then fail the request with "Channel closed". The transport thread
    handles incoming messages one at a time, so the client's answer to a global request sent
    from here is handled only after that thread has left the callback and sent its answer: one
    round trip (what OpenSSH's keepalives do) puts the close after it.
    """
    transport = channel.get_transport()
    if transport is not None and transport.is_active():
        transport.global_request("keepalive@openssh.com", wait=True)
    channel.close()


def _write_all(stream, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = stream.write(view)
        view = view[written:]
