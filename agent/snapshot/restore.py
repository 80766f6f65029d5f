"""Restoring and verifying a snapshot.

A restore never writes into TARGET directly. It builds the tree in the sibling directory
`TARGET.dumont-partial` (same filesystem), and only once every blob has been fetched,
authenticated, decompressed, checked against its hash and written — and one `os.sync()` has
made it durable — renames it to TARGET. So after a failure TARGET is untouched, and a
`*.dumont-partial` directory is by its name an incomplete restore (the next restore to the
same TARGET removes it first). TARGET must not exist or be an empty directory, and its
filesystem must have room for the snapshot: a restore that cannot fit is refused before any
download (`NotEnoughSpace`).

The blobs are fetched, checked and decoded by fetch.py (ranged GETs on parallel connections,
shared out among worker processes on a machine with several cores). Decoding and writing
start at once, while this thread creates the directories; a write into a directory not made
yet waits until they all are. Blobs are `pwrite`n at their offsets, and a file is created by
the first write into it, so no file is ever held whole in memory; memory is bounded by the
connections x one GET. A file made of one blob gets its mode and mtime through the
descriptor its write opened; other files and directories get theirs after all data (writing
changes mtimes), directories deepest first. Owners are not restored: files belong to
whoever runs the restore.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import os
import shutil
import time
from dataclasses import asdict, dataclass

from . import codec
from .errors import NotEnoughSpace, TargetNotEmpty
from .fetch import Destination, fetch_all
from .manifest import DIR, FILE, SYMLINK, Manifest, collector_paused
from .progress import Callback, Progress
from .repo import Repository

PARTIAL_SUFFIX = ".dumont-partial"
DIRECT_MIN = 1024 * 1024  # blobs at least this large are written with O_DIRECT
DIRECT_ALIGN = 4096  # O_DIRECT wants buffer, offset and length aligned to the logical block


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


@collector_paused()
def snapshot_restore(repo: Repository, snapshot_id: str, target: str, *,
                     progress: Callback | None = None) -> RestoreResult:
    started = time.monotonic()
    manifest = repo.load_manifest(repo.resolve(snapshot_id))
    target = os.path.abspath(target)
    partial = _prepare_partial(target)
    try:
        _check_room(partial, manifest)
    except NotEnoughSpace:
        os.rmdir(partial)  # nothing written yet: no incomplete tree to leave behind
        raise
    gets_before, bytes_before = repo.storage.traffic.gets, repo.storage.traffic.bytes_got

    def prepare(ready) -> None:
        _create_directories(partial, manifest)
        ready.set()  # the writers may go on while the links and empty files are made
        _create_links_and_empty_files(partial, manifest)

    report = _progress(manifest, progress, "restore")
    objects = fetch_all(repo, manifest, report, functools.partial(BlobWriter, partial), prepare=prepare)
    _apply_metadata(partial, manifest)
    os.sync()  # one flush for the whole tree instead of a fsync per file
    if os.path.isdir(target):
        os.rmdir(target)  # empty, checked by _prepare_partial
    os.rename(partial, target)
    _sync_directory(os.path.dirname(target))
    return RestoreResult(
        id=manifest.id, files=report.total_files, bytes=report.total_bytes, objects=objects,
        gets=repo.storage.traffic.gets - gets_before, bytes_downloaded=repo.storage.traffic.bytes_got - bytes_before,
        duration_s=round(time.monotonic() - started, 3),
    )


@collector_paused()
def snapshot_verify(repo: Repository, snapshot_id: str, *, progress: Callback | None = None) -> dict:
    """Fetch and check every blob of a snapshot (authentic, decodable, matching its hash)
    without writing anything; raises the first ObjectMissing/ObjectCorrupt found."""
    started = time.monotonic()
    manifest = repo.load_manifest(repo.resolve(snapshot_id))
    objects = fetch_all(repo, manifest, _progress(manifest, progress, "verify"), None)
    return {"id": manifest.id, "verified": True, "objects": objects, "blobs": len(manifest.blobs),
            "duration_s": round(time.monotonic() - started, 3)}


def _progress(manifest: Manifest, callback: Callback | None, phase: str) -> Progress:
    files = [entry for entry in manifest.entries if entry.kind == FILE]
    return Progress(callback, total_bytes=sum(entry.size for entry in files), total_files=len(files), phase=phase)


def _prepare_partial(target: str) -> str:
    if os.path.lexists(target) and not (os.path.isdir(target) and not os.listdir(target)):
        raise TargetNotEmpty(f"{target} exists and is not an empty directory; restore refuses to overwrite it")
    partial = target + PARTIAL_SUFFIX
    if os.path.lexists(partial):
        shutil.rmtree(partial)  # left by an earlier restore that failed
    os.makedirs(partial, mode=0o700)
    return partial


def _check_room(partial: str, manifest: Manifest) -> None:
    """Refuse at once, not after downloading most of it, a snapshot the filesystem cannot hold:
    every file's bytes rounded up to whole blocks (a restore writes zeros too: sparse files come
    back dense) plus a block per directory and symlink, and an inode per entry."""
    room = os.statvfs(partial)
    block = room.f_frsize or 4096
    blocks = sum(-(-entry.size // block) if entry.kind == FILE else 1 for entry in manifest.entries)
    need, free = blocks * block, room.f_bavail * room.f_frsize
    if need > free:
        raise NotEnoughSpace(f"snapshot {manifest.id} needs {_gb(need)} on the filesystem of {partial}, "
                             f"which has {_gb(free)} free; restore to a larger disk")
    if room.f_files and len(manifest.entries) > room.f_favail:  # f_files 0: no inode limit (btrfs)
        raise NotEnoughSpace(f"snapshot {manifest.id} has {len(manifest.entries):,} files and directories; the "
                             f"filesystem of {partial} has room for {room.f_favail:,} more")


def _gb(nbytes: int) -> str:
    return f"{nbytes / 1e9:.1f} GB"


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

    def __init__(self, root: str, ready):
        self._root = root
        self._direct = hasattr(os, "O_DIRECT")
        self._ready = ready  # an Event, set once every directory exists
        self._all_directories = False
        # Mode bits a create cannot set by itself: the umask's, and set-id/sticky (which the
        # kernel may drop). A one-blob file whose mode has none is created with its mode.
        self._chmod_bits = _umask() | 0o7000

    def __call__(self, blob_id: str, data, destinations: list, buffers: codec.DecodeBuffers) -> None:
        for destination in destinations:
            self.write(os.path.join(self._root, destination.path), data, destination, buffers)

    def write(self, path: str, data, destination: Destination, buffers: codec.DecodeBuffers) -> None:
        view, offset = memoryview(data), destination.offset
        fd = self._open(path, destination)
        try:
            aligned = len(view) - len(view) % DIRECT_ALIGN
            if self._direct and aligned >= DIRECT_MIN and offset % DIRECT_ALIGN == 0:
                if self._write_direct(fd, _page_aligned(view[:aligned], buffers), offset, buffers):
                    view, offset = view[aligned:], offset + aligned
            _pwrite(fd, view, offset)
            if destination.only:
                if destination.mode & self._chmod_bits:
                    os.fchmod(fd, destination.mode)
                os.utime(fd, ns=(destination.mtime_ns, destination.mtime_ns))
        finally:
            os.close(fd)

    def _open(self, path: str, destination: Destination) -> int:
        """A one-blob file is new (O_EXCL) and gets its mode at once; blobs of a larger file
        arrive in any order, and it stays writable (0600) until _apply_metadata. Writing starts
        before every directory exists: a file whose directory is not there yet waits for them."""
        if destination.only:
            flags, mode = os.O_WRONLY | os.O_CREAT | os.O_EXCL, destination.mode & 0o777
        else:
            flags, mode = os.O_WRONLY | os.O_CREAT, 0o600
        try:
            return os.open(path, flags, mode)
        except FileNotFoundError:
            if self._all_directories:
                raise
            self._ready.wait()
            self._all_directories = True
            return os.open(path, flags, mode)

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


def _umask() -> int:
    """This process's umask, read without changing it (other threads may be creating files)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o777  # unknown: chmod every file, as if no mode bit got through


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
