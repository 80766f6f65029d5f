from __future__ import annotations

import os
import random
import time
from pathlib import Path

from agent.snapshot import snapshot_create, snapshot_restore

from .trees import describe

KiB = 1024


def _workspace(root: Path) -> Path:
    """~32 MiB: a 16 MiB model file (4 chunks) and 100 files of 160 KiB (packed)."""
    rng = random.Random(7)
    (root / "files").mkdir(parents=True)
    (root / "model.bin").write_bytes(rng.randbytes(16 * 1024 * KiB))
    for number in range(100):
        (root / "files" / f"{number:03}.dat").write_bytes(rng.randbytes(160 * KiB))
    an_hour_ago = time.time() - 3600  # at rest: written well before any snapshot of it
    for path in [root / "model.bin", *(root / "files").iterdir()]:
        os.utime(path, (an_hour_ago, an_hour_ago))
    return root


def test_unchanged_workspace_uploads_only_the_manifest(repo, tmp_path):
    source = _workspace(tmp_path / "workspace")
    first = snapshot_create(repo, str(source))

    second = snapshot_create(repo, str(source))

    assert first.new_bytes == first.bytes
    assert second.puts == 1 and second.new_blobs == 0  # the manifest
    assert second.reused_files == 101
    assert second.uploaded_bytes < 64 * KiB


def test_unchanged_workspace_reread_in_full_still_uploads_only_the_manifest(repo, tmp_path):
    source = _workspace(tmp_path / "workspace")
    snapshot_create(repo, str(source))
    for path in source.rglob("*.dat"):
        os.utime(path)  # touched, not changed: must be re-read, and found already stored

    second = snapshot_create(repo, str(source), use_parent=False)

    assert second.puts == 1 and second.new_blobs == 0 and second.reused_files == 0


def test_one_percent_change_uploads_about_one_percent(repo, tmp_path):
    source = _workspace(tmp_path / "workspace")
    first = snapshot_create(repo, str(source))
    rng = random.Random(8)
    for number in (10, 60):  # 320 KiB of ~32 MiB: 1%
        (source / "files" / f"{number:03}.dat").write_bytes(rng.randbytes(160 * KiB))

    second = snapshot_create(repo, str(source))
    snapshot_restore(repo, second.id, str(tmp_path / "restored"))

    assert second.new_bytes == 320 * KiB
    assert second.uploaded_bytes < 0.02 * first.uploaded_bytes
    assert describe(tmp_path / "restored") == describe(source)


def test_identical_content_in_many_files_is_stored_once(repo, tmp_path):
    source = tmp_path / "workspace"
    source.mkdir()
    block = random.Random(9).randbytes(5 * 1024 * KiB)
    for number in range(4):
        (source / f"copy{number}.bin").write_bytes(block)

    created = snapshot_create(repo, str(source))

    assert created.new_bytes == len(block)
    assert created.bytes == 4 * len(block)
