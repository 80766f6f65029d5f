"""The agent as a wheel, built from this repository once per content and cached under var/.

Only `agent/` and `pyproject.toml` are copied to a scratch directory for the build, so the
checkout is never written to (it may be read-only in production). Machines without a package
index get the wheels of its dependencies too (`dependency_wheels`).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import tomllib
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


def _extras_requirements() -> list[str]:
    with open(Path(settings.BASE_DIR) / "pyproject.toml", "rb") as handle:
        extras = tomllib.load(handle)["project"]["optional-dependencies"]
    return sorted({requirement for group in extras.values() for requirement in group})


def dependency_wheels() -> list[Path]:
    """Wheels of everything the agent's extras need (NVML bindings, the snapshot engine's
    zstandard/cryptography), for machines that cannot reach a package index: downloaded once
    for this Python, cached under var/, and uploaded with the agent (~28 MB, numpy most of it)."""
    requirements = _extras_requirements()
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    key = hashlib.sha256("\n".join([tag, *requirements]).encode()).hexdigest()[:16]
    cache = Path(settings.VAR_DIR) / "agent-dist" / f"wheels-{key}"
    done = cache / ".complete"
    if not done.exists():
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=".wheels-", dir=cache.parent))
        result = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "-q", "--disable-pip-version-check",
             "--dest", str(partial), *requirements],
            capture_output=True, text=True, timeout=600,
        )
        if result.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            raise AgentBuildError(f"downloading the agent's dependencies failed:\n{result.stderr[-2000:]}")
        (partial / ".complete").touch()
        try:
            partial.rename(cache)  # atomic: a concurrent builder sees all of it or nothing
        except OSError:
            shutil.rmtree(partial, ignore_errors=True)  # another builder got there first
    return sorted(cache.glob("*.whl"))
