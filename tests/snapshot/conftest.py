"""Snapshot engine tests: a fresh repository (prefix and key) per test on the real S3 server
(the `s3_server` fixture, tests/s3.py)."""

from __future__ import annotations

import os
import uuid

import pytest

from agent.snapshot import Repository, SnapshotConfig, StorageConfig
from agent.snapshot.storage import Storage
from tests.s3 import BUCKET


@pytest.fixture
def snapshot_config(s3_server) -> SnapshotConfig:
    """A fresh repository (its own prefix and key) for each test."""
    storage = StorageConfig(endpoint=s3_server, bucket=BUCKET, prefix=f"test-{uuid.uuid4().hex}/",
                            access_key="test", secret_key="test-secret", region="us-east-1", parallel=8)
    return SnapshotConfig(storage=storage, key=os.urandom(32))


@pytest.fixture
def repo(snapshot_config) -> Repository:
    return Repository(snapshot_config)


@pytest.fixture
def raw_storage(snapshot_config) -> Storage:
    """The same prefix seen without the key: what a bucket leak exposes."""
    return Storage(snapshot_config.storage)
