"""The agent as a wheel, built from this repository once per content and cached under var/.

Only `agent/` and `pyproject.toml` are copied to a scratch directory for the build, so the
checkout is never written to (it may be read-only in production).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from django.conf import settings

SOURCES = ("pyproject.toml", "agent")


class AgentBuildError(RuntimeError):
    pass


def _source_files() -> list[Path]:
    root = Path(settings.BASE_DIR)
    files = [root / "pyproject.toml"]
    files += sorted(p for p in (root / "agent").rglob("*.py"))
    return files


def _digest() -> str:
    digest = hashlib.sha256()
    root = Path(settings.BASE_DIR)
    for path in _source_files():
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def agent_wheel() -> Path:
    """Path to the wheel of the current agent sources, building it if needed."""
    cache = Path(settings.VAR_DIR) / "agent-dist" / _digest()
    wheels = sorted(cache.glob("dumont_agent-*.whl"))
    if wheels:
        return wheels[0]
    with tempfile.TemporaryDirectory(prefix="dumont-agent-build-") as scratch:
        root = Path(settings.BASE_DIR)
        shutil.copy(root / "pyproject.toml", scratch)
        shutil.copytree(root / "agent", Path(scratch) / "agent",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        out = Path(scratch) / "out"
        result = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
             "--disable-pip-version-check", "-w", str(out), scratch],
            capture_output=True, text=True, timeout=300,
        )
        if result.returncode != 0:
            raise AgentBuildError(f"building the agent wheel failed:\n{result.stderr[-2000:]}")
        [wheel] = out.glob("dumont_agent-*.whl")
        cache.mkdir(parents=True, exist_ok=True)
        # Rename into place so a concurrent builder never sees half a file.
        partial = cache / (wheel.name + ".partial")
        shutil.copy(wheel, partial)
        partial.rename(cache / wheel.name)
        return cache / wheel.name
