"""What the agent does for the workspace when the control plane has been out of reach too long.

Nobody else can save the work then: the provider may take the machine back at any time (an
unpaid bill, a host failure) and the control plane would not know to snapshot first. So the
agent snapshots the workspace itself, when the machine holds snapshot settings (the
DUMONT_S3_* and DUMONT_SNAPSHOT_KEY variables of `agent.snapshot`) and the [snapshot] extra.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger("dumont.agent")

DEFAULT_WORKSPACE = "/workspace"


def protect_workspace(env: dict[str, str]) -> bool:
    """Snapshot the workspace (DUMONT_WORKSPACE, default /workspace); True when it is saved."""
    workspace = os.path.expanduser(env.get("DUMONT_WORKSPACE") or DEFAULT_WORKSPACE)
    try:
        from .snapshot.config import config_from_env
        from .snapshot.create import snapshot_create
        from .snapshot.errors import SnapshotError
        from .snapshot.repo import Repository
    except ImportError as exc:
        log.critical("cannot protect %s: the snapshot engine is not installed (%s)", workspace, exc)
        return False
    if not os.path.isdir(workspace):
        log.critical("cannot protect %s: no such directory", workspace)
        return False
    try:
        log.critical("protecting %s: taking a snapshot without the control plane", workspace)
        result = snapshot_create(Repository(config_from_env(env)), workspace)
    except SnapshotError as exc:  # config errors included: they are SnapshotErrors too
        log.critical("cannot protect %s: %s", workspace, exc)
        return False
    log.critical("protected %s: snapshot %s (%d files, %d bytes)", workspace, result.id, result.files, result.bytes)
    return True
