"""Restoring and verifying a snapshot.

A restore never writes into TARGET directly. It builds the tree in the sibling directory
`TARGET.dumont-partial` (same filesystem), and only once every blob has been fetched,
authenticated, decompressed, checked against its sha256 and written — and one `os.sync()`
has made it durable — renames it to TARGET. So after a failure TARGET is untouched, and a
`*.dumont-partial` directory is by its name an incomplete restore (the next restore to the
same TARGET removes it first). TARGET must not exist or be an empty directory.

Objects are fetched with large ranged GETs on a pool of `parallel` threads, each reading into
its own reused buffer: a chunk object whole, a pack's needed members as few GETs (neighbours
coalesced, at most 16 MiB each). The
CPU work after a GET (authenticate, decompress, hash, write) runs on at most one thread per
core (two on one core) at a time, each holding a set of reused decode buffers: more would
only contend for cores and the GIL, and fresh buffers cost page faults. A decoder waiting for
a direct write to reach the disk gives its core to another (two spare sets of buffers). Decoding starts at once;
writing waits only for the directories, which this thread creates meanwhile. Blobs are
`pwrite`n at their offsets, and a file is created by the first write into it, so no file is
ever held whole in memory; memory is bounded by parallel x one GET. A file made of one blob
gets its mode and mtime through the descriptor its write opened; other files and directories
get theirs after all data (writing changes mtimes), directories deepest first. Owners are not
restored: files belong to whoever runs the restore.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os
import queue
import shutil
import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Callable, NamedTuple

from . import codec
from .errors import ObjectCorrupt, ObjectMissing, TargetNotEmpty
from .manifest import DIR, FILE, SYMLINK, Manifest
from .progress import Callback, Progress
from .repo import Repository

PARTIAL_SUFFIX = ".dumont-partial"
MAX_GET = 16 * 1024 * 1024 + 64 * 1024  # a whole pack in one GET (older agents wrote 16 MiB packs)
MAX_GAP = 256 * 1024  # unneeded bytes worth downloading to save a request
DIRECT_MIN = 1024 * 1024  # blobs at least this large are written with O_DIRECT
DIRECT_ALIGN = 4096  # O_DIRECT wants buffer, offset and length aligned to the logical block


class Destination(NamedTuple):
    path: str  # relative to the snapshot root
    offset: int
    only: bool  # the file's only blob: its write also applies the file's mode and mtime
    mode: int
    mtime_ns: int


class Fetch(NamedTuple):
    """One GET: a range of an object and the blobs it contains."""

    object: str
    start: int
    length: int
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
    writer = BlobWriter(partial)

    def prepare() -> None:
        try:
            _create_directories(partial, manifest)
        finally:
            writer.open_for_writes()  # even after a failure, so that no worker waits forever
        _create_links_and_empty_files(partial, manifest)

    objects = _fetch_all(repo, manifest, writer, progress, phase="restore", prepare=prepare)
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


def _create_directories(partial: str, manifest: Manifest) -> None:
    for entry in manifest.entries:  # parents before children
        if entry.kind == DIR and entry.path:
            os.mkdir(os.path.join(partial, entry.path), 0o700)


def _create_links_and_empty_files(partial: str, manifest: Manifest) -> None:
    """What no blob write creates. Every other file is created by the first write into it."""
    for entry in manifest.entries:
        if entry.kind == SYMLINK:
            os.symlink(entry.target, os.path.join(partial, entry.path))
        elif entry.kind == FILE and not entry.blobs:
            os.close(os.open(os.path.join(partial, entry.path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _apply_metadata(partial: str, manifest: Manifest) -> None:
    for entry in manifest.entries:
        path = os.path.join(partial, entry.path)
        if entry.kind == FILE and len(entry.blobs) != 1:  # a one-blob file got them at its write
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
        self._writable = threading.Event()  # set once the directories exist

    def open_for_writes(self) -> None:
        self._writable.set()

    def __call__(self, blob_id: str, data, destinations: list, buffers: codec.DecodeBuffers) -> None:
        if not self._writable.is_set():
            self._writable.wait()
        for destination in destinations:
            self.write(os.path.join(self._root, destination.path), data, destination, buffers)

    def write(self, path: str, data, destination: Destination, buffers: codec.DecodeBuffers) -> None:
        view, offset = memoryview(data), destination.offset
        # A one-blob file is new (O_EXCL); blobs of a larger file arrive in any order.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | (os.O_EXCL if destination.only else 0), 0o600)
        try:
            aligned = len(view) - len(view) % DIRECT_ALIGN
            if self._direct and aligned >= DIRECT_MIN and offset % DIRECT_ALIGN == 0:
                if self._write_direct(fd, _page_aligned(view[:aligned], buffers), offset, buffers):
                    view, offset = view[aligned:], offset + aligned
            _pwrite(fd, view, offset)
            if destination.only:
                os.fchmod(fd, destination.mode)
                os.utime(fd, ns=(destination.mtime_ns, destination.mtime_ns))
        finally:
            os.close(fd)

    def _write_direct(self, fd: int, view: memoryview, offset: int, buffers: codec.DecodeBuffers) -> bool:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        try:
            fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_DIRECT)
            with buffers.blocking():  # the disk's time: another decoder may use this core
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
    """`view` itself when decode left it on a page boundary of the buffers, else a copy there."""
    if (view.obj is buffers.out or buffers.holds(view)) and _address(view) % DIRECT_ALIGN == 0:
        return view
    out = buffers.output(len(view))
    out[: len(view)] = view
    return memoryview(out)[: len(view)]


def _address(view: memoryview) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(view))


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
    restore's tree) runs in this thread while the first blobs are fetched and decoded (the
    sink waits for what it needs of it)."""
    destinations = _destinations(manifest)
    fetches = _plan_fetches(manifest, destinations)
    files = [entry for entry in manifest.entries if entry.kind == FILE]
    progress = Progress(callback, total_bytes=sum(e.size for e in files), total_files=len(files), phase=phase)

    decoders: queue.Queue = queue.Queue()
    cores = _CoreSlots(_decoder_count(repo.parallel))

    def fetch(job: Fetch) -> None:
        _fetch_one(repo, job, destinations, sink, progress, decoders, cores)

    for _ in range(cores.count + 2):  # two more, for decoders waiting for the disk
        decoders.put(codec.DecodeBuffers(blocking=cores.given_away))
    pool = ThreadPoolExecutor(max_workers=repo.parallel, thread_name_prefix=phase)
    try:
        futures = [pool.submit(fetch, job) for job in fetches]
        if prepare is not None:
            prepare()
        for future in futures:
            future.result()  # the first failure stops the run; the rest are cancelled below
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    progress.finish()
    return len({job.object for job in fetches})


