from __future__ import annotations

import os

import pytest

from agent.snapshot import (
    Repository,
    SnapshotConfig,
    WrongKey,
    snapshot_create,
    snapshot_restore,
)
from agent.snapshot.crypto import SealBroken, Sealer

from .trees import MARKER, every_kind_tree


def test_nothing_in_the_bucket_is_readable_without_the_key(repo, raw_storage, tmp_path):
    source = every_kind_tree(tmp_path / "workspace")
    snapshot_create(repo, str(source))
    plaintexts = [MARKER.encode(), b"package", b"weights.safetensors", (source / "src" / "run.sh").read_bytes()]

    objects = [name for name, _size in raw_storage.list("")]
    bodies = {name: raw_storage.get(name) for name in objects}

    assert len(objects) >= 4  # config, packs, chunks, manifest
    for name, body in bodies.items():
        for plaintext in plaintexts:
            assert plaintext not in body, f"{plaintext[:20]!r} readable in {name}"
            assert plaintext.decode(errors="ignore") not in name


def test_objects_do_not_open_with_another_key(repo, raw_storage, tmp_path):
    snapshot_create(repo, str(every_kind_tree(tmp_path / "workspace")))
    stranger = Sealer(os.urandom(32))

    for name, _size in raw_storage.list(""):
        with pytest.raises(SealBroken):
            stranger.open(name, raw_storage.get(name))


def test_restore_with_a_wrong_key_is_refused_as_such(repo, snapshot_config, tmp_path):
    created = snapshot_create(repo, str(every_kind_tree(tmp_path / "workspace")))
    thief = Repository(SnapshotConfig(storage=snapshot_config.storage, key=os.urandom(32)))

    with pytest.raises(WrongKey):
        snapshot_restore(thief, created.id, str(tmp_path / "restored"))
    with pytest.raises(WrongKey):
        snapshot_create(thief, str(tmp_path / "workspace"))
    assert not (tmp_path / "restored").exists()
