"""The agent's settings: command-line flags, each with an environment fallback, strictly parsed.

A setting that is missing or malformed raises ConfigError with a message naming the flag and
the variable, so a machine that was set up wrongly says so at start instead of misbehaving.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

GPU_BACKENDS = ("auto", "nvml", "devcloud", "none")
DEVCLOUD_VARIABLES = ("DEVCLOUD_URL", "DEVCLOUD_MACHINE_ID", "DEVCLOUD_MACHINE_TOKEN")


class ConfigError(ValueError):
    """The agent cannot start with these settings; the text says which one and why."""


@dataclass(frozen=True)
class Config:
    url: str  # control plane base URL, without a trailing slash
    instance_id: str
    token: str
    interval_s: float
    gpu_backend: str
    state_dir: Path
    protect_after_s: float


# flag destination -> (flag, environment variable)
_SOURCES = {
    "url": ("--url", "DUMONT_URL"),
    "instance_id": ("--instance-id", "DUMONT_INSTANCE_ID"),
    "token": ("--token", "DUMONT_AGENT_TOKEN"),
    "interval": ("--interval", "DUMONT_AGENT_INTERVAL"),
    "gpu_backend": ("--gpu-backend", "DUMONT_GPU_BACKEND"),
    "state_dir": ("--state-dir", "DUMONT_AGENT_STATE_DIR"),
    "protect_after": ("--protect-after", "DUMONT_AGENT_PROTECT_AFTER"),
}


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags default to None so that an unset flag falls back to its environment variable."""
    helps = {
        "url": "control plane base URL, e.g. https://dumont.example.com",
        "instance_id": "this machine's instance id on the control plane",
        "token": "this instance's agent token",
        "interval": "seconds between heartbeats (default 10; fractions allowed)",
        "gpu_backend": "where GPU readings come from (default auto)",
        "state_dir": "where the agent keeps its command journal (default ~/.dumont/agent)",
        "protect_after": "seconds without reaching the control plane before the agent protects "
        "the workspace and stops (default 1800)",
    }
    for dest, (flag, variable) in _SOURCES.items():
        choices = GPU_BACKENDS if dest == "gpu_backend" else None
        parser.add_argument(flag, dest=dest, choices=choices, help=f"{helps[dest]} [env {variable}]")


def load_config(args: argparse.Namespace, env: dict[str, str]) -> Config:
    def value(dest: str) -> str | None:
        given = getattr(args, dest)
        if given is not None:
            return given
        return env.get(_SOURCES[dest][1]) or None

    gpu_backend = value("gpu_backend") or "auto"
    if gpu_backend not in GPU_BACKENDS:
        raise ConfigError(f"{_name('gpu_backend')} must be one of {', '.join(GPU_BACKENDS)}, got {gpu_backend!r}")
    return Config(
        url=_parse_url(_required(value("url"), "url")),
        instance_id=_required(value("instance_id"), "instance_id"),
        token=_required(value("token"), "token"),
        interval_s=_positive_seconds(value("interval") or "10", "interval"),
        gpu_backend=gpu_backend,
        state_dir=Path(value("state_dir") or "~/.dumont/agent").expanduser(),
        protect_after_s=_positive_seconds(value("protect_after") or "1800", "protect_after"),
    )


def devcloud_settings(env: dict[str, str]) -> tuple[str, str, str]:
    """(url, machine id, machine token) that devcloud hands each of its machines."""
    missing = [name for name in DEVCLOUD_VARIABLES if not env.get(name)]
    if missing:
        raise ConfigError(f"the devcloud GPU backend needs {', '.join(missing)} in the environment")
    url, machine_id, token = (env[name] for name in DEVCLOUD_VARIABLES)
    return _parse_url(url, what="DEVCLOUD_URL"), machine_id, token


def _name(dest: str) -> str:
    flag, variable = _SOURCES[dest]
    return f"{flag} (or {variable})"


def _required(text: str | None, dest: str) -> str:
    if not text or not text.strip():
        raise ConfigError(f"{_name(dest)} is required")
    return text.strip()


def _parse_url(text: str, *, what: str | None = None) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{what or _name('url')} must be an http(s) URL, got {text!r}")
    return text.rstrip("/")


def _positive_seconds(text: str, dest: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise ConfigError(f"{_name(dest)} must be a number of seconds, got {text!r}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"{_name(dest)} must be more than 0 seconds, got {text!r}")
    return seconds