class _CoreSlots:
    """At most `count` decoders compute at once; one that waits for the disk gives its slot
    away meanwhile (`given_away`), so cores do not idle while writes are under way."""

    def __init__(self, count: int):
        self.count = count
        self._slots = threading.Semaphore(count)

    def __enter__(self):
        self._slots.acquire()

    def __exit__(self, *exc):
        self._slots.release()

    @contextmanager
    def given_away(self):
        self._slots.release()
        try:
            yield
        finally:
            self._slots.acquire()


def _decoder_count(parallel: int) -> int:
    """As many as the cores, and at least two (one can decode while the other waits for a
    write). Not more: decoders release and retake the GIL around every syscall and every
    zstd, AES and hash call, and one more thread than cores turned that into a storm of
    futex calls (4x as many on 2 cores) costing ~12% of a restore's CPU."""
    return max(1, min(parallel, max(2, os.cpu_count() or 1)))


def _destinations(manifest: Manifest) -> dict:
    """Blob id -> every place it goes: a blob shared by files (or repeated in one) is fetched once."""
    places: dict = defaultdict(list)
    for entry in manifest.entries:
        if entry.kind != FILE:
            continue
        offset = 0
        for blob_id in entry.blobs:
            places[blob_id].append(Destination(entry.path, offset, len(entry.blobs) == 1, entry.mode, entry.mtime_ns))
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
    return Fetch(name, start, end - start, group)


def _fetch_one(repo: Repository, job: Fetch, destinations: dict, sink: Sink, progress: Progress,
               decoders: queue.Queue, cores: _CoreSlots) -> None:
    try:
        # Ranged even for a whole chunk object: its length is known, so the body goes straight
        # into this thread's reused buffer (a longer object's extra bytes are not read at all).
        body = repo.storage.get(job.object, job.start, job.length, into=_get_buffer(job.length))
    except ObjectMissing as exc:
        raise ObjectMissing(exc.key, _needed_by(job, destinations)) from None
    if len(body) < job.length:
        raise ObjectCorrupt(repo.storage.key(job.object), f"{len(body)} bytes where {job.length} were expected",
                            _needed_by(job, destinations))
    view, done = body, 0
    buffers = decoders.get()  # waits while every set of buffers is in use
    try:
        with cores:  # waits while every core is busy decoding
            for blob_id, ref in job.blobs:
                places = destinations[blob_id]
                sealed = view[ref.offset - job.start : ref.offset - job.start + ref.length]
                data = repo.open_blob(blob_id, ref, sealed, buffers=buffers,
                                      needed_by=lambda: f"{places[0].path} at offset {places[0].offset}")
                sink(blob_id, data, places, buffers)
                done += len(data) * len(places)
    finally:
        decoders.put(buffers)
    progress.advance(nbytes=done)


_fetcher = threading.local()


def _get_buffer(size: int) -> mmap.mmap:
    """This fetch thread's GET buffer, reused: a fresh one per GET costs page faults."""
    buffer = getattr(_fetcher, "buffer", None)
    if buffer is None or len(buffer) < size:
        buffer = _fetcher.buffer = mmap.mmap(-1, max(size, 1))
    return buffer


def _needed_by(job: Fetch, destinations: dict) -> str:
    paths = sorted({place.path for blob_id, _ in job.blobs for place in destinations[blob_id]})
    more = f" and {len(paths) - 3} more" if len(paths) > 3 else ""
    return ", ".join(paths[:3]) + more
