"""The SSH server of one machine: paramiko on 127.0.0.1, public-key auth, exec and SFTP.

It listens only while the machine is running; while loading, connections are refused, which is
how a client learns that "running" in the API is not yet "ready".
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .sessions import ExecSession, SessionHost, refuse_shell
from .sftp import DiskSFTP

logger = logging.getLogger(__name__)

# How long a client may take from TCP connect to finished authentication.
_HANDSHAKE_TIMEOUT_S = 30.0


def load_or_create_host_key(path: str) -> paramiko.PKey:
    """An Ed25519 host key kept at `path`, so a machine keeps its identity across stop/start."""
    try:
        return paramiko.Ed25519Key.from_private_key_file(path)
    except FileNotFoundError:
        pass
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    with open(path, "wb", opener=lambda name, flags: os.open(name, flags, 0o600)) as handle:
        handle.write(pem)
    return paramiko.Ed25519Key.from_private_key_file(path)


def public_key_blob(openssh_line: str) -> bytes | None:
    """The key blob of an `authorized_keys` style line ('type base64 [comment]'), or None."""
    parts = openssh_line.split()
    if len(parts) < 2:
        return None
    try:
        return base64.b64decode(parts[1], validate=True)
    except ValueError:
        return None


class _MachineInterface(paramiko.ServerInterface):
    """Decisions for one connection; callbacks run on paramiko's transport thread."""

    def __init__(self, host: SessionHost, is_authorized: Callable[[paramiko.PKey], bool]):
        self.host = host
        self.is_authorized = is_authorized
        self._env: dict[int, dict[str, str]] = {}

    def get_allowed_auths(self, username):
        return "publickey"

    def check_auth_none(self, username):
        return paramiko.AUTH_FAILED

    def check_auth_password(self, username, password):
        return paramiko.AUTH_FAILED

    def check_auth_publickey(self, username, key):
        # Any user name maps to root, as on vast's images.
        return paramiko.AUTH_SUCCESSFUL if self.is_authorized(key) else paramiko.AUTH_FAILED

    def check_channel_request(self, kind, chanid):
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_env_request(self, channel, name, value):
        self._env.setdefault(channel.get_id(), {})[_text(name)] = _text(value)
        return True

    def check_channel_pty_request(self, channel, term, width, height, pixelwidth, pixelheight, modes):
        return True  # accepted but ignored: commands run without a terminal

    def check_channel_exec_request(self, channel, command):
        extra_env = self._env.pop(channel.get_id(), {})
        ExecSession(channel, _text(command), host=self.host, extra_env=extra_env).start()
        return True

    def check_channel_shell_request(self, channel):
        refuse_shell(channel)
        return True


class SSHServer:
    def __init__(
        self,
        *,
        host_key: paramiko.PKey,
        host: SessionHost,
        is_authorized: Callable[[paramiko.PKey], bool],
        banner_delay_s: float = 0.0,
        name: str = "machine",
    ):
        self.host_key = host_key
        self.host = host
        self.is_authorized = is_authorized
        self.banner_delay_s = banner_delay_s
        self.name = name
        self.port: int | None = None
        self._socket: socket.socket | None = None
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._transports: set[paramiko.Transport] = set()

    def start(self, preferred_port: int | None) -> int:
        """Listen on the preferred port when it is free, else on any; returns the port."""
        self._socket = _listen(preferred_port)
        self.port = self._socket.getsockname()[1]
        threading.Thread(target=self._accept_loop, name=f"ssh-accept-{self.name}", daemon=True).start()
        return self.port

    def stop(self) -> None:
        self._stopped.set()
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
            self._socket.close()
        with self._lock:
            transports = list(self._transports)
        for transport in transports:
            transport.close()

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._socket.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), name=f"ssh-conn-{self.name}", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        # The banner delay emulates a slow sshd/proxy: TCP connects, the banner comes late.
        if self._stopped.wait(self.banner_delay_s):
            conn.close()
            return
        transport = paramiko.Transport(conn)
        transport.handshake_timeout = _HANDSHAKE_TIMEOUT_S
        transport.auth_timeout = _HANDSHAKE_TIMEOUT_S
        transport.add_server_key(self.host_key)
        transport.set_subsystem_handler("sftp", paramiko.SFTPServer, DiskSFTP, self.host.disk)
        with self._lock:
            self._transports.add(transport)
        try:
            transport.start_server(server=_MachineInterface(self.host, self.is_authorized))
            # Channels are served from the exec callbacks. paramiko holds channels only weakly
            # and closes them when collected, so an accepted channel is kept here until its
            # request arrives and its session holds it; closed ones are dropped.
            channels: list[paramiko.Channel] = []
            while transport.is_active() and not self._stopped.is_set():
                channel = transport.accept(timeout=1.0)
                channels = [open_one for open_one in channels if not open_one.closed]
                if channel is not None:
                    channels.append(channel)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            logger.debug("ssh connection to %s ended: %s", self.name, exc)
        finally:
            transport.close()
            with self._lock:
                self._transports.discard(transport)


def _listen(preferred_port: int | None) -> socket.socket:
    for port in ([preferred_port] if preferred_port else []) + [0]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            sock.close()
            continue
        sock.listen(64)
        return sock
    raise OSError("no port to listen on")


def free_port() -> int:
    """A port that was free a moment ago, to announce before the server listens on it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value
