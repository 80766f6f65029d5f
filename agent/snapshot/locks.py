"""Repository locks on plain S3: no conditional writes or other atomic operations needed.

A lock is a sealed object `locks/RANDOM` holding JSON (kind, purpose, host, pid, created,
refreshed). `snapshot create` holds a SHARED lock; `forget` and `gc` hold an EXCLUSIVE one.
Shared locks coexist; an exclusive lock excludes every other lock.

Taking a lock: write your own lock object, then list `locks/`. If another fresh lock conflicts,
delete your own and refuse (or retry until `wait_s` has passed). Because every taker writes
before it lists, and S3 lists are strongly consistent after a write (AWS S3 since 2020, R2,
SeaweedFS), of two processes that race at least one sees the other and backs off; both may
back off, never both proceed. Retries are jittered so two waiters do not keep colliding.

A holder rewrites its lock's `refreshed` time every REFRESH_S from a background thread. A lock
not refreshed for STALE_AFTER_S (its process died, or its machine was cut off) is stale: it is
ignored and deleted by whoever lists it. Ages compare the lock's `refreshed` with the reader's
clock, so machines' clocks must agree to within minutes (NTP), far less than STALE_AFTER_S.

A holder gives its lock up for lost once it has gone GIVE_UP_S without a refresh (before anyone
else may take it for stale), or when its object has disappeared (someone took it for stale).
`ensure_held()` checks both; a process calls it right before a write that is only safe under
the lock (a manifest, a batch of deletions) and the lock raises LockLost instead.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import time
from dataclasses import asdict, dataclass, replace

from .errors import LockLost, ObjectCorrupt, ObjectMissing, RepositoryLocked, SnapshotError
from .repo import LOCKS, Repository

SHARED, EXCLUSIVE = "shared", "exclusive"
STALE_AFTER_S = 30 * 60
GIVE_UP_S = 20 * 60  # well before STALE_AFTER_S: the slack covers the write that follows a check
REFRESH_S = 5 * 60
POLL_S = 2.0  # between two tries while waiting for a lock

# purpose -> (what a lock with that purpose means, what refusing to take one means)
PURPOSES = {
    "snapshot": ("a snapshot is being written", "snapshot not taken"),
    "forget": ("snapshots are being forgotten", "forget not run"),
    "gc": ("garbage collection is running", "gc not run"),
}

log = logging.getLogger("dumont.snapshot")


@dataclass(frozen=True)
class LockInfo:
    kind: str  # SHARED or EXCLUSIVE
    purpose: str  # a key of PURPOSES
    host: str
    pid: int
    created: float  # unix time
    refreshed: float

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, text: bytes) -> LockInfo:
        data = json.loads(text)
        return cls(kind=data["kind"], purpose=data["purpose"], host=data["host"], pid=int(data["pid"]),
                   created=float(data["created"]), refreshed=float(data["refreshed"]))

    def is_stale(self, now: float) -> bool:
        return now - self.refreshed > STALE_AFTER_S

    def conflicts_with(self, kind: str) -> bool:
        return EXCLUSIVE in (kind, self.kind)


class HeldLock:
    """A lock this process holds; refreshed in the background until `release()`."""

    def __init__(self, repo: Repository, name: str, info: LockInfo, stale_removed: int):
        self.repo = repo
        self.name = name
        self.info = info
        self.stale_removed = stale_removed  # stale locks of others deleted while taking this one
        self._lost = ""  # why the lock is lost, once it is
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._refresher = threading.Thread(target=self._keep_fresh, name=f"lock-{name[-8:]}", daemon=True)
        self._refresher.start()

    def __enter__(self) -> HeldLock:
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

    def refresh(self) -> None:
        with self._mutex:
            now = time.time()
            if not self._doubt(now):
                try:
                    self.repo.put_document(self.name, replace(self.info, refreshed=now).to_json())
                except SnapshotError as exc:  # tried again next time; GIVE_UP_S bounds how long
                    log.warning("could not refresh lock %s: %s", self.name, exc)
                    return
                self.info = replace(self.info, refreshed=now)

    def ensure_held(self, refused: str) -> None:
        """Raise LockLost (ending with `refused`) unless the lock is certainly still ours."""
        with self._mutex:
            doubt = self._doubt(time.time())
        if doubt:
            raise LockLost(f"lock {self.repo.storage.key(self.name)} {doubt}; {refused}")

    def release(self) -> None:
        self._stop.set()
        self._refresher.join()
        try:
            self.repo.storage.delete(self.name)
        except ObjectMissing:
            pass
        except SnapshotError as exc:  # it goes stale and is cleaned up by the next taker
            log.warning("could not remove lock %s: %s", self.name, exc)

    def _doubt(self, now: float) -> str:
        """Why the lock may not be ours any more; "" when it certainly is."""
        if not self._lost and now - self.info.refreshed > GIVE_UP_S:
            self._lost = f"was not refreshed for {now - self.info.refreshed:.0f} s, so others may take it for stale"
        if not self._lost:
            try:
                self.repo.storage.get(self.name)
            except ObjectMissing:
                self._lost = "was removed by another process that took it for stale"
            except SnapshotError as exc:  # not lost for now, but not safe to go on either
                return f"could not be checked ({exc})"
        return self._lost

    def _keep_fresh(self) -> None:
        while not self._stop.wait(REFRESH_S):
            self.refresh()


def lock_repository(repo: Repository, kind: str, *, purpose: str, wait_s: float = 0.0) -> HeldLock:
    """Take a SHARED or EXCLUSIVE lock, waiting up to `wait_s` seconds for conflicting locks
    to go; raise RepositoryLocked naming the lock in the way. Use it as a context manager."""
    started = time.monotonic()
    while True:
        now = time.time()
        info = LockInfo(kind=kind, purpose=purpose, host=socket.gethostname(), pid=os.getpid(),
                        created=now, refreshed=now)
        name = LOCKS + os.urandom(16).hex()
        repo.put_document(name, info.to_json())
        try:
            blocker, stale_removed = _first_conflict(repo, name, kind)
        except BaseException:
            _remove(repo, name)
            raise
        if blocker is None:
            return HeldLock(repo, name, info, stale_removed)
        _remove(repo, name)
        waited = time.monotonic() - started
        if waited + POLL_S > wait_s:
            raise RepositoryLocked(_refusal(repo, blocker, purpose, waited))
        time.sleep(POLL_S * random.uniform(0.5, 1.5))


def _first_conflict(repo: Repository, own: str, kind: str) -> tuple:
    """(name, LockInfo) of a fresh lock that excludes `kind`, or None; and how many stale
    locks were deleted on the way."""
    stale_removed = 0
    for name, _size in repo.storage.list(LOCKS):
        if name == own:
            continue
        try:
            info = LockInfo.from_json(repo.get_document(name))
        except ObjectMissing:
            continue  # released since the listing
        except (ValueError, KeyError, TypeError) as exc:
            raise ObjectCorrupt(repo.storage.key(name), f"unreadable lock: {exc}") from None
        if info.is_stale(time.time()):
            log.warning("removing stale lock %s (%s on %s, refreshed %.0f s ago)",
                        name, info.purpose, info.host, time.time() - info.refreshed)
            _remove(repo, name)
            stale_removed += 1
        elif info.conflicts_with(kind):
            return (name, info), stale_removed
    return None, stale_removed


def _refusal(repo: Repository, blocker: tuple, purpose: str, waited: float) -> str:
    name, info = blocker
    holding = PURPOSES.get(info.purpose, (f"{info.purpose} is running",))[0]
    after = f" after waiting {waited:.0f} s" if waited >= 1 else ""
    return (f"{holding} (lock {repo.storage.key(name)} from host {info.host} pid {info.pid}, "
            f"refreshed {max(0.0, time.time() - info.refreshed):.0f} s ago); {PURPOSES[purpose][1]}{after}")


def _remove(repo: Repository, name: str) -> None:
    try:
        repo.storage.delete(name)
    except ObjectMissing:
        pass
