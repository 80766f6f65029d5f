"""Restoring and verifying a snapshot.

A restore never writes into TARGET directly. It builds the tree in the sibling directory
`TARGET.dumont-partial` (same filesystem), and only once every blob has been fetched,
authenticated, decompressed, checked against its sha256 and written — and one `os.sync()`
has made it durable — renames it to TARGET. So after a failure TARGET is untouched, and a
`*.dumont-partial` directory is by its name an incomplete restore (the next restore to the
same TARGET removes it first). TARGET must not exist or be an empty directory.

Objects are fetched with large GETs on a pool of `parallel` threads: a chunk object whole,
a pack's needed members as few ranged GETs (neighbours coalesced, at most 16 MiB each). Each
worker verifies and decodes its blobs and `pwrite`s them at their offsets into files created
at full size beforehand, so no file is ever held whole in memory; memory is bounded by
parallel x one GET. Modes and mtimes are applied after the data (writing changes mtimes),
directories deepest first. Owners are not restored: files belong to whoever runs the restore.
"""

from __future__ import annotations

import os
import shutil
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Callable, NamedTuple

from .errors import ObjectCorrupt, ObjectMissing, TargetNotEmpty
from .manifest import DIR, FILE, SYMLINK, Manifest
from .progress import Callback, Progress
from .repo import Repository

PARTIAL_SUFFIX = ".dumont-partial"
MAX_GET = 16 * 1024 * 1024 + 64 * 1024  # a whole pack in one GET
MAX_GAP = 256 * 1024  # unneeded bytes worth downloading to save a request


class Destination(NamedTuple):
    path: str  # relative to the snapshot root
    offset: int


class Fetch(NamedTuple):
    """One GET: an object (or a range of it) and the blobs it contains."""

    object: str
    start: int
    length: int
    whole: bool
    blobs: list  # (blob id, BlobRef)


@dataclass
class RestoreResult:
    id: str
    files: int
    bytes: int
    objects: int
    gets: int
    bytes_downloaded: int
    duration_s: float

    def to_dict(self) -> dict:
        return asdict(self)


Sink = Callable[[str, bytes, list], None]  # blob id, plaintext, destinations


def snapshot_restore(repo: Repository, snapshot_id: str, target: str, *,
                     progress: Callback | None = None) -> RestoreResult:
    started = time.monotonic()
    manifest = repo.load_manifest(repo.resolve(snapshot_id))
    target = os.path.abspath(target)
    partial = _prepare_partial(target)
    _create_tree(partial, manifest)

    def write(blob_id: str, data: bytes, destinations: list) -> None:
        for destination in destinations:
            _pwrite(os.path.join(partial, destination.path), data, destination.offset)

    gets_before, bytes_before = repo.storage.traffic.gets, repo.storage.traffic.bytes_got
    objects = _fetch_all(repo, manifest, write, progress, phase="restore")
    _apply_metadata(partial, manifest)
    os.sync()  # one flush for the whole tree instead of a fsync per file
    if os.path.isdir(target):
        os.rmdir(target)  # empty, checked by _prepare_partial
    os.rename(partial, target)
    _sync_directory(os.path.dirname(target))
    files = [entry for entry in manifest.entries if entry.kind == FILE]
    return RestoreResult(
        id=manifest.id, files=len(files), bytes=sum(entry.size for entry in files), objects=objects,
        gets=repo.storage.traffic.gets - gets_before, bytes_downloaded=repo.storage.traffic.bytes_got - bytes_before,
        duration_s=round(time.monotonic() - started, 3),
    )


def snapshot_verify(repo: Repository, snapshot_id: str, *, progress: Callback | None = None) -> dict:
    """Fetch and check every blob of a snapshot (authentic, decodable, matching its hash)
    without writing anything; raises the first ObjectMissing/ObjectCorrupt found."""
    started = time.monotonic()
    manifest = repo.load_manifest(repo.resolve(snapshot_id))
    objects = _fetch_all(repo, manifest, lambda blob_id, data, destinations: None, progress, phase="verify")
    return {"id": manifest.id, "verified": True, "objects": objects, "blobs": len(manifest.blobs),
            "duration_s": round(time.monotonic() - started, 3)}


def _prepare_partial(target: str) -> str:
    if os.path.lexists(target) and not (os.path.isdir(target) and not os.listdir(target)):
        raise TargetNotEmpty(f"{target} exists and is not an empty directory; restore refuses to overwrite it")
    partial = target + PARTIAL_SUFFIX
    if os.path.lexists(partial):
        shutil.rmtree(partial)  # left by an earlier restore that failed
    os.makedirs(partial, mode=0o700)
    return partial


def _create_tree(partial: str, manifest: Manifest) -> None:
    """Directories, symlinks, and every file at its final size, before any data arrives."""
    for entry in manifest.entries:
        path = os.path.join(partial, entry.path)
        if entry.kind == DIR and entry.path:
            os.mkdir(path, 0o700)
        elif entry.kind == SYMLINK:
            os.symlink(entry.target, path)
        elif entry.kind == FILE:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.ftruncate(fd, entry.size)
            finally:
                os.close(fd)


