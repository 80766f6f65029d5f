"""Creating a snapshot: scan, chunk, deduplicate, compress, seal, upload — then the manifest.

Large files are cut into fixed 1 MiB chunks, read 8 at a time; the new chunks of such a read
are stored together in one object. Files up to 1 MiB are one blob each, bundled into ~8 MiB
packs shared by all small files. Small chunks make an incremental snapshot upload little more
than what changed; objects of up to 8 MiB of one file's region (and 8 MiB packs) keep objects
and requests few (a restore GETs each whole), and let a deleted or rewritten large file free
whole objects. (An object stays whole while any of its blobs is in use: gc.py.) A blob is
identified by the hash of its plaintext (BLAKE3; sha256 in older repositories: repo.py); one
already stored (by the newest snapshots) or already being stored by this run is never uploaded
again. Files whose size and mtime match the parent snapshot are not even read. Fixed-size
chunks re-upload everything after an insertion in the middle of a large file;
content-defined chunking would fix that and is a later improvement.

Work runs on a pool of `parallel` threads; hashing, zstd, AES-GCM and socket I/O release the
GIL. At most 2 x parallel work items are queued, so memory stays bounded (each thread reuses
one 8 MiB read buffer). Chunks are read with O_DIRECT (ChunkReader).

A snapshot holds a shared repository lock (locks.py) from before it reads which blobs are
stored until its manifest is written, and checks that the lock is still its own right before
writing the manifest; that is what makes a concurrent `gc` safe (gc.py).
"""

from __future__ import annotations

import errno
import mmap
import os
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass

from . import codec
from .crypto import OVERHEAD
from .errors import SnapshotError
from .locks import SHARED, HeldLock, lock_repository
from .manifest import FILE, BlobRef, Entry, Manifest, collector_paused, walk_tree
from .progress import Callback, Progress
from .repo import Repository, new_snapshot_id

MiB = 1024 * 1024
CHUNK_SIZE = 1 * MiB  # a 1 MiB change in a large file uploads 1 to 2 MiB
CHUNKS_PER_READ = 8  # a large file is read 8 MiB at a time
SMALL_FILE_MAX = 1 * MiB  # files up to this size are one blob
PACK_TARGET = 8 * MiB  # small enough that the last pack's upload ends a snapshot soon
SMALL_BATCH_BYTES = 4 * MiB  # small files read by one work item
SMALL_BATCH_FILES = 256
LOCK_WAIT_S = 10 * 60  # how long a snapshot waits for a running gc or forget to finish


class ChunkReader:
    """Reads chunks of large files into per-thread reused page-aligned buffers (no fresh 4 MiB
    allocation, and its page faults, per chunk) with O_DIRECT: the disk writes straight into
    the buffer, which costs a fraction of the CPU of a buffered read (on a cold cache about a
    third of the wall time too) and leaves the page cache to the workload. Pages the workload
    wrote and the kernel has not yet written back are written back first by the kernel, so
    what is read is what the file holds. Where O_DIRECT is refused (tmpfs, some overlays) it
    reads through the cache. What read() returns is valid until the same thread's next read().

    (No peek into the page cache first: a non-blocking read of uncached pages returns EAGAIN
    but starts reading them into the cache anyway, so the data would be read twice.)"""

    def __init__(self):
        self._local = threading.local()
        self._direct = hasattr(os, "O_DIRECT")

    def read(self, path: str, offset: int, size: int) -> memoryview:
        buffer = getattr(self._local, "buffer", None)
        if buffer is None or len(buffer) < size:
            buffer = self._local.buffer = mmap.mmap(-1, size)
        view = memoryview(buffer)[:size]
        got = self._read_direct(path, view, offset) if self._direct else None
        if got is None:
            fd = os.open(path, os.O_RDONLY)
            try:
                got = _read_fully(fd, view, offset)
            finally:
                os.close(fd)
        return view[:got]

    def _read_direct(self, path: str, view: memoryview, offset: int) -> int | None:
        """Bytes read, or None when this filesystem refuses O_DIRECT (then never tried again)."""
        fd = None
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
            return _read_fully(fd, view, offset)  # buffer and offset are page-aligned, the size whole pages
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            self._direct = False
            return None
        finally:
            if fd is not None:
                os.close(fd)


