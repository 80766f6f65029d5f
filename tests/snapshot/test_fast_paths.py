"""The engine's fast paths give the same bytes as the plain ones: chunk reads with O_DIRECT
and without; restores that decrypt in place, set a one-blob file's
metadata through its descriptor (its mode at create when it can) and write before every
directory is made; blob ids by BLAKE3 in new repositories and by sha256 in
repositories written before."""

from __future__ import annotations

import gc
import hashlib
import json
import os
import threading

import pytest

from agent.snapshot import ConfigError, Repository, snapshot_create, snapshot_restore
from agent.snapshot import create as create_module
from agent.snapshot.fetch import Destination
from agent.snapshot.repo import CONFIG
from agent.snapshot.restore import BlobWriter

from .trees import describe

MiB = 1024 * 1024


def _write(path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


@pytest.fixture
def chunk_file(tmp_path):
    data = os.urandom(2 * 4 * MiB + 12345)  # two whole chunks and a tail
    path = tmp_path / "chunks.bin"
    _write(path, data)
    return path, data


def _read_all(reader, path, size) -> bytes:
    out = bytearray()
    for offset in range(0, size, 4 * MiB):
        out += reader.read(str(path), offset, 4 * MiB)
    return bytes(out)


def test_chunk_reader_reads_chunks_with_o_direct_even_fresh_writes(tmp_path, monkeypatch):
    data = os.urandom(2 * 4 * MiB + 12345)  # two whole chunks and a tail
    path = tmp_path / "chunks.bin"
    path.write_bytes(data[:5 * MiB])
    with open(path, "r+b") as handle:  # dirty pages the kernel has not written back yet
        handle.seek(5 * MiB)
        handle.write(data[5 * MiB:])
    reader = create_module.ChunkReader()
    direct = []
    real = reader._read_direct
    monkeypatch.setattr(reader, "_read_direct", lambda *args: direct.append(args[2]) or real(*args))

    assert _read_all(reader, path, len(data)) == data
    assert direct == [0, 4 * MiB, 8 * MiB]
    assert reader._direct  # ext4 or xfs under the test's tmp_path: O_DIRECT works


def test_chunk_reader_falls_back_to_plain_reads_where_o_direct_is_refused(chunk_file, monkeypatch):
    path, data = chunk_file
    real_open = os.open

    def refuse_direct(file, flags, *args):
        if flags & os.O_DIRECT:
            raise OSError(22, "Invalid argument")  # what tmpfs answers
        return real_open(file, flags, *args)

    monkeypatch.setattr(create_module.os, "open", refuse_direct)
    reader = create_module.ChunkReader()
    assert _read_all(reader, path, len(data)) == data
    assert not reader._direct


def test_a_restore_sets_modes_and_mtimes_of_one_blob_and_many_blob_files(repo, tmp_path):
    source = tmp_path / "workspace"
    source.mkdir()
    _write(source / "one-chunk.bin", os.urandom(MiB))  # stored raw: decrypted in place, written direct
    _write(source / "three-chunks.bin", os.urandom(2 * MiB + 5))
    _write(source / "small.txt", b"small\n")
    for index, name in enumerate(("one-chunk.bin", "three-chunks.bin", "small.txt")):
        os.chmod(source / name, 0o444)
        os.utime(source / name, ns=(1_600_000_000_000_000_000 + index, 1_600_000_000_000_000_000 + index))
    before = describe(source)

    created = snapshot_create(repo, str(source))
    snapshot_restore(repo, created.id, str(tmp_path / "restored"))

    assert describe(tmp_path / "restored") == before


def test_one_blob_files_get_modes_a_create_cannot_set_and_those_it_can(repo, tmp_path):
    """A one-blob file is created with its mode unless the umask (022 here) or set-id and sticky
    bits stand in the way; then it is chmod'ed. Either way the restored mode is exact."""
    previous = os.umask(0o022)
    try:
        source = tmp_path / "workspace"
        source.mkdir()
        modes = {"plain.txt": 0o644, "shared.txt": 0o666, "private.txt": 0o600, "setuid": 0o4755,
                 "setgid": 0o2750, "sticky": 0o1644, "none": 0o000, "group-write.sh": 0o775}
        for name, mode in modes.items():
            _write(source / name, name.encode() * 10)
            os.chmod(source / name, mode)
        before = describe(source)

        created = snapshot_create(repo, str(source))
        snapshot_restore(repo, created.id, str(tmp_path / "restored"))

        assert describe(tmp_path / "restored") == before
        assert {name: os.stat(tmp_path / "restored" / name).st_mode & 0o7777 for name in modes} == modes
    finally:
        os.umask(previous)


def test_a_write_into_a_directory_not_made_yet_waits_for_the_directories(tmp_path):
    ready = threading.Event()
    root = tmp_path / "partial"
    root.mkdir()
    writer = BlobWriter(str(root), ready)
    place = Destination("later/deeper/file.txt", 0, True, 0o640, 1_600_000_000_000_000_000)
    early = Destination("early.txt", 0, True, 0o644, 1_600_000_000_000_000_000)

    writer(b"blob-id", b"written before the directories\n", [early], None)  # its directory exists
    blocked = threading.Thread(target=writer, args=(b"blob-id", b"waited\n", [place], None))
    blocked.start()
    blocked.join(timeout=0.3)
    assert blocked.is_alive() and not (root / "later").exists()  # waiting, not failed
    (root / "later" / "deeper").mkdir(parents=True)
    ready.set()
    blocked.join(timeout=30)

    assert (root / "early.txt").read_bytes() == b"written before the directories\n"
    assert (root / "later" / "deeper" / "file.txt").read_bytes() == b"waited\n"
    assert os.stat(root / "later" / "deeper" / "file.txt").st_mode & 0o777 == 0o640


def test_once_the_directories_are_made_a_missing_one_is_an_error(tmp_path):
    ready = threading.Event()
    ready.set()
    writer = BlobWriter(str(tmp_path), ready)
    place = Destination("nowhere/file.txt", 0, True, 0o644, 0)

    with pytest.raises(FileNotFoundError):
        writer(b"blob-id", b"data", [place], None)


def test_the_cycle_collector_is_off_during_a_snapshot_and_a_restore_and_back_after(repo, tmp_path, monkeypatch):
    source = tmp_path / "workspace"
    source.mkdir()
    _write(source / "file.txt", b"collected?\n")
    enabled_inside = []
    for name in ("save_manifest", "load_manifest"):
        real = getattr(Repository, name)
        monkeypatch.setattr(Repository, name, lambda self, *args, real=real: (
            enabled_inside.append(gc.isenabled()), real(self, *args))[1])

    created = snapshot_create(repo, str(source))
    snapshot_restore(repo, created.id, str(tmp_path / "restored"))
    after = gc.isenabled()
    gc.disable()
    try:
        snapshot_restore(repo, created.id, str(tmp_path / "again"))
        still_off = not gc.isenabled()
    finally:
        gc.enable()

    assert enabled_inside and not any(enabled_inside)
    assert after and still_off  # on again afterwards, unless it was off before


def test_a_new_repository_names_blobs_by_blake3(repo, tmp_path):
    pytest.importorskip("blake3")
    source = tmp_path / "workspace"
    source.mkdir()
    (source / "a.txt").write_bytes(b"hello blake3\n")

    created = snapshot_create(repo, str(source))

    assert json.loads(repo.get_document(CONFIG))["hash"] == "blake3"
    import blake3

    manifest = repo.load_manifest(created.id)
    assert manifest.files()["a.txt"].blobs == [blake3.blake3(b"hello blake3\n").hexdigest()]


def test_a_repository_written_before_blake3_keeps_sha256_and_deduplicates(snapshot_config, tmp_path):
    repo = Repository(snapshot_config)
    repo.put_document(CONFIG, json.dumps({"format": 1, "created": 0}).encode())  # an older agent's config
    source = tmp_path / "workspace"
    source.mkdir()
    (source / "a.txt").write_bytes(b"hello sha256\n")
    _write(source / "big.bin", os.urandom(5 * MiB))

    first = snapshot_create(repo, str(source))
    second = snapshot_create(Repository(snapshot_config), str(source), use_parent=False)  # re-read, re-hashed
    snapshot_restore(Repository(snapshot_config), second.id, str(tmp_path / "restored"))

    manifest = repo.load_manifest(first.id)
    assert manifest.files()["a.txt"].blobs == [hashlib.sha256(b"hello sha256\n").hexdigest()]
    assert second.new_blobs == 0  # the same ids as the first time: nothing uploaded again
    assert describe(tmp_path / "restored") == describe(source)


def test_a_repository_naming_an_unknown_hash_is_refused_with_its_name(snapshot_config, tmp_path):
    repo = Repository(snapshot_config)
    repo.put_document(CONFIG, json.dumps({"format": 1, "hash": "md7"}).encode())
    source = tmp_path / "workspace"
    source.mkdir()

    with pytest.raises(ConfigError, match="'md7'"):
        snapshot_create(repo, str(source))


def test_snapshot_progress_ends_with_the_real_totals(repo, tmp_path):
    source = tmp_path / "workspace"
    source.mkdir()
    for index in range(30):
        (source / f"f{index}.txt").write_bytes(os.urandom(1000))
    snapshot_create(repo, str(source))
    (source / "new.bin").write_bytes(os.urandom(3000))
    reports: list = []

    snapshot_create(repo, str(source), progress=reports.append)

    assert reports[-1]["total_files"] == reports[-1]["files"] == 31
    assert reports[-1]["total_bytes"] == reports[-1]["bytes"] == 33_000


def test_a_large_file_that_shrinks_while_read_is_recorded_as_read(repo, tmp_path, monkeypatch):
    source = tmp_path / "workspace"
    source.mkdir()
    data = os.urandom(20 * MiB)  # three reads of up to 8 MiB
    _write(source / "growing-pains.bin", data)
    real_read = create_module.ChunkReader.read

    def truncate_first(self, path, offset, size):
        if offset == 0:
            os.truncate(path, 5 * MiB + 7)  # cut short after the scan, before it is read
        return real_read(self, path, offset, size)

    monkeypatch.setattr(create_module.ChunkReader, "read", truncate_first)
    monkeypatch.setattr(create_module.Snapshotter, "_submit",
                        lambda self, work, *args: work(*args))  # in order: the first read comes first

    created = snapshot_create(repo, str(source))
    snapshot_restore(repo, created.id, str(tmp_path / "restored"))

    assert created.bytes == 5 * MiB + 7
    assert (tmp_path / "restored" / "growing-pains.bin").read_bytes() == data[: 5 * MiB + 7]