def _apply_metadata(partial: str, manifest: Manifest) -> None:
    for entry in manifest.entries:
        path = os.path.join(partial, entry.path)
        if entry.kind == FILE:
            os.chmod(path, entry.mode)
            os.utime(path, ns=(entry.mtime_ns, entry.mtime_ns))
        elif entry.kind == SYMLINK:
            os.utime(path, ns=(entry.mtime_ns, entry.mtime_ns), follow_symlinks=False)
    # Deepest first: setting a child's metadata must not disturb its parent's mtime afterwards,
    # and a read-only directory must get its mode only once nothing more is written in it.
    directories = [entry for entry in manifest.entries if entry.kind == DIR]
    for entry in sorted(directories, key=lambda e: e.path.count("/") + bool(e.path), reverse=True):
        path = os.path.join(partial, entry.path) if entry.path else partial
        os.chmod(path, entry.mode)
        os.utime(path, ns=(entry.mtime_ns, entry.mtime_ns))


def _pwrite(path: str, data: bytes, offset: int) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        view = memoryview(data)
        while view:
            written = os.pwrite(fd, view, offset)
            view, offset = view[written:], offset + written
    finally:
        os.close(fd)


def _sync_directory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # makes the rename durable
    finally:
        os.close(fd)


def _fetch_all(repo: Repository, manifest: Manifest, sink: Sink, callback: Callback | None, *, phase: str) -> int:
    destinations = _destinations(manifest)
    fetches = _plan_fetches(manifest, destinations)
    files = [entry for entry in manifest.entries if entry.kind == FILE]
    progress = Progress(callback, total_bytes=sum(e.size for e in files), total_files=len(files), phase=phase)

    def fetch(job: Fetch) -> None:
        _fetch_one(repo, job, destinations, sink, progress)

    pool = ThreadPoolExecutor(max_workers=repo.parallel, thread_name_prefix=phase)
    try:
        for future in [pool.submit(fetch, job) for job in fetches]:
            future.result()  # the first failure stops the run; the rest are cancelled below
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    progress.finish()
    return len({job.object for job in fetches})


def _destinations(manifest: Manifest) -> dict:
    """Blob id -> every place it goes: a blob shared by files (or repeated in one) is fetched once."""
    places: dict = defaultdict(list)
    for entry in manifest.entries:
        if entry.kind != FILE:
            continue
        offset = 0
        for blob_id in entry.blobs:
            places[blob_id].append(Destination(entry.path, offset))
            offset += manifest.blobs[blob_id].raw_size
    return places


def _plan_fetches(manifest: Manifest, destinations: dict) -> list:
    by_object: dict = defaultdict(list)
    for blob_id in destinations:
        ref = manifest.blobs[blob_id]
        by_object[ref.object].append((blob_id, ref))
    fetches = []
    for name, members in by_object.items():
        members.sort(key=lambda member: member[1].offset)
        fetches.extend(_coalesce(name, members))
    # Largest first, so one big GET does not start last and stretch the tail of the run.
    fetches.sort(key=lambda job: job.length, reverse=True)
    return fetches


def _coalesce(name: str, members: list) -> list:
    jobs, group = [], [members[0]]
    for member in members[1:]:
        start, end = group[0][1].offset, member[1].offset + member[1].length
        gap = member[1].offset - (group[-1][1].offset + group[-1][1].length)
        if gap <= MAX_GAP and end - start <= MAX_GET:
            group.append(member)
        else:
            jobs.append(_job(name, group))
            group = [member]
    jobs.append(_job(name, group))
    return jobs


def _job(name: str, group: list) -> Fetch:
    start = group[0][1].offset
    end = group[-1][1].offset + group[-1][1].length
    whole = name.startswith("data/")  # a chunk object is exactly one blob
    return Fetch(name, start, end - start, whole, group)


def _fetch_one(repo: Repository, job: Fetch, destinations: dict, sink: Sink, progress: Progress) -> None:
    try:
        body = repo.storage.get(job.object) if job.whole else repo.storage.get(job.object, job.start, job.length)
    except ObjectMissing as exc:
        raise ObjectMissing(exc.key, _needed_by(job, destinations)) from None
    if len(body) < job.length:
        raise ObjectCorrupt(repo.storage.key(job.object), f"{len(body)} bytes where {job.length} were expected",
                            _needed_by(job, destinations))
    view = memoryview(body)
    for blob_id, ref in job.blobs:
        places = destinations[blob_id]
        sealed = view[ref.offset - job.start : ref.offset - job.start + ref.length]
        data = repo.open_blob(blob_id, ref, sealed, needed_by=f"{places[0].path} at offset {places[0].offset}")
        sink(blob_id, data, places)
        progress.advance(nbytes=len(data) * len(places))


def _needed_by(job: Fetch, destinations: dict) -> str:
    paths = sorted({place.path for blob_id, _ in job.blobs for place in destinations[blob_id]})
    more = f" and {len(paths) - 1} more" if len(paths) > 1 else ""
    return f"{paths[0]}{more}"
