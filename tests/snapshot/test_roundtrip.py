from __future__ import annotations

import os

import pytest

from agent.snapshot import (
    NotEnoughSpace,
    TargetNotEmpty,
    snapshot_create,
    snapshot_restore,
    snapshot_verify,
)

from .trees import describe, every_kind_tree


def test_restore_reproduces_every_file_kind_byte_and_metadata_identical(repo, tmp_path):
    source = every_kind_tree(tmp_path / "workspace")
    before = describe(source)

    created = snapshot_create(repo, str(source))
    restored = snapshot_restore(repo, created.id, str(tmp_path / "restored"))

    assert describe(tmp_path / "restored") == before
    assert restored.files == created.files == 8
    assert created.symlinks == 3 and created.dirs == 6  # root, src, src/pkg, models, empty-dir, readonly-dir
    assert not (tmp_path / "restored.dumont-partial").exists()


def test_small_files_are_packed_and_large_files_chunked(repo, tmp_path):
    source = every_kind_tree(tmp_path / "workspace")
    snapshot_create(repo, str(source))

    manifest = repo.load_manifest(repo.resolve("latest"))
    files = manifest.files()
    small = {manifest.blobs[blob_id].object for path, entry in files.items() for blob_id in entry.blobs
             if entry.size <= 1024 * 1024}
    weights = [manifest.blobs[blob_id].object for blob_id in files["models/weights.safetensors"].blobs]
    big = [manifest.blobs[blob_id].object for blob_id in files["models/big.bin"].blobs]
    assert len(small) == 1  # five small non-empty files, one pack
    assert len(weights) == 6 and len(set(weights)) == 1  # 5 MiB + 6 bytes: six 1 MiB chunks, one 8 MiB read
    assert len(big) == 10 and len(set(big)) == 2  # 9 MiB: ten chunks, in one object per 8 MiB read
    assert not small & set(weights + big)  # a large file's chunks are not mixed with other files
    assert {name for name, _size in repo.storage.list("")} == {*small, *weights, *big, "config", f"snapshots/{manifest.id}"}


def test_latest_names_the_newest_snapshot_and_verify_checks_every_object(repo, tmp_path):
    source = every_kind_tree(tmp_path / "workspace")
    snapshot_create(repo, str(source))
    (source / "empty").write_bytes(b"now filled")
    second = snapshot_create(repo, str(source))

    snapshot_restore(repo, "latest", str(tmp_path / "restored"))

    assert (tmp_path / "restored" / "empty").read_bytes() == b"now filled"
    report = snapshot_verify(repo, second.id)
    assert report["verified"] and report["objects"] == 3 + 2  # the large files' objects, the packs of both snapshots


def test_restore_refuses_a_non_empty_target_and_fills_an_empty_one(repo, tmp_path):
    source = every_kind_tree(tmp_path / "workspace")
    created = snapshot_create(repo, str(source))
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "precious").write_text("keep me")
    empty = tmp_path / "empty-target"
    empty.mkdir()

    with pytest.raises(TargetNotEmpty):
        snapshot_restore(repo, created.id, str(occupied))
    snapshot_restore(repo, created.id, str(empty))

    assert (occupied / "precious").read_text() == "keep me"
    assert describe(empty) == describe(source)


def test_names_that_are_not_plain_ascii_round_trip(repo, tmp_path):
    """Linux names are bytes: non-ASCII, not UTF-8 at all, with spaces, newlines or a backslash
    all come back as they were, and the next snapshot still recognises each unchanged file."""
    source = tmp_path / "workspace"
    source.mkdir()
    names = [b"caf\xc3\xa9 na\xc3\xafve.txt", b"not-utf8-\xff\xfe.bin", b"line\nbreak", b" leading space",
             b"back\\slash", "日本語".encode()]
    for number, name in enumerate(names):
        with open(os.path.join(os.fsencode(source), name), "wb") as file:
            file.write(b"file %d\n" % number)
    os.mkdir(os.path.join(os.fsencode(source), b"dir-\xe9"))
    with open(os.path.join(os.fsencode(source), b"dir-\xe9", b"inner\xff"), "wb") as file:
        file.write(b"inner\n")
    os.utime(source, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))

    first = snapshot_create(repo, str(source))
    restored = tmp_path / "restored"
    snapshot_restore(repo, first.id, str(restored))
    second = snapshot_create(repo, str(source))

    assert sorted(os.listdir(os.fsencode(restored))) == sorted(names + [b"dir-\xe9"])
    assert describe(restored) == describe(source)
    assert first.files == second.files == 7
    assert second.new_blobs == 0


def test_a_snapshot_larger_than_the_free_space_is_refused_before_any_download(repo, tmp_path):
    source = tmp_path / "workspace"
    source.mkdir()
    (source / "chunk.bin").write_bytes(os.urandom(1024 * 1024))
    manifest = repo.load_manifest(snapshot_create(repo, str(source)).id)
    # The same 1 MiB blob over and over: a file twice this filesystem's free space (a margin no
    # other process can free meanwhile, so the restore can never start writing it).
    room = os.statvfs(tmp_path)
    free = room.f_bavail * room.f_frsize
    if free > 2**40:
        pytest.skip("over 1 TiB free: the manifest of a file twice that size gets too large for a test")
    repeats = 2 * free // (1024 * 1024) + 1024
    entry = manifest.files()["chunk.bin"]
    entry.blobs, entry.size = entry.blobs * repeats, entry.size * repeats
    manifest.id = "29991231T000000.000Z-00000000"
    repo.save_manifest(manifest)
    gets = repo.storage.traffic.gets

    with pytest.raises(NotEnoughSpace, match=r"needs \d+\.\d GB on the filesystem of .* which has \d+\.\d GB free"):
        snapshot_restore(repo, manifest.id, str(tmp_path / "restored"))

    assert repo.storage.traffic.gets - gets == 1  # the manifest, no data
    assert sorted(os.listdir(tmp_path)) == ["workspace"]  # no partial tree left behind
