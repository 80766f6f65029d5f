"""Restore and verify on worker processes (fetch.py): the same bytes and metadata by a plain
fork and by the fork server, failures coming back whole, a dead worker noticed, and the
single-process path for one core or one connection."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import random
import threading

import pytest

from agent.snapshot import (
    ObjectCorrupt,
    ObjectMissing,
    SnapshotError,
    snapshot_create,
    snapshot_restore,
    snapshot_verify,
)
from agent.snapshot import fetch
from agent.snapshot.progress import Progress

from .trees import describe, every_kind_tree


@pytest.fixture
def workers_used(monkeypatch):
    """How many worker processes each fetch_all started (0: it ran in this process)."""
    counts = []
    real_workers, real_here = fetch._fetch_in_workers, fetch._fetch_here

    def in_workers(*args):
        counts.append(args[-1])
        return real_workers(*args)

    def here(*args):
        counts.append(0)
        return real_here(*args)

    monkeypatch.setattr(fetch, "_fetch_in_workers", in_workers)
    monkeypatch.setattr(fetch, "_fetch_here", here)
    monkeypatch.setattr(fetch, "cores", lambda: 2)  # as on the 2-core CI machine, whatever this one has
    return counts


def _many_small_files(root):
    """300 small files, and a 10 MiB one: more than one GET, so more than one worker."""
    rng = random.Random(7)
    root.mkdir(parents=True, exist_ok=True)
    (root / "model.bin").write_bytes(rng.randbytes(10 * 1024 * 1024))
    for folder in range(12):
        (root / f"pkg{folder}").mkdir(parents=True)
        for number in range(25):
            (root / f"pkg{folder}" / f"mod{number}.py").write_bytes(rng.randbytes(rng.randrange(1, 40_000)))
    return root


@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_workers_restore_every_kind_of_file_exactly(repo, tmp_path, monkeypatch, workers_used, method):
    source = every_kind_tree(tmp_path / "workspace")
    _many_small_files(source / "venv")
    created = snapshot_create(repo, str(source))
    monkeypatch.setattr(fetch, "_context", lambda: multiprocessing.get_context(method))
    reports = []

    result = snapshot_restore(repo, created.id, str(tmp_path / "restored"), progress=reports.append)

    assert workers_used == [2]
    assert describe(tmp_path / "restored") == describe(source)
    assert result.gets >= 2 and result.bytes_downloaded > 0  # the workers' GETs are counted here
    assert reports[-1]["bytes"] == reports[-1]["total_bytes"] == result.bytes


def test_one_connection_restores_in_this_process(snapshot_config, tmp_path, workers_used):
    from dataclasses import replace

    from agent.snapshot import Repository

    config = replace(snapshot_config, storage=replace(snapshot_config.storage, parallel=1))
    repo = Repository(config)
    source = every_kind_tree(tmp_path / "workspace")
    created = snapshot_create(repo, str(source))

    snapshot_restore(repo, created.id, str(tmp_path / "restored"))

    assert workers_used == [0]
    assert describe(tmp_path / "restored") == describe(source)


def test_the_agent_has_threads_so_its_workers_come_from_the_fork_server():
    started, release = threading.Event(), threading.Event()
    other = threading.Thread(target=lambda: (started.set(), release.wait()))
    other.start()
    try:
        started.wait()
        assert fetch._context().get_start_method() == "forkserver"
    finally:
        release.set()
        other.join()


def test_a_corrupt_object_found_by_a_worker_comes_back_with_its_file_and_object(repo, tmp_path, workers_used):
    source = _many_small_files(tmp_path / "workspace")
    created = snapshot_create(repo, str(source))
    manifest = repo.load_manifest(created.id)
    ref = manifest.blobs[manifest.files()["model.bin"].blobs[2]]
    body = bytearray(repo.storage.get(ref.object))
    body[ref.offset + ref.length // 2] ^= 0x01
    repo.storage.put(ref.object, bytes(body))
    target = tmp_path / "restored"

    with pytest.raises(ObjectCorrupt) as failure:
        snapshot_restore(repo, created.id, str(target))

    assert workers_used == [2]
    assert failure.value.key == repo.storage.key(ref.object)
    assert failure.value.needed_by == "model.bin at offset 2097152"
    assert "does not match its hash" in str(failure.value) or "authentication" in str(failure.value)
    assert not target.exists() and (tmp_path / "restored.dumont-partial").is_dir()


def test_a_missing_object_found_by_a_worker_names_it(repo, tmp_path, workers_used):
    source = _many_small_files(tmp_path / "workspace")
    created = snapshot_create(repo, str(source))
    manifest = repo.load_manifest(created.id)
    gone = manifest.blobs[manifest.files()["pkg3/mod4.py"].blobs[0]].object
    repo.storage.delete(gone)

    with pytest.raises(ObjectMissing) as failure:
        snapshot_verify(repo, created.id)

    assert workers_used == [2]
    assert failure.value.key == repo.storage.key(gone)
    assert "pkg3/mod4.py" in failure.value.needed_by or "more" in failure.value.needed_by


def _dies(ready):
    def sink(blob_id, data, destinations, buffers):
        os._exit(3)  # as if the kernel had killed the worker
    return sink


def test_a_worker_that_dies_fails_the_run_and_stops_the_others(repo, tmp_path, workers_used):
    created = snapshot_create(repo, str(_many_small_files(tmp_path / "workspace")))
    manifest = repo.load_manifest(created.id)
    progress = Progress(None, total_bytes=1, total_files=1, phase="restore")

    with pytest.raises(SnapshotError, match=r"ended before its work was done \(exit code 3\)"):
        fetch.fetch_all(repo, manifest, progress, _dies)

    assert workers_used == [2]
    assert multiprocessing.active_children() == []  # the other worker was stopped and reaped


def test_errors_cross_the_process_boundary_whole():
    missing = pickle.loads(pickle.dumps(ObjectMissing("prefix/packs/ab/x", "a.txt")))
    corrupt = pickle.loads(pickle.dumps(ObjectCorrupt("prefix/packs/ab/y", "bad tag", "b.bin at offset 0")))

    assert (missing.key, missing.needed_by, str(missing)) == (
        "prefix/packs/ab/x", "a.txt", "object prefix/packs/ab/x is missing from the bucket; needed by a.txt")
    assert (corrupt.key, corrupt.reason, corrupt.needed_by) == ("prefix/packs/ab/y", "bad tag", "b.bin at offset 0")
    assert str(corrupt) == "object prefix/packs/ab/y is corrupt (bad tag); needed by b.bin at offset 0"

    class Unpicklable(Exception):
        def __reduce__(self):
            raise TypeError("no")

    assert str(fetch._Failure.of(Unpicklable("lost lock")).error) == "Unpicklable: lost lock"


def test_work_is_shared_out_evenly_and_every_connection_is_used():
    def job(length, files):
        blobs = [(f"blob-{length}-{n}", None) for n in range(files)]
        return fetch.Fetch("object", 0, length, blobs), {blob_id: [None] for blob_id, _ in blobs}

    made = [job(8 << 20, 1) for _ in range(6)] + [job(8 << 20, 400) for _ in range(3)] + [job(1 << 20, 2)] * 2
    fetches = sorted((fetch_job for fetch_job, _ in made), key=lambda f: f.length, reverse=True)
    destinations = {blob_id: places for _, places_of in made for blob_id, places in places_of.items()}

    shares = fetch._share_out(fetches, destinations, 3, 32)

    assert sorted(len(share) for share, _ in shares) == [3, 4, 4]
    assert sum(connections for _, connections in shares) == 32
    assert {connections for _, connections in shares} == {10, 11}
    loads = [sum(j.length + fetch.FILE_COST * len(j.blobs) for j in share) for share, _ in shares]
    assert max(loads) - min(loads) <= 8 << 20  # within one GET of each other
    assert sorted(j for share, _ in shares for j in share) == sorted(fetches)  # each GET once
