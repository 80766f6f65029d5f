"""Where snapshots are stored, from settings, in the two shapes that use it: the environment the
agent reads (`agent.snapshot.config.config_from_env`) and a Repository for the control plane's
own checks (which read manifests and object listings, never workspace data).

The bucket's keys are the control plane's; a machine's environment carries the keys of its
grant instead (grants.py) unless DUMONT_SNAPSHOT_CREDENTIALS=shared (a local store that
checks no keys)."""

from __future__ import annotations

from django.conf import settings

from agent.snapshot import Repository
from agent.snapshot.config import config_from_env

from .keys import SnapshotsNotConfigured, open_key
from .models import Workspace

REQUIRED = {
    "DUMONT_SNAPSHOT_S3_ENDPOINT": "endpoint",
    "DUMONT_SNAPSHOT_S3_BUCKET": "bucket",
    "DUMONT_SNAPSHOT_S3_ACCESS_KEY": "access key",
    "DUMONT_SNAPSHOT_S3_SECRET_KEY": "secret key",
}


# What a machine must not be handed except its own grant's values.
KEY_VARIABLES = ("DUMONT_S3_ACCESS_KEY", "DUMONT_S3_SECRET_KEY")


def check_configured() -> None:
    missing = [name for name in REQUIRED if not getattr(settings, name)]
    if missing:
        raise SnapshotsNotConfigured(f"snapshot storage is not configured: set {', '.join(missing)}")


def workspace_prefix(instance_id) -> str:
    base = settings.DUMONT_SNAPSHOT_S3_PREFIX.strip("/")
    return f"{base}/{instance_id}/" if base else f"{instance_id}/"


def repository_env(workspace: Workspace, *, keys: tuple[str, str] | None = None) -> dict[str, str]:
    """The snapshot settings of one workspace, as the agent reads them (its key included), with
    `keys` (access key, secret) for storage, else the bucket's own (the control plane's)."""
    check_configured()
    access_key, secret_key = keys or (settings.DUMONT_SNAPSHOT_S3_ACCESS_KEY, settings.DUMONT_SNAPSHOT_S3_SECRET_KEY)
    return {
        "DUMONT_S3_ENDPOINT": settings.DUMONT_SNAPSHOT_S3_ENDPOINT,
        "DUMONT_S3_BUCKET": settings.DUMONT_SNAPSHOT_S3_BUCKET,
        "DUMONT_S3_PREFIX": workspace.prefix,
        "DUMONT_S3_REGION": settings.DUMONT_SNAPSHOT_S3_REGION,
        "DUMONT_S3_ACCESS_KEY": access_key,
        "DUMONT_S3_SECRET_KEY": secret_key,
        "DUMONT_SNAPSHOT_KEY": open_key(workspace.instance_id, workspace.sealed_key).hex(),
        "DUMONT_SNAPSHOT_PARALLEL": str(settings.DUMONT_SNAPSHOT_PARALLEL),
        "DUMONT_WORKSPACE": settings.DUMONT_WORKSPACE_PATH,
    }


def repository(workspace: Workspace) -> Repository:
    return Repository(config_from_env(repository_env(workspace)))
