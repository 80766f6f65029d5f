"""A snapshot's manifest: the tree (every directory, regular file and symlink with its mode
and mtime) and the table of blobs its files are made of.

A file is the concatenation of its blobs in order; each blob is found through the table:
blob id (hash of the plaintext, hex: repo.py) -> [object name, offset, sealed length, plaintext
size].
The manifest alone is enough to restore, so a lost index or cache never loses a snapshot.
"""

from __future__ import annotations

import gc
import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NamedTuple

FORMAT_VERSION = 2  # 1: entries as objects, blobs as a map (still read)
DIR, FILE, SYMLINK = "dir", "file", "symlink"
_KIND_CODES = {DIR: "d", FILE: "f", SYMLINK: "l"}
_KINDS = {code: kind for kind, code in _KIND_CODES.items()}
SETTLED_NS = 2_000_000_000  # far beyond any filesystem's timestamp tick (ext4 and xfs: a few ms)


@contextmanager
def collector_paused():
    """Python's cycle collector off for one snapshot, restore or verify (used as a decorator).
    A manifest is a few objects per file, all alive until the end, and making them triggers
    full collections that walk every live object: for 15k files two of ~0.1 s each, a quarter
    of an incremental snapshot. What the engine drops is freed by reference counting; the
    collector is back on afterwards (unless it was off before)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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
    # Directories only, for the next scan (not restored): equal ones mean the same entries.
    ctime_ns: int = 0
    inode: int = 0

    def to_row(self) -> list:
        """The manifest's compact form: [path, kind, mode, mtime_ns, ...] with, after those,
        size and blob ids (file), target (symlink), or ctime_ns and inode (directory)."""
        row = [self.path, _KIND_CODES[self.kind], self.mode, self.mtime_ns]
        if self.kind == FILE:
            row += (self.size, self.blobs)
        elif self.kind == SYMLINK:
            row.append(self.target)
        elif self.inode:
            row += (self.ctime_ns, self.inode)
        return row

    @classmethod
    def from_row(cls, row: list) -> Entry:
        path, code, mode, mtime_ns = row[0], row[1], row[2], row[3]
        kind = _KINDS[code]
        if kind == FILE:
            return cls(path, kind, mode, mtime_ns, row[4], row[5])
        if kind == SYMLINK:
            return cls(path, kind, mode, mtime_ns, target=row[4])
        if len(row) > 4:
            return cls(path, kind, mode, mtime_ns, ctime_ns=row[4], inode=row[5])
        return cls(path, kind, mode, mtime_ns)

    @classmethod
    def from_dict(cls, data: dict) -> Entry:
        return cls(path=data["path"], kind=data["kind"], mode=data["mode"], mtime_ns=data["mtime_ns"],
                   size=data.get("size", 0), blobs=data.get("blobs", []), target=data.get("target", ""),
                   ctime_ns=data.get("ctime_ns", 0), inode=data.get("inode", 0))


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
    scan_started_ns: int | None = None  # wall clock when the scan began (None: written before it was kept)
    skipped: list = field(default_factory=list)  # paths of special files left out (sockets, FIFOs, devices)

    def to_json(self) -> bytes:
        """Format 2: entries as rows (Entry.to_row); blobs as rows [id, object number, offset,
        sealed length, plaintext size] with each object's name once in `objects`. Half the
        size of format 1 and twice as fast to write and read, which an incremental snapshot
        of many files feels (it reads its parent's manifest and writes its own)."""
        objects: dict = {}
        blobs = [[blob_id, objects.setdefault(ref.object, len(objects)), ref.offset, ref.length, ref.raw_size]
                 for blob_id, ref in self.blobs.items()]
        return json.dumps({
            "version": FORMAT_VERSION, "id": self.id, "created": self.created, "source": self.source,
            "host": self.host, "parent": self.parent, "stats": self.stats, "scan_started_ns": self.scan_started_ns,
            "objects": list(objects), "blobs": blobs, "entries": [entry.to_row() for entry in self.entries],
            "skipped": self.skipped,
        }, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, text: bytes) -> Manifest:
        data = json.loads(text)
        version = data.get("version")
        if version == 1:
            entries = [Entry.from_dict(item) for item in data["entries"]]
            blobs = {blob_id: BlobRef(*ref) for blob_id, ref in data["blobs"].items()}
        elif version == FORMAT_VERSION:
            objects = data["objects"]
            entries = [Entry.from_row(row) for row in data["entries"]]
            blobs = {row[0]: BlobRef(objects[row[1]], row[2], row[3], row[4]) for row in data["blobs"]}
        else:
            raise ValueError(f"manifest format {version} is not one this agent reads (1 or {FORMAT_VERSION}); "
                             f"upgrade the agent")
        return cls(
            id=data["id"], created=data["created"], source=data["source"], host=data["host"],
            parent=data.get("parent"), stats=data.get("stats", {}), scan_started_ns=data.get("scan_started_ns"),
            entries=entries, blobs=blobs, skipped=data.get("skipped", []),
        )

    def files(self) -> dict:
        return {entry.path: entry for entry in self.entries if entry.kind == FILE}

    def settled_before(self, entry: Entry, *, ctime: bool = False) -> bool:
        """Whether `entry`'s mtime (and ctime) lie safely before this snapshot's scan began.
        File timestamps come from a coarse clock: a change made in the same tick as the one
        before it, after the scan read it, can leave them unchanged. Only an entry last changed
        well before the scan can be taken as unchanged because its timestamps are."""
        if self.scan_started_ns is None:
            return False
        latest = max(entry.mtime_ns, entry.ctime_ns) if ctime else entry.mtime_ns
        return latest < self.scan_started_ns - SETTLED_NS


def walk_tree(root: str, skipped: list, parent: Manifest | None = None) -> Iterator[Entry]:
    """Every directory, regular file and symlink under `root`, parents first, one by one as
    they are found; what is skipped (sockets, FIFOs, devices: nothing a restore can recreate
    meaningfully) goes to `skipped`. Symlinks are recorded, never followed; hard links become
    copies.

    With the `parent` snapshot of the same tree, a directory that is provably unchanged is not
    listed again: its names are taken from the parent, and only stat()ed. Unchanged means the
    same inode with the same mtime and ctime as recorded, both settled before the parent's scan:
    creating, deleting or renaming an entry sets a directory's mtime and ctime, and nothing can
    set a ctime back. Reading a directory costs a disk read when its blocks are not cached;
    stat()ing names the kernel already knows does not. A name that has gone meanwhile (it
    cannot, by the above, short of clock trouble) makes the directory listed after all. Special
    files skipped in such a directory come from the parent's list of them, so `skipped` is the
    same either way."""
    root_stat = os.lstat(root)
    if not stat.S_ISDIR(root_stat.st_mode):
        raise NotADirectoryError(root)
    walker = _Walker(skipped, parent)
    top = _entry("", root_stat)
    yield top
    yield from walker.directory(root, top)


class _Walker:
    def __init__(self, skipped: list, parent: Manifest | None):
        self.skipped = skipped
        self.parent = parent
        self.before: dict = {}  # path -> the parent's entry
        self.children: dict = {}  # directory path -> names of its entries in the parent, in order
        self.skipped_before: dict = {}  # directory path -> its special files the parent skipped
        if parent is not None and parent.scan_started_ns is not None:
            for entry in parent.entries:
                self.before[entry.path] = entry
                if entry.path:
                    directory, _, name = entry.path.rpartition("/")
                    self.children.setdefault(directory, []).append(name)
            for path in parent.skipped:
                self.skipped_before.setdefault(path.rpartition("/")[0], []).append(path)

    def directory(self, absolute: str, entry: Entry) -> Iterator[Entry]:
        found = self._known_children(absolute, entry)
        if found is None:
            found = self._listed_children(absolute, entry.path)
        else:  # unchanged since the parent: so are the special files in it, which it did not record
            self.skipped.extend(self.skipped_before.get(entry.path, ()))
        for path, child_absolute, info in found:
            child = _entry(path, info)
            if child.kind == DIR:
                yield child
                yield from self.directory(child_absolute, child)
            elif child.kind == SYMLINK:
                child.target = os.readlink(child_absolute)
                yield child
            elif child.kind == FILE:
                yield child
            else:
                self.skipped.append(path)

    def _known_children(self, absolute: str, entry: Entry) -> list | None:
        before = self.before.get(entry.path)
        if (before is None or before.kind != DIR or not before.inode or before.inode != entry.inode
                or before.mtime_ns != entry.mtime_ns or before.ctime_ns != entry.ctime_ns
                or not self.parent.settled_before(before, ctime=True)):
            return None
        found = []
        for name in self.children.get(entry.path, []):
            child_absolute = os.path.join(absolute, name)
            try:
                info = os.lstat(child_absolute)
            except FileNotFoundError:
                return None
            found.append((_child(entry.path, name), child_absolute, info))
        return found

    @staticmethod
    def _listed_children(absolute: str, relative: str) -> list:
        with os.scandir(absolute) as listing:
            children = sorted(listing, key=lambda item: item.name)
        return [(_child(relative, child.name), child.path, child.stat(follow_symlinks=False)) for child in children]


def _child(directory: str, name: str) -> str:
    """The path of `name` in `directory`, both relative to the snapshot root ("" is the root)."""
    return f"{directory}/{name}" if directory else name


def _entry(path: str, info: os.stat_result) -> Entry:
    mode, mtime_ns = stat.S_IMODE(info.st_mode), info.st_mtime_ns
    if stat.S_ISDIR(info.st_mode):
        return Entry(path=path, kind=DIR, mode=mode, mtime_ns=mtime_ns, ctime_ns=info.st_ctime_ns, inode=info.st_ino)
    if stat.S_ISREG(info.st_mode):
        return Entry(path=path, kind=FILE, mode=mode, mtime_ns=mtime_ns, size=info.st_size)
    if stat.S_ISLNK(info.st_mode):
        return Entry(path=path, kind=SYMLINK, mode=mode, mtime_ns=mtime_ns)
    return Entry(path=path, kind="other")