def _read_fully(fd: int, view: memoryview, offset: int) -> int:
    got = 0
    while got < len(view):
        count = os.preadv(fd, [view[got:]], offset + got)
        if count == 0:
            break  # end of file
        got += count
    return got


@dataclass
class CreateResult:
    id: str
    files: int
    dirs: int
    symlinks: int
    skipped: int  # sockets, FIFOs, devices
    bytes: int  # logical size of all files
    reused_files: int  # unchanged since the parent: not read
    new_blobs: int
    new_bytes: int  # plaintext bytes of the new blobs
    stored_bytes: int  # sealed size of every blob the snapshot references
    uploaded_bytes: int  # everything PUT by this run, manifest included
    puts: int
    duration_s: float

    def to_dict(self) -> dict:
        return asdict(self)


class BlobTable:
    """Blobs known to be stored, and blobs claimed by a worker that is storing them now."""

    def __init__(self, known: dict):
        self._refs = dict(known)
        self._claimed: set = set()
        self._lock = threading.Lock()
        self.new_blobs = 0
        self.new_bytes = 0

    def claim(self, blob_id: str) -> bool:
        """True when the caller must store the blob; False when it is stored or being stored."""
        with self._lock:
            if blob_id in self._refs or blob_id in self._claimed:
                return False
            self._claimed.add(blob_id)
            return True

    def record(self, blob_id: str, ref: BlobRef) -> None:
        with self._lock:
            self._refs[blob_id] = ref
            self.new_blobs += 1
            self.new_bytes += ref.raw_size

    def has_all(self, blob_ids) -> bool:
        # No lock: a dict lookup is atomic, and entries are only ever added.
        refs = self._refs
        return all(blob_id in refs for blob_id in blob_ids)

    def refs_for(self, blob_ids) -> dict:
        with self._lock:
            return {blob_id: self._refs[blob_id] for blob_id in blob_ids}


class Packer:
    """Bundles blobs into pack objects. Sealing happens under the lock because a member's
    associated data names its pack; blobs of at most 1 MiB (AES-GCM: ~0.1 ms) keep it cheap."""

    def __init__(self, repo: Repository, table: BlobTable):
        self._repo = repo
        self._table = table
        self._lock = threading.Lock()
        self._name, self._parts, self._size = self._fresh()

    def add(self, blob_id: str, encoded: bytes, raw_size: int) -> None:
        full = None
        with self._lock:
            if self._parts and self._size + len(encoded) + OVERHEAD > PACK_TARGET:
                full = (self._name, self._parts)
                self._name, self._parts, self._size = self._fresh()
            sealed = self._repo.seal_blob(self._name, blob_id, encoded)
            self._table.record(blob_id, BlobRef(self._name, self._size, len(sealed), raw_size))
            self._parts.append(sealed)
            self._size += len(sealed)
        if full:
            self._upload(*full)

    def flush(self) -> None:
        with self._lock:
            name, parts = self._name, self._parts
            self._name, self._parts, self._size = self._fresh()
        if parts:
            self._upload(name, parts)

    def _upload(self, name: str, parts: list) -> None:
        self._repo.storage.put(name, b"".join(parts))

    @staticmethod
    def _fresh() -> tuple:
        return new_pack_name(), [], 0


def new_pack_name() -> str:
    random = os.urandom(16).hex()
    return f"packs/{random[:2]}/{random}"


