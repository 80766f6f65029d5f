"""Dumont's snapshot engine: deduplicated, compressed, encrypted, verified workspace snapshots
on any S3-compatible store (Cloudflare R2 in production, SeaweedFS locally). Runs on the GPU
machine; imports nothing from Django.

    repo = Repository(config_from_env(os.environ))
    result = snapshot_create(repo, "/workspace")           # CreateResult
    snapshot_restore(repo, result.id, "/workspace")        # or "latest"
    snapshot_verify(repo, result.id)

Repository layout (under the prefix; see repo.py): `config`, `packs/NN/RANDOM` (sealed blobs
back to back: the 1 MiB chunks of one 8 MiB region of a large file, or small files bundled),
`data/NN/NAME` (single 4 MiB chunks written by older agents), `snapshots/ID` (one manifest per
snapshot). Every object is AES-256-GCM sealed with a key derived from the
workspace key, with its name as associated data; nothing in the bucket is readable without
the key, and object names do not reveal content hashes.

A blob = one codec byte + payload (codec.py: raw, zstd, or zstd over grouped bytes of 2-byte
tensor elements), sealed; its id is the hash of its plaintext (BLAKE3, or sha256 in older
repositories), checked on every read.

A restore's GETs and decoding are shared out among worker processes, one per core (fetch.py).
A failed restore leaves TARGET untouched and an incomplete tree in `TARGET.dumont-partial`
(restore.py). `snapshot_forget` and `snapshot_gc` (gc.py) drop old snapshots and the objects
no snapshot uses, safely while a snapshot is being written (repository locks, locks.py).
CLI: `python -m agent.snapshot create|restore|list|verify|forget|gc` (cli.py).
"""

from .config import SnapshotConfig, StorageConfig, config_from_env
from .create import CreateResult, snapshot_create
from .errors import (
    ConfigError,
    LockLost,
    NotEnoughSpace,
    ObjectCorrupt,
    ObjectMissing,
    RepositoryLocked,
    SnapshotError,
    StorageError,
    TargetNotEmpty,
    WrongKey,
)
from .gc import GcResult, snapshot_forget, snapshot_gc
from .repo import Repository
from .restore import RestoreResult, snapshot_restore, snapshot_verify


def warm_up() -> None:
    """What an agent does at start, before its first command: import what tensor blobs need
    (numpy) and start the fork server restores take their worker processes from."""
    from . import codec, fetch

    codec.warm_up()
    fetch.warm_up()


__all__ = [
    "ConfigError", "CreateResult", "GcResult", "LockLost", "NotEnoughSpace", "ObjectCorrupt", "ObjectMissing",
    "Repository", "RepositoryLocked", "RestoreResult", "SnapshotConfig", "SnapshotError", "StorageConfig",
    "StorageError", "TargetNotEmpty", "WrongKey", "config_from_env", "snapshot_create", "snapshot_forget",
    "snapshot_gc", "snapshot_restore", "snapshot_verify", "warm_up",
]
