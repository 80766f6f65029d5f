"""Fetching a snapshot's blobs: plan the GETs, download, check, decode, hand each blob to a sink.

Restore and verify share this. Objects are fetched with large ranged GETs, each thread reading
into its own reused buffer: a chunk object whole, a pack's needed members as few GETs
(neighbours coalesced, at most 16 MiB each). The CPU work after a GET (authenticate,
decompress, hash, write) is done by one decoder at a time, with a set of reused decode
buffers; one waiting for a direct write to reach the disk lets the next decode meanwhile
(spare sets of buffers).

On a machine with several cores the GETs are shared out among worker processes, one per core,
each with its share of the connections. Decoding threads alone do not scale here: a
restore of many small files makes a few syscalls per file, every one of them releases and
retakes the GIL, and with two busy threads each handoff is a futex wake and a context switch.
Measured on 2 cores: two threads creating 10k files used 40% more CPU than one and were barely
faster; two processes were 1.7x faster. A process is started from a fork server (the agent has
threads, and forking a threaded process can inherit a lock held by one of them), or by a plain
fork when the caller has no other thread (the CLI). Progress and the first failure come back
over a pipe; a failure stops the other workers at once.
"""

from __future__ import annotations

import gc
import mmap
import multiprocessing
import os
import pickle
import queue
import threading
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from multiprocessing.connection import wait
from typing import NamedTuple

from . import codec
from .config import SnapshotConfig
from .errors import ObjectCorrupt, ObjectMissing, SnapshotError
from .manifest import FILE, Manifest
from .progress import Progress
from .repo import Repository

MAX_GET = 16 * 1024 * 1024 + 64 * 1024  # a whole pack in one GET (older agents wrote 16 MiB packs)
MAX_GAP = 256 * 1024  # unneeded bytes worth downloading to save a request
FILE_COST = 32 * 1024  # sharing out GETs, a file to write counts as this many bytes (~ its syscalls)
SPARE_BUFFERS = 2  # decode buffer sets beyond the decoder's: for blobs decoded while one waits on the disk


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


Sink = Callable[[str, bytes, list, codec.DecodeBuffers], None]  # blob id, plaintext, destinations, its buffers
SinkFactory = Callable[[object], Sink]  # given the "directories are ready" event (its wait())


def fetch_all(repo: Repository, manifest: Manifest, progress: Progress, make_sink: SinkFactory | None, *,
              prepare: Callable[[object], None] | None = None) -> int:
    """Fetch, check and hand every blob of `manifest` to the sink `make_sink(ready)` builds (one
    per worker process; None: only check); the number of objects read. `prepare(ready)` runs in
    this thread while the first blobs are fetched and decoded, and must set `ready` once the
    sink may write."""
    destinations = _destinations(manifest)
    fetches = _plan_fetches(manifest, destinations)
    count = _worker_count(repo.parallel, len(fetches))
    if count < 2:
        _fetch_here(repo, fetches, destinations, progress, make_sink, prepare)
    else:
        _fetch_in_workers(repo, fetches, destinations, progress, make_sink, prepare, count)
    progress.finish()
    return len({job.object for job in fetches})


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # what this process may use (a container's cpuset)
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _worker_count(parallel: int, jobs: int) -> int:
    return max(1, min(cores(), parallel, jobs))


# --- in this process ---------------------------------------------------------------------------


def _fetch_here(repo, fetches, destinations, progress, make_sink, prepare) -> None:
    """One core, one connection or one GET: no worker process."""
    ready = threading.Event()
    sink = make_sink(ready) if make_sink else _discard

    def advance(nbytes: int) -> None:
        progress.advance(nbytes=nbytes)

    _fetch_share(repo, fetches, destinations, sink, advance, connections=repo.parallel,
                 meanwhile=lambda: _prepare(prepare, ready))


def _prepare(prepare, ready) -> None:
    if prepare is None:
        ready.set()
    else:
        try:
            prepare(ready)
        finally:
            ready.set()  # even after a failure, so that no writer waits forever


def _discard(blob_id, data, destinations, buffers) -> None:
    """The sink of a verify: the blob was checked, nothing is written."""


def _fetch_share(repo: Repository, fetches: list, destinations: dict, sink: Sink, advance: Callable[[int], None],
                 *, connections: int, meanwhile: Callable[[], None] | None = None) -> None:
    """Fetch `fetches` on `connections` threads, one of them decoding at a time (the cores are
    used by a process each); `meanwhile` runs in this thread once the GETs are under way. The
    first failure is raised and the GETs not yet started are cancelled."""
    buffer_sets: queue.Queue = queue.Queue()
    slot = _CoreSlot()
    for _ in range(1 + SPARE_BUFFERS):
        buffer_sets.put(codec.DecodeBuffers(blocking=slot.given_away))
    pool = ThreadPoolExecutor(max_workers=connections, thread_name_prefix="fetch")
    try:
        futures = [pool.submit(_fetch_one, repo, job, destinations, sink, advance, buffer_sets, slot)
                   for job in fetches]
        if meanwhile is not None:
            meanwhile()
        for future in futures:
            future.result()  # the first failure stops the run; the rest are cancelled below
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class _CoreSlot:
    """One decoder computes at a time; one that waits for the disk gives the slot away
    meanwhile (`given_away`), so the core does not idle while writes are under way."""

    def __init__(self):
        self._slot = threading.Lock()

    def __enter__(self):
        self._slot.acquire()

    def __exit__(self, *exc):
        self._slot.release()

    @contextmanager
    def given_away(self):
        self._slot.release()
        try:
            yield
        finally:
            self._slot.acquire()


