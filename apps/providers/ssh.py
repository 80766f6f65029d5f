"""The control plane's SSH identity and the readiness check: a real handshake, not a port probe."""

from __future__ import annotations

import base64
import socket
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings

SSH_USER = "root"


class SshNotReady(Exception):
    """The machine does not (yet) complete a handshake with our key."""


class HostKeyChanged(Exception):
    """The machine presented a host key other than the one pinned on first contact."""


def _generate_key_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    path.write_bytes(pem)
    path.chmod(0o600)


@lru_cache(maxsize=1)
def control_plane_key() -> paramiko.PKey:
    path = Path(settings.DUMONT_SSH_KEY_FILE)
    if not path.exists():
        _generate_key_file(path)
    return paramiko.PKey.from_path(str(path))


def control_plane_public_key() -> str:
    key = control_plane_key()
    return f"{key.get_name()} {key.get_base64()} dumont-control-plane"


def host_key_text(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.get_base64()}"


def ssh_handshake(host: str, port: int, *, pinned_host_key: str = "", timeout: float | None = None) -> str:
    """Connect, check the host key against the pin, authenticate with our key; return the host key.

    Raises SshNotReady for anything that a machine still booting would do (refused, timeout,
    banner not yet sent, key not yet accepted) and HostKeyChanged when the pin does not match.
    """
    timeout = settings.DUMONT_SSH_TIMEOUT if timeout is None else timeout
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise SshNotReady(f"cannot connect to {host}:{port}: {exc}") from None
    transport = paramiko.Transport(sock)
    transport.banner_timeout = timeout
    transport.auth_timeout = timeout
    transport.handshake_timeout = timeout
    try:
        transport.start_client(timeout=timeout)
        presented = host_key_text(transport.get_remote_server_key())
        if pinned_host_key and presented != pinned_host_key:
            raise HostKeyChanged(f"{host}:{port} presented host key {presented[:40]}…, pinned is another")
        transport.auth_publickey(SSH_USER, control_plane_key())
        if not transport.is_authenticated():
            raise SshNotReady(f"{host}:{port} did not accept our key")
        return presented
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise SshNotReady(f"SSH handshake with {host}:{port} failed: {exc or type(exc).__name__}") from None
    finally:
        transport.close()
        sock.close()


@contextmanager
def ssh_session(host: str, port: int, *, pinned_host_key: str, timeout: float | None = None):
    """A connected paramiko client that refuses any host key but the pinned one."""
    timeout = settings.DUMONT_SSH_TIMEOUT if timeout is None else timeout
    client = paramiko.SSHClient()
    name = f"[{host}]:{port}" if port != 22 else host
    client.get_host_keys().add(name, *_pinned(pinned_host_key))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        try:
            client.connect(
                host, port, username=SSH_USER, pkey=control_plane_key(), timeout=timeout,
                banner_timeout=timeout, auth_timeout=timeout, look_for_keys=False, allow_agent=False,
            )
        except paramiko.BadHostKeyException as exc:
            raise HostKeyChanged(str(exc)) from None
        yield client
    finally:
        client.close()


def ssh_exec(client: paramiko.SSHClient, command: str, *, timeout: float) -> tuple[int, str, str]:
    """Run one command; returns (exit status, stdout, stderr)."""
    _, stdout, stderr = client.exec_command(command, timeout=timeout)
    out, err = stdout.read().decode(errors="replace"), stderr.read().decode(errors="replace")
    return stdout.channel.recv_exit_status(), out, err


def ssh_run(host: str, port: int, command: str, *, pinned_host_key: str, timeout: float | None = None) -> tuple[int, str, str]:
    """Run one command on a machine whose host key is pinned; returns (exit status, stdout, stderr)."""
    with ssh_session(host, port, pinned_host_key=pinned_host_key, timeout=timeout) as client:
        return ssh_exec(client, command, timeout=settings.DUMONT_SSH_TIMEOUT if timeout is None else timeout)


def _pinned(text: str) -> tuple[str, paramiko.PKey]:
    key_type, body = text.split()[:2]
    return key_type, paramiko.PKey.from_type_string(key_type, base64.b64decode(body))
