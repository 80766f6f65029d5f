from __future__ import annotations

import random

import pytest

from agent.snapshot import (
    ObjectCorrupt,
    ObjectMissing,
    snapshot_create,
    snapshot_restore,
    snapshot_verify,
)


def _workspace(tmp_path):
    source = tmp_path / "workspace"
    (source / "notes").mkdir(parents=True)
    (source / "model.bin").write_bytes(random.Random(1).randbytes(6 * 1024 * 1024))
    (source / "notes" / "todo.txt").write_text("restore me exactly\n")
    return source


def _chunk_of_model(repo, snapshot_id):
    """The object holding model.bin's fifth 1 MiB chunk (offset 4 MiB), and where in it."""
    manifest = repo.load_manifest(snapshot_id)
    ref = manifest.blobs[manifest.files()["model.bin"].blobs[4]]
    return ref.object, ref


def test_corrupted_object_names_the_file_and_the_object_and_leaves_target_untouched(repo, tmp_path):
    created = snapshot_create(repo, str(_workspace(tmp_path)))
    name, ref = _chunk_of_model(repo, created.id)
    body = bytearray(repo.storage.get(name))
    body[ref.offset + ref.length // 2] ^= 0x01  # one bit inside that chunk
    repo.storage.put(name, bytes(body))
    target = tmp_path / "restored"

    with pytest.raises(ObjectCorrupt) as failure:
        snapshot_restore(repo, created.id, str(target))

    assert repo.storage.key(name) in str(failure.value)
    assert "model.bin at offset 4194304" in str(failure.value)
    assert not target.exists()
    assert (tmp_path / "restored.dumont-partial").is_dir()  # the incomplete restore, by its name
    with pytest.raises(ObjectCorrupt):
        snapshot_verify(repo, created.id)


def test_missing_object_names_the_file_and_the_object(repo, tmp_path):
    created = snapshot_create(repo, str(_workspace(tmp_path)))
    name, _ref = _chunk_of_model(repo, created.id)
    repo.storage.delete(name)

    with pytest.raises(ObjectMissing) as failure:
        snapshot_restore(repo, created.id, str(tmp_path / "restored"))

    assert repo.storage.key(name) in str(failure.value)
    assert "model.bin" in str(failure.value)
    assert not (tmp_path / "restored").exists()


def test_missing_pack_names_the_small_file(repo, tmp_path):
    created = snapshot_create(repo, str(_workspace(tmp_path)))
    manifest = repo.load_manifest(created.id)
    pack = manifest.blobs[manifest.files()["notes/todo.txt"].blobs[0]].object
    repo.storage.delete(pack)

    with pytest.raises(ObjectMissing, match="notes/todo.txt"):
        snapshot_verify(repo, created.id)


def test_object_swapped_under_another_name_is_corrupt_not_read(repo, tmp_path):
    source = _workspace(tmp_path)
    (source / "model.bin").write_bytes(random.Random(2).randbytes(12 * 1024 * 1024))
    created = snapshot_create(repo, str(source))
    manifest = repo.load_manifest(created.id)
    blobs = manifest.files()["model.bin"].blobs  # twelve 1 MiB chunks: 8 in one object, 4 in another
    first, second = manifest.blobs[blobs[0]].object, manifest.blobs[blobs[8]].object
    assert first != second
    repo.storage.put(second, repo.storage.get(first))  # sealed blobs, every one valid, under the wrong name

    with pytest.raises(ObjectCorrupt, match="authentication failed"):
        snapshot_restore(repo, created.id, str(tmp_path / "restored"))


def test_a_retry_after_a_failed_restore_replaces_the_partial_tree(repo, tmp_path):
    created = snapshot_create(repo, str(_workspace(tmp_path)))
    name, _ref = _chunk_of_model(repo, created.id)
    good = repo.storage.get(name)
    repo.storage.delete(name)
    with pytest.raises(ObjectMissing):
        snapshot_restore(repo, created.id, str(tmp_path / "restored"))
    repo.storage.put(name, good)

    snapshot_restore(repo, created.id, str(tmp_path / "restored"))

    assert (tmp_path / "restored" / "notes" / "todo.txt").read_text() == "restore me exactly\n"
    assert not (tmp_path / "restored.dumont-partial").exists()
