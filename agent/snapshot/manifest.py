"""A snapshot's manifest: the tree (every directory, regular file and symlink with its mode
and mtime) and the table of blobs its files are made of.

A file is the concatenation of its blobs in order; each blob is found through the table:
blob id (sha256 of the plaintext, hex) -> [object name, offset, sealed length, plaintext size].
The manifest alone is enough to restore, so a lost index or cache never loses a snapshot.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

FORMAT_VERSION = 1
DIR, FILE, SYMLINK = "dir", "file", "symlink"


class BlobRef(NamedTuple):
    object: str  # name under the repository prefix
    offset: int  # where the sealed blob starts in the object
    length: int  # sealed length
    raw_size: int  # plaintext length


@dataclass
class Entry:
    path: str  # relative, "/"-separated; "" is the snapshot's root directory
    kind: str  # DIR, FILE or SYMLINK
    mode: int = 0  # permission bits (stat.S_IMODE)
    mtime_ns: int = 0
    size: int = 0  # files only
    blobs: list = field(default_factory=list)  # files only: blob ids in file order
    target: str = ""  # symlinks only

    def to_dict(self) -> dict:
        data = {"path": self.path, "kind": self.kind, "mode": self.mode, "mtime_ns": self.mtime_ns}
        if self.kind == FILE:
            data.update(size=self.size, blobs=self.blobs)
        elif self.kind == SYMLINK:
            data["target"] = self.target
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Entry:
        return cls(path=data["path"], kind=data["kind"], mode=data["mode"], mtime_ns=data["mtime_ns"],
                   size=data.get("size", 0), blobs=data.get("blobs", []), target=data.get("target", ""))


@dataclass
class Manifest:
    id: str
    created: float  # unix time
    source: str  # the directory that was snapshotted, for people reading a listing
    host: str
    entries: list  # of Entry, parents before children
    blobs: dict  # blob id -> BlobRef
    stats: dict = field(default_factory=dict)
    parent: str | None = None

    def to_json(self) -> bytes:
        return json.dumps({
            "version": FORMAT_VERSION, "id": self.id, "created": self.created, "source": self.source,
            "host": self.host, "parent": self.parent, "stats": self.stats,
            "entries": [entry.to_dict() for entry in self.entries],
            "blobs": {blob_id: list(ref) for blob_id, ref in self.blobs.items()},
        }, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, text: bytes) -> Manifest:
        data = json.loads(text)
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"manifest format {data.get('version')} is not {FORMAT_VERSION}")
        return cls(
            id=data["id"], created=data["created"], source=data["source"], host=data["host"],
            parent=data.get("parent"), stats=data.get("stats", {}),
            entries=[Entry.from_dict(item) for item in data["entries"]],
            blobs={blob_id: BlobRef(*ref) for blob_id, ref in data["blobs"].items()},
        )

    def files(self) -> dict:
        return {entry.path: entry for entry in self.entries if entry.kind == FILE}


def scan_tree(root: str) -> tuple:
    """Every directory, regular file and symlink under `root` (parents first), and the
    relative paths of what was skipped (sockets, FIFOs, devices: nothing a restore can
    recreate meaningfully). Symlinks are recorded, never followed; hard links become copies."""
    skipped: list = []
    entries = list(walk_tree(root, skipped))
    return entries, skipped


def walk_tree(root: str, skipped: list) -> Iterator[Entry]:
    """scan_tree's entries one by one, as they are found; skipped paths go to `skipped`."""
    root_stat = os.lstat(root)
    if not stat.S_ISDIR(root_stat.st_mode):
        raise NotADirectoryError(root)
    yield Entry(path="", kind=DIR, mode=stat.S_IMODE(root_stat.st_mode), mtime_ns=root_stat.st_mtime_ns)
    yield from _walk_dir(root, "", skipped)


def _walk_dir(directory: str, relative: str, skipped: list) -> Iterator[Entry]:
    with os.scandir(directory) as listing:
        children = sorted(listing, key=lambda item: item.name)
    for child in children:
        path = f"{relative}/{child.name}" if relative else child.name
        info = child.stat(follow_symlinks=False)
        mode, mtime_ns = stat.S_IMODE(info.st_mode), info.st_mtime_ns
        if stat.S_ISDIR(info.st_mode):
            yield Entry(path=path, kind=DIR, mode=mode, mtime_ns=mtime_ns)
            yield from _walk_dir(child.path, path, skipped)
        elif stat.S_ISREG(info.st_mode):
            yield Entry(path=path, kind=FILE, mode=mode, mtime_ns=mtime_ns, size=info.st_size)
        elif stat.S_ISLNK(info.st_mode):
            yield Entry(path=path, kind=SYMLINK, mode=mode, mtime_ns=mtime_ns, target=os.readlink(child.path))
        else:
            skipped.append(path)