class Snapshotter:
    def __init__(self, repo: Repository, lock: HeldLock, *, level: int, progress: Callback | None):
        self.repo = repo
        self.lock = lock
        self.level = level
        self._progress_callback = progress
        self._pool = ThreadPoolExecutor(max_workers=repo.parallel, thread_name_prefix="snapshot")
        self._slots = threading.BoundedSemaphore(2 * repo.parallel)
        self._futures: list = []
        self._failed = threading.Event()
        self._reader = ChunkReader()

    def run(self, source: str, parent: Manifest | None, known: dict, started: float) -> CreateResult:
        puts_before, bytes_before = self.repo.storage.traffic.puts, self.repo.storage.traffic.bytes_put
        self.table = BlobTable(known)
        self.packer = Packer(self.repo, self.table)
        estimate = parent.stats if parent else {}  # the real totals are known once the scan ends
        self.progress = Progress(self._progress_callback, total_bytes=estimate.get("bytes", 0),
                                 total_files=estimate.get("files", 0), phase="snapshot")
        entries: list = []
        skipped: list = []
        scan_started_ns = time.time_ns()
        try:
            reused = self._store_files(source, walk_tree(source, skipped, parent), entries, parent)
            self.packer.flush()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
        files = [entry for entry in entries if entry.kind == FILE]
        manifest = self._manifest(source, entries, parent)
        manifest.scan_started_ns = scan_started_ns
        manifest.skipped = sorted(skipped)
        manifest.stats = {
            "files": len(files), "dirs": _count(entries, "dir"), "symlinks": _count(entries, "symlink"),
            "skipped": len(skipped), "bytes": sum(f.size for f in files), "reused_files": reused,
            "new_blobs": self.table.new_blobs, "new_bytes": self.table.new_bytes,
            "stored_bytes": sum(ref.length for ref in manifest.blobs.values()),
        }
        self._write_manifest(manifest)
        self.progress.finish()
        traffic = self.repo.storage.traffic
        return CreateResult(
            id=manifest.id, **manifest.stats,
            uploaded_bytes=traffic.bytes_put - bytes_before, puts=traffic.puts - puts_before,
            duration_s=round(time.monotonic() - started, 3),
        )

    def _write_manifest(self, manifest: Manifest) -> None:
        """Every blob is stored; the manifest makes them a snapshot, if the lock is still ours."""
        self.lock.ensure_held(f"snapshot {manifest.id} not written")
        self.repo.save_manifest(manifest)

    def _store_files(self, source: str, scan: Iterator[Entry], entries: list, parent: Manifest | None) -> int:
        """Store every file as the scan finds it (the workers read, hash and upload changed
        files while this thread goes on scanning), collecting the scan's entries into
        `entries`; the number of files reused unread. (A scan on a thread of its own was
        slower: a thread waiting on the disk after every stat loses the GIL race each time.)"""
        parent_files = parent.files() if parent else {}
        reused = reused_bytes = files = total_bytes = 0
        batch: list = []
        for entry in scan:
            entries.append(entry)
            if entry.kind != FILE:
                continue
            files += 1
            total_bytes += entry.size
            if self._reuse_unchanged(entry, parent_files.get(entry.path), parent):
                reused += 1
                reused_bytes += entry.size
                if reused % 1000 == 0:  # progress in steps: an unchanged file costs next to nothing
                    self.progress.advance(nbytes=reused_bytes, files=1000)
                    reused_bytes = 0
            elif entry.size <= SMALL_FILE_MAX:
                batch.append(entry)
                if len(batch) >= SMALL_BATCH_FILES or sum(e.size for e in batch) >= SMALL_BATCH_BYTES:
                    self._submit(self._store_small_files, source, batch)
                    batch = []
            else:
                self._submit_chunks(source, entry)
        self.progress.set_totals(total_bytes=total_bytes, total_files=files)
        if batch:
            self._submit(self._store_small_files, source, batch)
        self.progress.advance(nbytes=reused_bytes, files=reused % 1000)
        self._wait_all()
        return reused

    def _reuse_unchanged(self, entry: Entry, before: Entry | None, parent: Manifest | None) -> bool:
        """Same size and mtime as in the parent, that mtime settled before the parent's scan
        (Manifest.settled_before), and every blob still stored: the file is not read again."""
        if before is None or before.size != entry.size or before.mtime_ns != entry.mtime_ns:
            return False
        if not parent.settled_before(before) or not self.table.has_all(before.blobs):
            return False
        entry.blobs = list(before.blobs)
        return True

    def _submit_chunks(self, source: str, entry: Entry) -> None:
        count = -(-entry.size // CHUNK_SIZE)
        entry.blobs = [None] * count
        for first in range(0, count, CHUNKS_PER_READ):
            self._submit(self._store_chunks, source, entry, first)

    def _store_chunks(self, source: str, entry: Entry, first: int) -> None:
        """Up to CHUNKS_PER_READ chunks of a large file, from one read; the new ones go into one
        object of their own, so that a region of a file lives and dies with that file."""
        data = self._reader.read(os.path.join(source, entry.path), first * CHUNK_SIZE, CHUNKS_PER_READ * CHUNK_SIZE)
        tensor = codec.is_tensor_file(entry.path)
        new: list = []
        for index, start in enumerate(range(0, len(data), CHUNK_SIZE), start=first):
            if index >= len(entry.blobs):
                break  # the file grew since the scan: what the scan saw is what is stored
            chunk = data[start : start + CHUNK_SIZE]
            blob_id = self.repo.blob_id(chunk)
            if self.table.claim(blob_id):
                new.append((blob_id, codec.encode(chunk, level=self.level, tensor=tensor), len(chunk)))
            entry.blobs[index] = blob_id
        if new:
            name, parts, refs, offset = new_pack_name(), [], [], 0
            for blob_id, encoded, raw_size in new:
                sealed = self.repo.seal_blob(name, blob_id, encoded)
                parts.append(sealed)
                refs.append((blob_id, BlobRef(name, offset, len(sealed), raw_size)))
                offset += len(sealed)
            self.repo.storage.put(name, b"".join(parts))
            for blob_id, ref in refs:
                self.table.record(blob_id, ref)
        last = first + CHUNKS_PER_READ >= len(entry.blobs)
        self.progress.advance(nbytes=len(data), files=1 if last else 0)

    def _store_small_files(self, source: str, entries: list) -> None:
        for entry in entries:
            with open(os.path.join(source, entry.path), "rb") as file:
                data = file.read()
            blob_id = self.repo.blob_id(data)
            entry.blobs = [blob_id] if data else []
            if data and self.table.claim(blob_id):
                encoded = codec.encode(data, level=self.level, tensor=codec.is_tensor_file(entry.path))
                self.packer.add(blob_id, encoded, len(data))
            self.progress.advance(nbytes=len(data), files=1)

    def _submit(self, work, *args) -> None:
        if self._failed.is_set():
            self._wait_all()  # raises the first failure
        self._slots.acquire()
        future = self._pool.submit(work, *args)
        future.add_done_callback(self._done)
        self._futures.append(future)

    def _done(self, future: Future) -> None:
        self._slots.release()
        if not future.cancelled() and future.exception() is not None:
            self._failed.set()

    def _wait_all(self) -> None:
        for future in self._futures:
            future.result()
        self._futures = []

    def _manifest(self, source: str, entries: list, parent: Manifest | None) -> Manifest:
        for entry in entries:
            if entry.kind == FILE and None in entry.blobs:
                entry.blobs = [blob_id for blob_id in entry.blobs if blob_id is not None]  # it shrank meanwhile
        used = {blob_id for entry in entries if entry.kind == FILE for blob_id in entry.blobs}
        blobs = self.table.refs_for(sorted(used))
        for entry in entries:
            if entry.kind == FILE:
                # What was read is the truth: a file that changed size while being read is
                # recorded as read, never as a mix of sizes.
                entry.size = sum(blobs[blob_id].raw_size for blob_id in entry.blobs)
        return Manifest(id=new_snapshot_id(), created=time.time(), source=os.path.abspath(source),
                        host=socket.gethostname(), entries=entries, blobs=blobs,
                        parent=parent.id if parent else None)


@collector_paused()
def snapshot_create(repo: Repository, source: str, *, level: int = codec.DEFAULT_LEVEL,
                    use_parent: bool = True, progress: Callback | None = None,
                    lock_wait_s: float = LOCK_WAIT_S) -> CreateResult:
    """Snapshot directory `source` into the repository and return what it cost.

    With `use_parent`, files unchanged (size and mtime) since the newest snapshot are not read
    again; pass False to re-read and re-hash everything. Waits up to `lock_wait_s` for a
    running gc or forget, then raises RepositoryLocked."""
    if not os.path.isdir(source):
        raise SnapshotError(f"{source} is not a directory")
    started = time.monotonic()
    repo.open_or_init()
    # The lock comes first: blobs counted as stored must be ones no gc can delete meanwhile.
    with lock_repository(repo, SHARED, purpose="snapshot", wait_s=lock_wait_s) as lock:
        recent = repo.recent_manifests()
        known = {blob_id: ref for manifest in reversed(recent) for blob_id, ref in manifest.blobs.items()}
        parent = recent[0] if recent and use_parent else None
        return Snapshotter(repo, lock, level=level, progress=progress).run(source, parent, known, started)


def _count(entries: list, kind: str) -> int:
    return sum(1 for entry in entries if entry.kind == kind)
