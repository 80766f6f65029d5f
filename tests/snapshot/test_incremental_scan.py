"""An incremental snapshot trusts what provably did not change, and nothing else: directories
with the same inode, mtime and ctime as in the parent are not listed again (their names come
from the parent), files with the same size and mtime are not read again, and in both cases only
when those timestamps were settled before the parent's scan (a change in the same clock tick
leaves them equal)."""

from __future__ import annotations

import os
import time

import pytest

from agent.snapshot import manifest as manifest_module
from agent.snapshot import snapshot_create, snapshot_restore

from .trees import describe

AN_HOUR_AGO = time.time() - 3600


@pytest.fixture
def settled_at_once(monkeypatch):
    """Timestamps count as settled as soon as the scan has begun (instead of 2 s before it), so
    that directories made by the test, whose ctime cannot be set back, can be trusted."""
    monkeypatch.setattr(manifest_module, "SETTLED_NS", 0)


@pytest.fixture
def listings(monkeypatch):
    """The directories os.scandir is asked to list."""
    listed: list = []
    real = os.scandir

    def spy(path="."):
        listed.append(os.fspath(path))
        return real(path)

    monkeypatch.setattr(manifest_module.os, "scandir", spy)
    return listed


def _tree(root):
    for directory in ("a", "a/deep", "b", "c"):
        (root / directory).mkdir(parents=True)
    for index, directory in enumerate(("a", "a/deep", "b", "c", "")):
        path = root / directory / f"file{index}.txt"
        path.write_bytes(f"content {index}\n".encode() * 100)
        os.utime(path, (AN_HOUR_AGO, AN_HOUR_AGO))
    (root / "b" / "link").symlink_to("../c/file3.txt")
    return root


def _snapshot(repo, root, listings):
    listings.clear()
    return snapshot_create(repo, str(root))


def test_unchanged_directories_are_not_listed_again(repo, tmp_path, settled_at_once, listings):
    root = _tree(tmp_path / "workspace")
    first = _snapshot(repo, root, listings)
    assert len(listings) == 5  # the root and its four directories

    second = _snapshot(repo, root, listings)
    snapshot_restore(repo, second.id, str(tmp_path / "restored"))

    assert listings == []
    assert second.reused_files == second.files == 5 and second.symlinks == 1 and second.dirs == first.dirs
    assert describe(tmp_path / "restored") == describe(root)


def test_a_file_changed_in_an_unlisted_directory_is_still_read(repo, tmp_path, settled_at_once, listings):
    root = _tree(tmp_path / "workspace")
    _snapshot(repo, root, listings)
    (root / "a" / "deep" / "file1.txt").write_bytes(b"changed in place\n")

    second = _snapshot(repo, root, listings)
    snapshot_restore(repo, second.id, str(tmp_path / "restored"))

    assert listings == []  # no entry was added or removed anywhere
    assert second.reused_files == 4
    assert (tmp_path / "restored" / "a" / "deep" / "file1.txt").read_bytes() == b"changed in place\n"


def test_added_and_deleted_entries_make_their_directory_listed(repo, tmp_path, settled_at_once, listings):
    root = _tree(tmp_path / "workspace")
    _snapshot(repo, root, listings)
    (root / "a" / "deep" / "new.txt").write_bytes(b"new\n")
    (root / "c" / "file3.txt").unlink()

    second = _snapshot(repo, root, listings)
    snapshot_restore(repo, second.id, str(tmp_path / "restored"))

    assert sorted(os.path.relpath(path, root) for path in listings) == ["a/deep", "c"]
    assert describe(tmp_path / "restored") == describe(root)


def test_a_directory_whose_mtime_was_set_back_is_listed_by_its_ctime(repo, tmp_path, settled_at_once, listings):
    root = _tree(tmp_path / "workspace")
    _snapshot(repo, root, listings)
    before = os.stat(root / "b")
    (root / "b" / "sneaked-in.txt").write_bytes(b"hidden?\n")
    os.utime(root / "b", ns=(before.st_atime_ns, before.st_mtime_ns))  # as tar or rsync -t would
    assert os.stat(root / "b").st_mtime_ns == before.st_mtime_ns

    second = _snapshot(repo, root, listings)
    snapshot_restore(repo, second.id, str(tmp_path / "restored"))

    assert [os.path.relpath(path, root) for path in listings] == ["b"]
    assert (tmp_path / "restored" / "b" / "sneaked-in.txt").read_bytes() == b"hidden?\n"


def test_a_replaced_directory_is_listed_by_its_inode(repo, tmp_path, settled_at_once, listings):
    root = _tree(tmp_path / "workspace")
    _snapshot(repo, root, listings)
    (root / "c").rename(root / "c-old")
    (root / "c").mkdir()
    (root / "c" / "other.txt").write_bytes(b"other\n")
    os.utime(root / "c", ns=(0, os.stat(root / "c-old").st_mtime_ns))

    second = _snapshot(repo, root, listings)
    restored = tmp_path / "restored"
    snapshot_restore(repo, second.id, str(restored))

    assert sorted(os.listdir(restored / "c")) == ["other.txt"]
    assert describe(restored) == describe(root)


def test_recent_timestamps_are_not_trusted(repo, tmp_path, listings):
    """Without settling, everything made just now is listed and read again: a write in the same
    clock tick as the one before the parent's scan would leave size and mtime equal."""
    root = _tree(tmp_path / "workspace")
    target = root / "a" / "file0.txt"
    target.write_bytes(b"first version\n")
    first = _snapshot(repo, root, listings)
    recorded = os.stat(target).st_mtime_ns
    target.write_bytes(b"other version\n")  # the same size...
    os.utime(target, ns=(recorded, recorded))  # ...and, as in the same tick, the same mtime

    second = _snapshot(repo, root, listings)
    snapshot_restore(repo, second.id, str(tmp_path / "restored"))

    assert first.reused_files == 0 and second.reused_files == 4  # all but the recent one
    assert len(listings) == 5  # directories made just now: listed again
    assert (tmp_path / "restored" / "a" / "file0.txt").read_bytes() == b"other version\n"


def test_the_snapshot_after_a_restore_reads_no_file(repo, tmp_path, listings):
    """Hibernate, wake, hibernate again: the wake restores the workspace on another machine, and
    its next snapshot must not read the workspace again. A restore gives every file its size
    and mtime back, so each is reused; only the directories (new inodes) are listed again."""
    root = _tree(tmp_path / "workspace")
    _snapshot(repo, root, listings)
    woken = tmp_path / "woken"
    snapshot_restore(repo, "latest", str(woken))

    after_wake = _snapshot(repo, woken, listings)

    assert after_wake.reused_files == after_wake.files == 5
    assert after_wake.new_blobs == 0 and after_wake.puts == 1  # the manifest only
    assert len(listings) == 5  # every directory is new to the scan: listed, not read
    snapshot_restore(repo, after_wake.id, str(tmp_path / "again"))
    assert describe(tmp_path / "again") == describe(root)


def test_special_files_in_an_unlisted_directory_are_still_counted_as_skipped(repo, tmp_path, settled_at_once,
                                                                               listings):
    root = _tree(tmp_path / "workspace")
    os.mkfifo(root / "b" / "pipe")
    os.mkfifo(root / "pipe")
    first = _snapshot(repo, root, listings)
    (root / "new.txt").write_bytes(b"new\n")  # the root is listed again, "b" is not

    second = _snapshot(repo, root, listings)

    assert [os.path.relpath(path, root) for path in listings] == ["."]
    assert first.skipped == second.skipped == 2
    assert repo.load_manifest(second.id).skipped == ["b/pipe", "pipe"]
