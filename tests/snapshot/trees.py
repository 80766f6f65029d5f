"""Workspaces to snapshot, and a description of a tree to compare restores with."""

from __future__ import annotations

import functools
import hashlib
import os
import random
import stat
import struct
from pathlib import Path

MiB = 1024 * 1024
MARKER = "dumont-plaintext-marker"  # text written into files, names and links; must never show in the bucket


def every_kind_tree(root: Path) -> Path:
    """Regular files (empty, small, multi-chunk, odd sizes, modes), a symlink to a file, a
    dangling and a directory symlink, empty and read-only directories, set mtimes."""
    rng = random.Random(4)
    root.mkdir()
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "pkg" / "__init__.py").write_text(f"# {MARKER} package\n" * 40)
    (root / "src" / "run.sh").write_text(f"#!/bin/sh\necho {MARKER}\n")
    (root / "src" / "run.sh").chmod(0o755)
    (root / "secret.txt").write_text(f"{MARKER} secret\n")
    (root / "secret.txt").chmod(0o600)
    (root / "empty").write_bytes(b"")
    (root / "models").mkdir()
    (root / "models" / "weights.safetensors").write_bytes(bf16_weights(5 * MiB // 2 + 3, seed=1))
    (root / "models" / "big.bin").write_bytes(rng.randbytes(9 * MiB + 17))
    (root / f"{MARKER}-name.txt").write_text("named\n")
    (root / "link-to-secret").symlink_to("secret.txt")
    (root / "dangling").symlink_to(f"nowhere/{MARKER}")
    (root / "models-link").symlink_to("models")
    (root / "empty-dir").mkdir()
    (root / "readonly-dir").mkdir()
    (root / "readonly-dir" / "kept.txt").write_text("kept\n")
    (root / "readonly-dir").chmod(0o555)
    _set_mtimes(root)
    return root


@functools.lru_cache(maxsize=4)  # ~3 s a MiB in pure Python: made once per session
def bf16_weights(count: int, *, seed: int) -> bytes:
    """bf16 values with a trained-like spread (normal, std 0.02): the high half of float32."""
    rng = random.Random(seed)
    floats = struct.pack(f"<{count}f", *(rng.gauss(0.0, 0.02) for _ in range(count)))
    return b"".join(floats[i + 2 : i + 4] for i in range(0, len(floats), 4))


def _set_mtimes(root: Path) -> None:
    """Distinct nanosecond mtimes on everything, directories last (children's set first)."""
    paths = sorted(_walk(root), key=lambda p: len(p.parts), reverse=True) + [root]
    for number, path in enumerate(paths):
        mtime_ns = 1_600_000_000_123_456_789 + number * 1_000_000_007
        os.utime(path, ns=(mtime_ns, mtime_ns), follow_symlinks=False)


def describe(root: Path) -> dict:
    """Path -> (kind, mode, mtime_ns, size, content hash or link target), root included."""
    tree = {}
    for path in [root, *sorted(_walk(root))]:
        info = os.lstat(path)
        relative = str(path.relative_to(root))
        if stat.S_ISLNK(info.st_mode):
            tree[relative] = ("symlink", info.st_mtime_ns, os.readlink(path))
        elif stat.S_ISDIR(info.st_mode):
            tree[relative] = ("dir", stat.S_IMODE(info.st_mode), info.st_mtime_ns)
        else:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            tree[relative] = ("file", stat.S_IMODE(info.st_mode), info.st_mtime_ns, info.st_size, digest)
    return tree


def _walk(root: Path) -> list:
    """Everything under root, symlinks listed but never followed."""
    found = []
    for directory, dirnames, filenames in os.walk(root):
        found.extend(Path(directory) / name for name in dirnames + filenames)
    return found
