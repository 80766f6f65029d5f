from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from agent.snapshot import (
    ConfigError,
    LockLost,
    Repository,
    RepositoryLocked,
    snapshot_create,
    snapshot_forget,
    snapshot_gc,
    snapshot_restore,
)
from agent.snapshot import create, locks
from agent.snapshot.locks import EXCLUSIVE, SHARED, LockInfo, lock_repository

from .trees import describe

KiB, MiB = 1024, 1024 * 1024
ROOT = Path(__file__).resolve().parents[2]
_rng = random.Random(11)
BIG = {name: _rng.randbytes(3 * MiB // 2) for name in ("big1", "big2", "big3")}  # two chunks in one object each
SMALL = {name: _rng.randbytes(20 * KiB) for name in ("a", "b", "c", "d")}  # packed


def _tree(root: Path, big: tuple, small: tuple) -> Path:
    (root / "small").mkdir(parents=True)
    for name in big:
        (root / f"{name}.bin").write_bytes(BIG[name])
    for name in small:
        (root / "small" / f"{name}.txt").write_bytes(SMALL[name])
    return root


def _objects(repo: Repository) -> set:
    return {name for name, _size in repo.storage.list("")}


def _referenced(repo: Repository) -> set:
    return {ref.object for manifest in repo.recent_manifests(count=None) for ref in manifest.blobs.values()}


def _assert_bucket_holds_exactly_what_snapshots_use(repo: Repository) -> None:
    manifests = {f"snapshots/{snapshot_id}" for snapshot_id in repo.snapshot_ids()}
    assert _objects(repo) == _referenced(repo) | manifests | {"config"}


def _assert_restores(repo: Repository, snapshot_id: str, source: Path, target: Path) -> None:
    snapshot_restore(repo, snapshot_id, str(target))
    assert describe(target) == describe(source)


class PausedSnapshot:
    """snapshot_create in a thread, held after every blob is stored (some counted as stored
    because an older manifest references them) and before its manifest is written."""

    def __init__(self, monkeypatch, repo: Repository, source: Path):
        self.stored, self._go = threading.Event(), threading.Event()
        self.result, self.error = None, None
        write_manifest = create.Snapshotter._write_manifest

        def paused(snapshotter, manifest):
            self.stored.set()
            self._go.wait(60)
            write_manifest(snapshotter, manifest)

        monkeypatch.setattr(create.Snapshotter, "_write_manifest", paused)
        self._thread = threading.Thread(target=self._create, args=(repo, source))
        self._thread.start()
        assert self.stored.wait(60), "the snapshot never got to its manifest"

    def _create(self, repo: Repository, source: Path) -> None:
        try:
            self.result = snapshot_create(repo, str(source))
        except Exception as exc:  # re-raised by finish() in the test's thread
            self.error = exc

    def finish(self):
        self._go.set()
        self._thread.join(60)
        assert not self._thread.is_alive()
        if self.error:
            raise self.error
        return self.result


def _watch_for_conflicts(monkeypatch) -> threading.Event:
    """An event set once a lock taker has found a lock in its way (and will wait)."""
    blocked = threading.Event()
    first_conflict = locks._first_conflict

    def watched(*args):
        found = first_conflict(*args)
        if found[0] is not None:
            blocked.set()
        return found

    monkeypatch.setattr(locks, "_first_conflict", watched)
    return blocked


@pytest.fixture
def history(repo, tmp_path):
    """Snapshot A (big1, big2; a, b, c), then B (d only): C's tree shares big1, a and b with A."""
    trees = {
        "A": _tree(tmp_path / "A", ("big1", "big2"), ("a", "b", "c")),
        "B": _tree(tmp_path / "B", (), ("d",)),
        "C": _tree(tmp_path / "C", ("big1", "big3"), ("a", "b", "d")),
    }
    ids = {name: snapshot_create(repo, str(trees[name])).id for name in ("A", "B")}
    return trees, ids


def test_forget_keeps_exactly_the_newest_n(repo, tmp_path):
    source = _tree(tmp_path / "workspace", (), ("a",))
    ids = []
    for number in range(4):
        (source / "counter").write_text(str(number))
        ids.append(snapshot_create(repo, str(source)).id)
    data_before = _objects(repo) - {f"snapshots/{snapshot_id}" for snapshot_id in ids}

    result = snapshot_forget(repo, keep_last=2)

    assert result["kept"] == ids[2:] and result["forgotten"] == [ids[1], ids[0]]
    assert sorted(repo.snapshot_ids()) == ids[2:]
    assert _objects(repo) == data_before | {f"snapshots/{snapshot_id}" for snapshot_id in ids[2:]}


def test_forget_per_host_keeps_the_newest_n_of_each_host(repo, tmp_path, monkeypatch):
    source = _tree(tmp_path / "workspace", (), ("a",))
    ids = []
    for number, host in enumerate(["gpu-a", "gpu-b", "gpu-a", "gpu-b", "gpu-a"]):
        monkeypatch.setattr(create.socket, "gethostname", lambda host=host: host)
        (source / "counter").write_text(str(number))
        ids.append(snapshot_create(repo, str(source)).id)

    snapshot_forget(repo, keep_last=1, per_host=True)

    assert sorted(repo.snapshot_ids()) == [ids[3], ids[4]]


def test_forget_refuses_to_keep_fewer_than_one_snapshot(repo, tmp_path):
    snapshot_id = snapshot_create(repo, str(_tree(tmp_path / "workspace", (), ("a",)))).id

    with pytest.raises(ConfigError, match="keep_last must be at least 1"):
        snapshot_forget(repo, keep_last=0)

    assert repo.snapshot_ids() == [snapshot_id]


def test_gc_deletes_unreferenced_objects_and_kept_snapshots_restore_identically(repo, history, tmp_path):
    trees, ids = history
    ids["C"] = snapshot_create(repo, str(trees["C"])).id
    big2 = repo.load_manifest(ids["A"]).files()["big2.bin"].blobs[0]
    big2_object = repo.load_manifest(ids["A"]).blobs[big2].object

    result = snapshot_gc(repo, keep_last=2, grace_s=0)

    assert result.snapshots_forgotten == [ids["A"]]
    assert result.manifests_read == 3 and result.objects_deleted == 1  # big2's chunk; A's pack is used by C
    assert result.bytes_freed > len(BIG["big2"]) // 2  # random bytes barely compress
    assert result.objects_missing == 0 and result.objects_kept_recent == 0
    assert result.packs_kept_partly_used == 1  # A's pack: C uses a.txt and b.txt, not c.txt
    assert big2_object not in _objects(repo)
    _assert_bucket_holds_exactly_what_snapshots_use(repo)
    _assert_restores(repo, ids["B"], trees["B"], tmp_path / "restored-B")
    _assert_restores(repo, ids["C"], trees["C"], tmp_path / "restored-C")


def test_pack_with_some_blobs_still_referenced_is_kept_whole(repo, tmp_path):
    source = _tree(tmp_path / "workspace", (), ("a", "b", "c"))
    first = snapshot_create(repo, str(source)).id
    pack = repo.load_manifest(first).blobs[repo.load_manifest(first).files()["small/a.txt"].blobs[0]].object
    (source / "small" / "b.txt").unlink()
    (source / "small" / "c.txt").unlink()
    second = snapshot_create(repo, str(source)).id

    result = snapshot_gc(repo, keep_last=1, grace_s=0)

    assert result.snapshots_forgotten == [first]
    assert result.packs_kept_partly_used == 1 and result.objects_deleted == 0
    assert pack in _objects(repo)
    _assert_bucket_holds_exactly_what_snapshots_use(repo)
    _assert_restores(repo, second, source, tmp_path / "restored")


def test_gc_keeps_unreferenced_objects_younger_than_the_grace_period(repo, history):
    _trees, ids = history
    only_a = _referenced(repo) - {ref.object for ref in repo.load_manifest(ids["B"]).blobs.values()}

    kept = snapshot_gc(repo, keep_last=1)
    collected = snapshot_gc(repo, grace_s=0)

    assert kept.snapshots_forgotten == [ids["A"]]
    assert kept.objects_deleted == 0 and kept.objects_kept_recent == len(only_a) == 3  # big1, big2, a pack
    assert collected.objects_deleted == 3 and collected.objects_kept_recent == 0
    assert not only_a & _objects(repo)
    _assert_bucket_holds_exactly_what_snapshots_use(repo)


def test_gc_refuses_while_a_snapshot_is_being_written_and_that_snapshot_loses_nothing(
        repo, snapshot_config, history, monkeypatch, tmp_path):
    trees, ids = history
    paused = PausedSnapshot(monkeypatch, repo, trees["C"])
    before = _objects(repo)

    with pytest.raises(RepositoryLocked, match=r"a snapshot is being written \(lock .*/locks/\w+ from host "
                                               r".* pid \d+, refreshed \d+ s ago\); gc not run"):
        snapshot_gc(Repository(snapshot_config), keep_last=1, grace_s=0)

    assert _objects(repo) == before  # not even gc's own lock is left
    snapshot_c = paused.finish().id
    _assert_restores(repo, snapshot_c, trees["C"], tmp_path / "restored-C")
    assert snapshot_gc(repo, keep_last=1, grace_s=0).snapshots_forgotten == [ids["B"], ids["A"]]
    _assert_bucket_holds_exactly_what_snapshots_use(repo)
    _assert_restores(repo, snapshot_c, trees["C"], tmp_path / "restored-C-after-gc")


def test_gc_that_waits_for_a_snapshot_being_written_collects_after_it_and_loses_nothing(
        repo, snapshot_config, history, monkeypatch, tmp_path):
    trees, ids = history
    objects_of_a = {ref.object for ref in repo.load_manifest(ids["A"]).blobs.values()}
    monkeypatch.setattr(locks, "POLL_S", 0.05)
    blocked = _watch_for_conflicts(monkeypatch)
    paused = PausedSnapshot(monkeypatch, repo, trees["C"])
    outcome = {}
    gc_thread = threading.Thread(target=lambda: outcome.update(
        result=snapshot_gc(Repository(snapshot_config), keep_last=1, grace_s=0, wait_s=60)))
    gc_thread.start()
    assert blocked.wait(60), "gc never met the snapshot's lock"
    untouched = _objects(repo)

    snapshot_c = paused.finish().id
    gc_thread.join(60)

    assert f"snapshots/{ids['A']}" in untouched  # nothing was forgotten while C was being written
    assert len(objects_of_a & _referenced(repo)) == 2  # C counted big1's chunk and A's pack as stored
    assert outcome["result"].snapshots_forgotten == [ids["B"], ids["A"]]
    assert outcome["result"].objects_deleted == 1  # big2's chunk; C uses A's and B's packs
    assert outcome["result"].packs_kept_partly_used == 1  # A's pack: c.txt is no longer used
    assert repo.snapshot_ids() == [snapshot_c]
    _assert_bucket_holds_exactly_what_snapshots_use(repo)
    _assert_restores(repo, snapshot_c, trees["C"], tmp_path / "restored-C")


def test_snapshot_refuses_while_gc_holds_the_exclusive_lock(repo, tmp_path):
    source = _tree(tmp_path / "workspace", ("big1",), ("a",))
    repo.open_or_init()

    with lock_repository(repo, EXCLUSIVE, purpose="gc"):
        with pytest.raises(RepositoryLocked, match=r"garbage collection is running .*; snapshot not taken"):
            snapshot_create(repo, str(source), lock_wait_s=0)
        assert repo.snapshot_ids() == []

    snapshot_id = snapshot_create(repo, str(source), lock_wait_s=0).id
    _assert_restores(repo, snapshot_id, source, tmp_path / "restored")


def test_snapshot_that_waited_for_gc_reads_what_is_stored_only_after_gc(repo, history, monkeypatch, tmp_path):
    trees, ids = history
    monkeypatch.setattr(locks, "POLL_S", 0.05)
    blocked = _watch_for_conflicts(monkeypatch)
    outcome = {}
    with lock_repository(repo, EXCLUSIVE, purpose="gc"):
        snapshot = threading.Thread(target=lambda: outcome.update(result=snapshot_create(repo, str(trees["C"]))))
        snapshot.start()
        assert blocked.wait(60), "the snapshot never met gc's lock"
        # What a gc forgetting A does: A's manifest and every object of A go.
        doomed = [ref.object for ref in repo.load_manifest(ids["A"]).blobs.values()]
        repo.storage.delete_many([f"snapshots/{ids['A']}", *set(doomed)])
    snapshot.join(60)

    assert outcome["result"].new_blobs == 6  # big1 and big3 (two chunks each), a, b stored again; d is in B's pack
    _assert_restores(repo, outcome["result"].id, trees["C"], tmp_path / "restored-C")


def test_stale_lock_is_ignored_and_removed(repo, history):
    long_ago = time.time() - 2 * locks.STALE_AFTER_S
    dead = LockInfo(kind=SHARED, purpose="snapshot", host="gone", pid=1, created=long_ago, refreshed=long_ago)
    repo.put_document("locks/" + "0" * 32, dead.to_json())

    result = snapshot_gc(repo, keep_last=1, grace_s=0)

    assert result.stale_locks_removed == 1 and result.snapshots_forgotten == [history[1]["A"]]
    assert list(repo.storage.list("locks/")) == []
    _assert_bucket_holds_exactly_what_snapshots_use(repo)


def test_snapshot_whose_lock_was_removed_as_stale_does_not_write_its_manifest(
        repo, snapshot_config, history, monkeypatch, tmp_path):
    trees, ids = history
    paused = PausedSnapshot(monkeypatch, repo, trees["C"])
    [(lock_name, _size)] = repo.storage.list("locks/")
    held = LockInfo.from_json(repo.get_document(lock_name))
    long_ago = time.time() - 2 * locks.STALE_AFTER_S  # as if C's machine had been frozen for an hour
    repo.put_document(lock_name, replace(held, refreshed=long_ago).to_json())

    result = snapshot_gc(Repository(snapshot_config), keep_last=1, grace_s=0)  # deletes what C counted on

    assert result.stale_locks_removed == 1 and result.snapshots_forgotten == [ids["A"]]
    with pytest.raises(LockLost, match=r"removed by another process that took it for stale; snapshot .* not written"):
        paused.finish()
    assert repo.snapshot_ids() == [ids["B"]]
    assert list(repo.storage.list("locks/")) == []
    _assert_restores(repo, ids["B"], trees["B"], tmp_path / "restored-B")


def _cli(config, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ,
               DUMONT_S3_ENDPOINT=config.storage.endpoint, DUMONT_S3_BUCKET=config.storage.bucket,
               DUMONT_S3_PREFIX=config.storage.prefix, DUMONT_S3_ACCESS_KEY=config.storage.access_key,
               DUMONT_S3_SECRET_KEY=config.storage.secret_key, DUMONT_SNAPSHOT_KEY=config.key.hex())
    return subprocess.run([sys.executable, "-m", "agent", "snapshot", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_cli_gc_forgets_and_collects_and_refuses_while_a_snapshot_is_written(repo, snapshot_config, history):
    _trees, ids = history

    with lock_repository(repo, SHARED, purpose="snapshot"):
        refused = _cli(snapshot_config, "gc", "--keep-last", "1", "--grace", "0")
    collected = _cli(snapshot_config, "gc", "--keep-last", "1", "--grace", "0")

    assert refused.returncode == 1 and "a snapshot is being written" in refused.stderr
    assert "gc not run" in refused.stderr
    assert collected.returncode == 0, collected.stderr
    report = json.loads(collected.stdout)
    assert report["snapshots_forgotten"] == [ids["A"]] and report["objects_deleted"] == 3
    assert {"manifests_read", "objects_listed", "bytes_freed", "packs_kept_partly_used", "duration_s"} <= set(report)
    _assert_bucket_holds_exactly_what_snapshots_use(repo)
