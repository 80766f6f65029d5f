"""Retention and garbage collection: `forget` deletes old manifests, `gc` deletes the objects
no remaining manifest references.

forget keeps the newest `keep_last` snapshots (per host with `per_host`) and deletes the other
manifests; their objects stay until a gc. gc reads every manifest, lists `data/` and `packs/`,
and deletes each object no manifest references. A pack holds many blobs and is deleted only
when none of them is referenced: gc never repacks, so a pack with any blob still in use is
kept whole (and counted as `packs_kept_partly_used` when some of its bytes are not in use).

Why gc cannot lose data while a snapshot is being written (locks.py has the lock protocol):
- `create` takes a shared lock before it reads which blobs are stored (the newest manifests)
  and holds it until its manifest is written. forget and gc work only under an exclusive lock,
  which nobody can take while a fresh shared lock exists, and the other way round (each taker
  writes its lock, then lists the others: S3 lists are strongly consistent after writes). So
  while gc decides and deletes, no create stands between "blob B is already stored" and
  "manifest written", nor holds uploads its manifest does not reference yet. A create that
  finished before has its manifest read by gc; one that starts meanwhile waits (or refuses)
  until gc has released its lock and then reads only the manifests that are left, so it never
  counts a deleted blob as stored.
- A lock not refreshed for STALE_AFTER_S (30 min; holders refresh every 5 min) is taken for
  dead and removed. A holder checks its lock right before each write that needs it (create:
  the manifest; gc: each batch of deletions) and stops with LockLost if the lock is gone or
  was not refreshed for GIVE_UP_S (20 min), so a process frozen past its lock's life never
  acts on what it read under the lock.
- Second safety net: gc never deletes an object whose LastModified is less than `grace_s`
  (GRACE_S, 1 h) before gc started, both read on the object store's clock (gc's lock's own
  LastModified is "now"). Uploads of a writer that runs without a valid lock (frozen for long,
  or an agent that predates locks) survive; a later gc collects them if they stay unreferenced.
  It cannot cover such a writer counting an old blob as stored: every writer must lock.
- What is left: a process frozen for more than STALE_AFTER_S - GIVE_UP_S (10 min) between its
  last check and the write after it, or clocks apart by that much. Restore and verify take no
  lock: one of a snapshot that is being forgotten may fail with ObjectMissing; kept snapshots
  are never touched. Every manifest must be readable: one that is not stops gc before it
  deletes anything.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field

from .errors import ConfigError, StorageError
from .locks import EXCLUSIVE, HeldLock, lock_repository
from .repo import DATA, PACKS, SNAPSHOTS, Repository
from .storage import DELETE_BATCH

GRACE_S = 60 * 60


@dataclass
class GcResult:
    manifests_read: int
    objects_listed: int  # data chunks and packs
    objects_deleted: int
    bytes_freed: int
    packs_kept_partly_used: int
    objects_kept_recent: int  # unreferenced, but younger than the grace period
    objects_missing: int  # referenced by a kept snapshot, yet not in the bucket
    stale_locks_removed: int
    snapshots_forgotten: list = field(default_factory=list)
    duration_s: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def snapshots_to_forget(snapshots: list, *, keep_last: int, per_host: bool = False) -> list:
    """Of (snapshot id, host) pairs, the ids beyond the newest `keep_last` (in each host's
    snapshots with `per_host`), newest first. IDs sort by creation time."""
    _check_keep_last(keep_last)
    kept: Counter = Counter()
    forgotten = []
    for snapshot_id, host in sorted(snapshots, reverse=True):
        group = host if per_host else ""
        if kept[group] < keep_last:
            kept[group] += 1
        else:
            forgotten.append(snapshot_id)
    return forgotten


def snapshot_forget(repo: Repository, *, keep_last: int, per_host: bool = False, wait_s: float = 0.0) -> dict:
    """Delete every manifest but the newest `keep_last` (per host with `per_host`); objects only
    the forgotten snapshots used stay until a gc. Raises RepositoryLocked while a snapshot is being written
    (after waiting up to `wait_s`)."""
    started = time.monotonic()
    _check_keep_last(keep_last)
    repo.open()  # a wrong key is named as such before anything is locked
    with lock_repository(repo, EXCLUSIVE, purpose="forget", wait_s=wait_s) as lock:
        if per_host:
            pairs = [(manifest.id, manifest.host) for manifest in repo.recent_manifests(count=None)]
        else:
            pairs = [(snapshot_id, "") for snapshot_id in repo.snapshot_ids()]
        forgotten = _forget(repo, lock, pairs, keep_last=keep_last, per_host=per_host)
    kept = sorted(set(snapshot_id for snapshot_id, _host in pairs) - set(forgotten))
    return {"kept": kept, "forgotten": forgotten, "duration_s": round(time.monotonic() - started, 3)}


def snapshot_gc(repo: Repository, *, keep_last: int | None = None, per_host: bool = False,
                grace_s: float = GRACE_S, wait_s: float = 0.0) -> GcResult:
    """Forget (when `keep_last` is given), then delete every data chunk and pack that no
    remaining snapshot references and that is older than `grace_s`. Raises RepositoryLocked
    while a snapshot is being written (after waiting up to `wait_s`)."""
    started = time.monotonic()
    if keep_last is not None:
        _check_keep_last(keep_last)
    repo.open()  # a wrong key is named as such before anything is locked
    with lock_repository(repo, EXCLUSIVE, purpose="gc", wait_s=wait_s) as lock:
        cutoff = _store_now(repo, lock) - grace_s
        manifests = repo.recent_manifests(count=None)
        forgotten = []
        if keep_last is not None:
            pairs = [(manifest.id, manifest.host) for manifest in manifests]
            forgotten = _forget(repo, lock, pairs, keep_last=keep_last, per_host=per_host)
            gone = set(forgotten)
            manifests = [manifest for manifest in manifests if manifest.id not in gone]
        used = _used_extents(manifests)
        listed = [*repo.storage.objects(DATA), *repo.storage.objects(PACKS)]
        doomed, recent, partly_used = _sort_out(listed, used, cutoff)
        _delete(repo, lock, [stored.name for stored in doomed], "gc stopped before deleting")
        return GcResult(
            manifests_read=len(manifests) + len(forgotten), objects_listed=len(listed),
            objects_deleted=len(doomed), bytes_freed=sum(stored.size for stored in doomed),
            packs_kept_partly_used=partly_used, objects_kept_recent=recent,
            objects_missing=len(set(used) - {stored.name for stored in listed}),
            stale_locks_removed=lock.stale_removed, snapshots_forgotten=forgotten,
            duration_s=round(time.monotonic() - started, 3),
        )


def _forget(repo: Repository, lock: HeldLock, pairs: list, *, keep_last: int, per_host: bool) -> list:
    forgotten = snapshots_to_forget(pairs, keep_last=keep_last, per_host=per_host)
    _delete(repo, lock, [SNAPSHOTS + snapshot_id for snapshot_id in forgotten], "forget stopped before deleting")
    return forgotten


def _check_keep_last(keep_last: int) -> None:
    if keep_last < 1:
        raise ConfigError(f"keep_last must be at least 1, got {keep_last}; forget never empties a repository")


def _used_extents(manifests: list) -> dict:
    """Object name -> the (offset, sealed length) of each of its blobs some manifest uses."""
    used: dict = defaultdict(set)
    for manifest in manifests:
        for ref in manifest.blobs.values():
            used[ref.object].add((ref.offset, ref.length))
    return used


def _sort_out(listed: list, used: dict, cutoff: float) -> tuple:
    """The objects to delete, how many unused ones are too young to, and how many packs are
    kept for some of their blobs only."""
    doomed, recent, partly_used = [], 0, 0
    for stored in listed:
        extents = used.get(stored.name)
        if extents:
            if stored.name.startswith(PACKS) and sum(length for _offset, length in extents) < stored.size:
                partly_used += 1
        elif stored.modified > cutoff:
            recent += 1
        else:
            doomed.append(stored)
    return doomed, recent, partly_used


def _delete(repo: Repository, lock: HeldLock, names: list, refused: str) -> None:
    for start in range(0, len(names), DELETE_BATCH):
        lock.ensure_held(refused + (f" ({start} of {len(names)} deleted)" if start else ""))
        repo.storage.delete_many(names[start : start + DELETE_BATCH])


def _store_now(repo: Repository, lock: HeldLock) -> float:
    """The object store's clock, read off the lock just written, so that LastModified times are
    compared with a time of the same clock."""
    for stored in repo.storage.objects(lock.name):
        if stored.name == lock.name:
            return stored.modified
    raise StorageError(f"the lock {repo.storage.key(lock.name)} just written is not listed")
