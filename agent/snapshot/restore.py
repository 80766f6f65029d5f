"""Restoring and verifying a snapshot.

A restore never writes into TARGET directly. It builds the tree in the sibling directory
`TARGET.dumont-partial` (same filesystem), and only once every blob has been fetched,
authenticated, decompressed, checked against its sha256 and written — and one `os.sync()`
has made it durable — renames it to TARGET. So after a failure TARGET is untouched, and a
`*.dumont-partial` directory is by its name an incomplete restore (the next restore to the
same TARGET removes it first). TARGET must not exist or be an empty directory.

Objects are fetched with large GETs on a pool of `parallel` threads: a chunk object whole,
a pack's needed members as few ranged GETs (neighbours coalesced, at most 16 MiB each). The
CPU work after a GET (authenticate, decompress, hash, write) runs on at most one thread per
core, plus one, at a time, each holding a set of reused decode buffers: more would only
contend for cores and the GIL, and fresh buffers cost page faults. Blobs are `pwrite`n at
their offsets into files created at full size beforehand (a file made of one blob is created
by its write), so no file is ever held whole in memory; memory is bounded by parallel x one
GET. Modes and mtimes are applied after the data (writing changes mtimes), directories
deepest first. Owners are not restored: files belong to whoever runs the restore.
"""

from __future__ import annotations

import errno
import fcntl
import os
import queue
import shutil
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Callable, NamedTuple

from . import codec
from .errors import ObjectCorrupt, ObjectMissing, TargetNotEmpty
from .manifest import DIR, FILE, SYMLINK, Manifest
from .progress import Callback, Progress
from .repo import Repository

PARTIAL_SUFFIX = ".dumont-partial"
MAX_GET = 16 * 1024 * 1024 + 64 * 1024  # a whole pack in one GET
MAX_GAP = 256 * 1024  # unneeded bytes worth downloading to save a request
DIRECT_MIN = 1024 * 1024  # blobs at least this large are written with O_DIRECT
DIRECT_ALIGN = 4096  # O_DIRECT wants buffer, offset and length aligned to the logical block


class Destination(NamedTuple):
    path: str  # relative to the snapshot root
    offset: int
    creates: bool  # the file's only blob: the write creates the file


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


Sink = Callable[[str, bytes, list, codec.DecodeBuffers], None]  # blob id, plaintext, destinations, its buffers


def snapshot_restore(repo: Repository, snapshot_id: str, target: str, *,
                     progress: Callback | None = None) -> RestoreResult:
    started = time.monotonic()
    manifest = repo.load_manifest(repo.resolve(snapshot_id))
    target = os.path.abspath(target)
    partial = _prepare_partial(target)
    gets_before, bytes_before = repo.storage.traffic.gets, repo.storage.traffic.bytes_got
    objects = _fetch_all(repo, manifest, BlobWriter(partial), progress, phase="restore",
                         prepare=lambda: _create_tree(partial, manifest))
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
    objects = _fetch_all(repo, manifest, lambda blob_id, data, destinations, buffers: None, progress, phase="verify")
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
    """Directories, symlinks, and every file of other than one blob at its final size, before
    any data arrives."""
    for entry in manifest.entries:
        path = os.path.join(partial, entry.path)
        if entry.kind == DIR and entry.path:
            os.mkdir(path, 0o700)
        elif entry.kind == SYMLINK:
            os.symlink(entry.target, path)
        elif entry.kind == FILE and len(entry.blobs) != 1:
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


class BlobWriter:
    """The restore's sink: writes each blob at its places in the partial tree.

    A large blob at a block-aligned offset (every chunk of a large file) bypasses the page
    cache with O_DIRECT, straight from the page-aligned buffer it was decoded into: no copy
    into freshly allocated cache pages (on a small VM that costs more CPU than zstd) and
    nothing left for the final sync to flush. The unaligned tail of a blob, small files, and
    filesystems that refuse O_DIRECT (tmpfs, some overlays: EINVAL) get plain writes."""

    def __init__(self, root: str):
        self._root = root
        self._direct = hasattr(os, "O_DIRECT")

    def __call__(self, blob_id: str, data, destinations: list, buffers: codec.DecodeBuffers) -> None:
        for destination in destinations:
            self.write(os.path.join(self._root, destination.path), data, destination.offset,
                       creates=destination.creates, buffers=buffers)

    def write(self, path: str, data, offset: int, *, creates: bool, buffers: codec.DecodeBuffers) -> None:
        view = memoryview(data)
        fd = os.open(path, os.O_WRONLY | (os.O_CREAT | os.O_EXCL if creates else 0), 0o600)
        try:
            aligned = len(view) - len(view) % DIRECT_ALIGN
            if self._direct and aligned >= DIRECT_MIN and offset % DIRECT_ALIGN == 0:
                if self._write_direct(fd, _page_aligned(view[:aligned], buffers), offset):
                    view, offset = view[aligned:], offset + aligned
            _pwrite(fd, view, offset)
        finally:
            os.close(fd)

    def _write_direct(self, fd: int, view: memoryview, offset: int) -> bool:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        try:
            fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_DIRECT)
            _pwrite(fd, view, offset)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            self._direct = False  # this filesystem does not do O_DIRECT: plain writes from now on
            return False
        finally:
            fcntl.fcntl(fd, fcntl.F_SETFL, flags)
        return True