def _fetch_one(repo: Repository, job: Fetch, destinations: dict, sink: Sink, advance: Callable[[int], None],
               buffer_sets: queue.Queue, slot: _CoreSlot) -> None:
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
    buffers = buffer_sets.get()  # waits while every set of buffers is in use
    try:
        with slot:  # waits while another blob is being decoded
            for blob_id, ref in job.blobs:
                places = destinations[blob_id]
                sealed = view[ref.offset - job.start : ref.offset - job.start + ref.length]
                data = repo.open_blob(blob_id, ref, sealed, buffers=buffers,
                                      needed_by=lambda: f"{places[0].path} at offset {places[0].offset}")
                sink(blob_id, data, places, buffers)
                done += len(data) * len(places)
    finally:
        buffer_sets.put(buffers)
    advance(done)


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


# --- in worker processes -----------------------------------------------------------------------


def _fetch_in_workers(repo, fetches, destinations, progress, make_sink, prepare, count) -> None:
    context = _context()
    ready = context.Event()
    settings = repo.open()  # read once here, not again by each worker
    workers = []
    try:
        for index, (share, connections) in enumerate(_share_out(fetches, destinations, count, repo.parallel)):
            mine = {blob_id: destinations[blob_id] for job in share for blob_id, _ in job.blobs}
            receive, send = context.Pipe(duplex=False)
            process = context.Process(
                target=_worker, name=f"dumont-fetch-{index}", daemon=True,
                args=(repo.config, settings, share, mine, make_sink, ready, connections, send),
            )
            process.start()
            send.close()  # the worker holds the only writing end: its exit is our EOF
            workers.append((process, receive))
        _prepare(prepare, ready)
        _collect(workers, progress, repo.storage.traffic)
    finally:
        for process, receive in workers:
            if process.is_alive():
                process.kill()  # after a failure elsewhere; a finished worker has exited
            process.join()
            receive.close()


def _context():
    """A fork server when this process has other threads (the agent): forking it could copy a
    lock one of them holds into the worker. A plain fork when it has none: no server to start."""
    try:
        single = len(os.listdir("/proc/self/task")) == 1
    except OSError:
        single = False
    if single:
        return multiprocessing.get_context("fork")
    return forkserver()


def forkserver():
    """The fork server's context; it starts on first use (a Python process that imports the
    engine once), or earlier by warm_up()."""
    context = multiprocessing.get_context("forkserver")
    preload = ["agent.snapshot.fetch"]
    if codec.numpy_available():
        preload.append("numpy")  # OPENBLAS_NUM_THREADS is set by now, and the server inherits it
    context.set_forkserver_preload(preload)
    return context


def warm_up() -> None:
    """Start the fork server now (an agent does, at start) rather than in its first restore."""
    if cores() > 1 and "forkserver" in multiprocessing.get_all_start_methods():
        from multiprocessing import forkserver as server

        forkserver()
        server.ensure_running()


def _share_out(fetches: list, destinations: dict, count: int, parallel: int) -> list:
    """`count` shares of about the same work (bytes, plus FILE_COST per file written), largest
    GETs first to the least loaded share; and the connections, split as evenly."""
    shares = [[] for _ in range(count)]
    loads = [0] * count
    for job in fetches:  # largest first already
        least = loads.index(min(loads))
        shares[least].append(job)
        loads[least] += job.length + FILE_COST * sum(len(destinations[blob_id]) for blob_id, _ in job.blobs)
    connections = [parallel // count + (index < parallel % count) for index in range(count)]
    return list(zip(shares, connections))


def _worker(config: SnapshotConfig, settings: dict, fetches: list, destinations: dict,
            make_sink: SinkFactory | None, ready, connections: int, pipe) -> None:
    """A worker process: its share of the GETs; progress and the outcome to `pipe`."""
    gc.disable()  # as in its parent (collector_paused), for the few seconds it lives
    lock = threading.Lock()  # the fetch threads share the pipe

    def send(message) -> None:
        with lock:
            pipe.send(message)

    try:
        repo = Repository(config, settings=settings)
        sink = make_sink(ready) if make_sink else _discard
        _fetch_share(repo, fetches, destinations, sink, send, connections=connections)
        send(_Done(repo.storage.traffic.gets, repo.storage.traffic.bytes_got))
    except BaseException as exc:  # everything goes back to the parent, which raises it
        send(_Failure.of(exc))
    finally:
        pipe.close()


class _Done(NamedTuple):
    gets: int
    bytes_got: int


class _Failure(NamedTuple):
    error: BaseException

    @classmethod
    def of(cls, exc: BaseException) -> _Failure:
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:  # noqa: BLE001 - an exception that does not pickle still gets its text back
            exc = SnapshotError(f"{type(exc).__name__}: {exc}")
        exc.__traceback__ = None
        return cls(exc)


def _collect(workers: list, progress: Progress, traffic) -> None:
    """Progress from the workers until each has finished (its GETs added to `traffic`); the
    first failure is raised."""
    running = {receive: process for process, receive in workers}
    while running:
        for receive in wait(list(running)):
            try:
                message = receive.recv()
            except EOFError:
                process = running.pop(receive)
                process.join()
                raise SnapshotError(f"the fetch worker process {process.pid} ended before its work was done "
                                    f"(exit code {process.exitcode})") from None
            if isinstance(message, int):
                progress.advance(nbytes=message)
            elif isinstance(message, _Done):
                del running[receive]
                traffic.gets += message.gets
                traffic.bytes_got += message.bytes_got
            else:
                raise message.error


# --- planning ----------------------------------------------------------------------------------


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
