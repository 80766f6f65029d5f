"""Manifests are written in format 2 (rows) and read in formats 1 and 2: a snapshot taken by an
older agent still restores."""

from __future__ import annotations

import json

import pytest

from agent.snapshot.manifest import DIR, FILE, SYMLINK, BlobRef, Entry, Manifest


def _manifest() -> Manifest:
    entries = [
        Entry(path="", kind=DIR, mode=0o755, mtime_ns=1, ctime_ns=2, inode=3),
        Entry(path="model.bin", kind=FILE, mode=0o644, mtime_ns=4, size=3, blobs=["aa", "bb"]),
        Entry(path="empty", kind=FILE, mode=0o600, mtime_ns=5),
        Entry(path="link", kind=SYMLINK, mode=0o777, mtime_ns=6, target="model.bin"),
        Entry(path="old-dir", kind=DIR, mode=0o700, mtime_ns=7),  # scanned before ctimes were kept
    ]
    blobs = {"aa": BlobRef("packs/01/x", 0, 40, 2), "bb": BlobRef("packs/02/y", 100, 39, 1)}
    return Manifest(id="20261130T000000.000Z-00000000", created=1.5, source="/workspace", host="gpu-1",
                    entries=entries, blobs=blobs, stats={"files": 2}, parent="p", scan_started_ns=123)


def test_format_2_round_trips_every_field():
    manifest = _manifest()
    document = json.loads(manifest.to_json())

    assert document["version"] == 2 and document["objects"] == ["packs/01/x", "packs/02/y"]
    assert Manifest.from_json(manifest.to_json()) == manifest


def _format_1(entry: Entry) -> dict:
    """An entry as format 1 wrote it: an object, with a directory's ctime and inode when known."""
    data = {"path": entry.path, "kind": entry.kind, "mode": entry.mode, "mtime_ns": entry.mtime_ns}
    if entry.kind == FILE:
        data.update(size=entry.size, blobs=entry.blobs)
    elif entry.kind == SYMLINK:
        data["target"] = entry.target
    elif entry.inode:
        data.update(ctime_ns=entry.ctime_ns, inode=entry.inode)
    return data


def test_format_1_manifests_are_still_read():
    manifest = _manifest()
    old = json.dumps({
        "version": 1, "id": manifest.id, "created": manifest.created, "source": manifest.source,
        "host": manifest.host, "parent": manifest.parent, "stats": manifest.stats,
        "entries": [_format_1(entry) for entry in manifest.entries],
        "blobs": {blob_id: list(ref) for blob_id, ref in manifest.blobs.items()},
    }).encode()

    read = Manifest.from_json(old)

    assert read.entries == manifest.entries and read.blobs == manifest.blobs
    assert read.scan_started_ns is None  # so nothing in it counts as settled


def test_an_unknown_format_names_itself():
    with pytest.raises(ValueError, match="format 9 is not one this agent reads"):
        Manifest.from_json(json.dumps({"version": 9}).encode())