def _page_aligned(view: memoryview, buffers: codec.DecodeBuffers) -> memoryview:
    """`view` itself when it is what decode put at the start of the buffers' map, else a copy there."""
    if view.obj is buffers.out:
        return view
    out = buffers.output(len(view))
    out[: len(view)] = view
    return memoryview(out)[: len(view)]


def _pwrite(fd: int, view: memoryview, offset: int) -> None:
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _sync_directory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # makes the rename durable
    finally:
        os.close(fd)


def _fetch_all(repo: Repository, manifest: Manifest, sink: Sink, callback: Callback | None, *, phase: str,
               prepare: Callable[[], None] | None = None) -> int:
    """Fetch, check and hand every blob to `sink`; the number of objects read. `prepare` (the
    restore's tree) runs in this thread while the first GETs are in flight: the decode buffers
    are handed out only once it has returned, so no blob is written before."""
    destinations = _destinations(manifest)
    fetches = _plan_fetches(manifest, destinations)
    files = [entry for entry in manifest.entries if entry.kind == FILE]
    progress = Progress(callback, total_bytes=sum(e.size for e in files), total_files=len(files), phase=phase)

    decoders: queue.Queue = queue.Queue()

    def fetch(job: Fetch) -> None:
        _fetch_one(repo, job, destinations, sink, progress, decoders)

    pool = ThreadPoolExecutor(max_workers=repo.parallel, thread_name_prefix=phase)
    try:
        futures = [pool.submit(fetch, job) for job in fetches]
        try:
            if prepare is not None:
                prepare()
        finally:  # even after a failure, so that no worker waits for buffers forever
            for _ in range(_decoder_count(repo.parallel)):
                decoders.put(codec.DecodeBuffers())
        for future in futures:
            future.result()  # the first failure stops the run; the rest are cancelled below
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    progress.finish()
    return len({job.object for job in fetches})


def _decoder_count(parallel: int) -> int:
    """One more than the cores: a core whose decoder waits for a direct write has another to run."""
    return max(1, min(parallel, (os.cpu_count() or 1) + 1))


def _destinations(manifest: Manifest) -> dict:
    """Blob id -> every place it goes: a blob shared by files (or repeated in one) is fetched once."""
    places: dict = defaultdict(list)
    for entry in manifest.entries:
        if entry.kind != FILE:
            continue
        offset = 0
        for blob_id in entry.blobs:
            places[blob_id].append(Destination(entry.path, offset, creates=len(entry.blobs) == 1))
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


def _fetch_one(repo: Repository, job: Fetch, destinations: dict, sink: Sink, progress: Progress,
               decoders: queue.Queue) -> None:
    try:
        body = repo.storage.get(job.object) if job.whole else repo.storage.get(job.object, job.start, job.length)
    except ObjectMissing as exc:
        raise ObjectMissing(exc.key, _needed_by(job, destinations)) from None
    if len(body) < job.length:
        raise ObjectCorrupt(repo.storage.key(job.object), f"{len(body)} bytes where {job.length} were expected",
                            _needed_by(job, destinations))
    view = memoryview(body)
    buffers = decoders.get()  # waits while every core is busy decoding
    try:
        with codec.decoding_into(buffers):
            for blob_id, ref in job.blobs:
                places = destinations[blob_id]
                sealed = view[ref.offset - job.start : ref.offset - job.start + ref.length]
                data = repo.open_blob(blob_id, ref, sealed,
                                      needed_by=f"{places[0].path} at offset {places[0].offset}")
                sink(blob_id, data, places, buffers)
                progress.advance(nbytes=len(data) * len(places))
    finally:
        decoders.put(buffers)


def _needed_by(job: Fetch, destinations: dict) -> str:
    paths = sorted({place.path for blob_id, _ in job.blobs for place in destinations[blob_id]})
    more = f" and {len(paths) - 1} more" if len(paths) > 1 else ""
    return f"{paths[0]}{more}"
