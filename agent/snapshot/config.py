"""Where snapshots go and how they are made, from the environment (the agent's job arguments
or `python -m agent.snapshot`)."""

from __future__ import annotations

from dataclasses import dataclass

from .crypto import parse_hex_key
from .errors import ConfigError

DEFAULT_PARALLEL = 32


@dataclass(frozen=True)
class StorageConfig:
    endpoint: str  # e.g. https://<account>.r2.cloudflarestorage.com, http://127.0.0.1:8333
    bucket: str
    prefix: str  # one workspace's repository: every object lives under it
    access_key: str
    secret_key: str
    region: str = "auto"  # R2 wants "auto"; SeaweedFS accepts anything
    parallel: int = DEFAULT_PARALLEL  # connections and worker threads

    def __post_init__(self):
        if self.parallel < 1:
            raise ConfigError(f"parallel must be at least 1, got {self.parallel}")

    @property
    def root(self) -> str:
        """The prefix with exactly one trailing slash (empty for the bucket's root)."""
        stripped = self.prefix.strip("/")
        return f"{stripped}/" if stripped else ""


@dataclass(frozen=True)
class SnapshotConfig:
    storage: StorageConfig
    key: bytes  # the workspace's 32-byte key

    def __repr__(self) -> str:  # never print the key or the secret
        return f"SnapshotConfig(bucket={self.storage.bucket!r}, prefix={self.storage.prefix!r})"


def config_from_env(env: dict[str, str]) -> SnapshotConfig:
    missing = [name for name in _REQUIRED if not env.get(name)]
    if missing:
        raise ConfigError(f"missing settings: {', '.join(missing)}")
    storage = StorageConfig(
        endpoint=env["DUMONT_S3_ENDPOINT"],
        bucket=env["DUMONT_S3_BUCKET"],
        prefix=env.get("DUMONT_S3_PREFIX", ""),
        access_key=env["DUMONT_S3_ACCESS_KEY"],
        secret_key=env["DUMONT_S3_SECRET_KEY"],
        region=env.get("DUMONT_S3_REGION") or "auto",
        parallel=_positive_int(env, "DUMONT_SNAPSHOT_PARALLEL", DEFAULT_PARALLEL),
    )
    return SnapshotConfig(storage=storage, key=parse_hex_key(env["DUMONT_SNAPSHOT_KEY"]))


_REQUIRED = (
    "DUMONT_S3_ENDPOINT",
    "DUMONT_S3_BUCKET",
    "DUMONT_S3_ACCESS_KEY",
    "DUMONT_S3_SECRET_KEY",
    "DUMONT_SNAPSHOT_KEY",
)


def _positive_int(env: dict[str, str], name: str, default: int) -> int:
    text = env.get(name)
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {text!r}") from None
    if value < 1:
        raise ConfigError(f"{name} must be at least 1, got {value}")
    return value
