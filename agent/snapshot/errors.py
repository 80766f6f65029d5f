"""The snapshot engine's errors: one family, each message names what failed and where."""

from __future__ import annotations


class SnapshotError(Exception):
    """Base of every snapshot engine error; the text is meant for an operator."""


class ConfigError(SnapshotError):
    """Storage or key settings are missing or malformed."""


class StorageError(SnapshotError):
    """The object store refused or failed a request after retries."""


class WrongKey(SnapshotError):
    """The workspace key does not open this repository's objects."""


class ObjectMissing(SnapshotError):
    """An object a snapshot needs is not in the bucket."""

    def __init__(self, key: str, needed_by: str = ""):
        self.key = key
        self.needed_by = needed_by
        super().__init__(f"object {key} is missing from the bucket{_needed_by(needed_by)}")

    def __reduce__(self):  # rebuilt from its fields, e.g. coming back from a restore worker process
        return type(self), (self.key, self.needed_by)


class ObjectCorrupt(SnapshotError):
    """An object exists but fails authentication, decompression or its content hash."""

    def __init__(self, key: str, reason: str, needed_by: str = ""):
        self.key = key
        self.reason = reason
        self.needed_by = needed_by
        super().__init__(f"object {key} is corrupt ({reason}){_needed_by(needed_by)}")

    def __reduce__(self):
        return type(self), (self.key, self.reason, self.needed_by)


class TargetNotEmpty(SnapshotError):
    """A restore refuses to write over an existing, non-empty directory."""


class NotEnoughSpace(SnapshotError):
    """The restore target's filesystem cannot hold the snapshot; refused before any download."""


class RepositoryLocked(SnapshotError):
    """Another process holds a lock that excludes this operation (locks.py); nothing was changed."""


class LockLost(SnapshotError):
    """This process's lock went stale or was removed as stale by another process, so what it was
    about to write could refer to objects a gc has deleted; the write was not made."""


def _needed_by(needed_by: str) -> str:
    return f"; needed by {needed_by}" if needed_by else ""
