"""How snapshots hook into the layers below (imported by SnapshotsConfig.ready()): a snapshot
command's end is recorded, storage settings reach the agent only at delivery and install, and a
machine's storage key is revoked when the machine stops or goes."""

from __future__ import annotations

import logging

from django.conf import settings
from django.dispatch import receiver

from apps.agents import hooks
from apps.agents.models import COMMAND_FINAL
from apps.agents.signals import command_updated
from apps.instances.signals import instance_transitioned
from dumont.dispatch import enqueue

from . import grants, services
from .credentials import CredentialsUnavailable
from .keys import SnapshotsNotConfigured

log = logging.getLogger(__name__)


@receiver(command_updated, dispatch_uid="snapshots.record_the_snapshot")
def record_the_snapshot(*, command, **kwargs) -> None:
    if command.kind == "snapshot" and command.status in COMMAND_FINAL:
        services.command_finished(command)


def install_env(instance) -> dict[str, str]:
    """The agent's own settings for snapshotting the workspace when the control plane stays out
    of reach (agent/protect.py), with its machine's storage keys. Storage commands bring the same
    settings with them."""
    try:
        return services.machine_env(instance)
    except (SnapshotsNotConfigured, CredentialsUnavailable) as exc:
        log.warning("instance %s: the agent gets no snapshot settings: %s", instance.id, exc)
        return {"DUMONT_WORKSPACE": settings.DUMONT_WORKSPACE_PATH}


@receiver(instance_transitioned, dispatch_uid="snapshots.revoke_when_the_machine_goes")
def revoke_when_the_machine_goes(*, instance, to_status, **kwargs) -> None:
    """A machine that stopped or went keeps no storage key (revoked at the store once this commits)."""
    if to_status in grants.MACHINE_GONE and grants.scoped():
        enqueue("snapshots.grants_revoke", instance.pk, f"the instance is {to_status}")


for kind in ("snapshot", "restore"):
    hooks.register_delivery_args(kind, services.delivery_args)
hooks.register_install_env(install_env)
