"""How snapshots hook into the agent layer (imported by SnapshotsConfig.ready()): a snapshot
command's end is recorded, and storage settings reach the agent only at delivery and install."""

from __future__ import annotations

import logging

from django.conf import settings
from django.dispatch import receiver

from apps.agents import hooks
from apps.agents.models import COMMAND_FINAL
from apps.agents.signals import command_updated

from . import services, storage
from .keys import SnapshotsNotConfigured

log = logging.getLogger(__name__)


@receiver(command_updated, dispatch_uid="snapshots.record_the_snapshot")
def record_the_snapshot(*, command, **kwargs) -> None:
    if command.kind == "snapshot" and command.status in COMMAND_FINAL:
        services.command_finished(command)


def install_env(instance) -> dict[str, str]:
    """The agent's own settings for snapshotting the workspace when the control plane stays out
    of reach (agent/protect.py). Snapshot commands bring the same settings with them."""
    try:
        return storage.repository_env(services.workspace_for(instance))
    except SnapshotsNotConfigured as exc:
        log.warning("instance %s: the agent gets no snapshot settings: %s", instance.id, exc.detail)
        return {"DUMONT_WORKSPACE": settings.DUMONT_WORKSPACE_PATH}


for kind in ("snapshot", "restore"):
    hooks.register_delivery_args(kind, services.delivery_args)
hooks.register_install_env(install_env)
