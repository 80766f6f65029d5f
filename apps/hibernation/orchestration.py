"""Provider calls of hibernation and wake, outside any transaction: give a paused machine back,
and fall back to a race when a paused machine does not start again in time."""

from __future__ import annotations

import logging

from apps.instances.models import Instance, InstanceStatus
from apps.instances.orchestration import provider_of

from . import services

log = logging.getLogger(__name__)
S = InstanceStatus


def release_machine(instance_id) -> None:
    """Destroy a paused machine whose workspace is safe in a verified snapshot."""
    instance = Instance.objects.filter(pk=instance_id, status=S.PAUSED).first()
    if instance is None:
        return
    snapshot = services.covering_snapshot(instance)
    if snapshot is None:
        services.release_refused(
            instance_id=instance.pk,
            reason="paused; the machine is kept: no verified snapshot newer than its last activity",
        )
        return
    if instance.machine_id:
        provider_of(instance).destroy(instance.machine_id)  # a machine already gone is no error
    log.info("instance %s: machine %s given back, snapshot %s kept", instance.pk, instance.machine_id,
             snapshot.engine_id)
    services.release_recorded(instance_id=instance.pk, machine_id=instance.machine_id)


def wake_fallback(instance_id) -> None:
    """The paused machine did not start within DUMONT_WAKE_START_TIMEOUT. With a verified
    snapshot newer than its last activity, it is destroyed and a race finds a new one; without,
    its disk holds the only copy of the work, so Dumont keeps waiting for it."""
    instance = Instance.objects.filter(pk=instance_id, status=S.WAKING, wake_fallback_at__isnull=False).first()
    if instance is None:
        return
    snapshot = services.covering_snapshot(instance)
    if snapshot is None:
        Instance.objects.filter(pk=instance.pk, status=S.WAKING).update(
            wake_fallback_at=None,
            status_reason="the machine is slow to start; waiting for it (its disk holds the only copy of the work)",
        )
        return
    if instance.machine_id:
        provider_of(instance).destroy(instance.machine_id)
    services.wake_fall_back_to_race(instance_id=instance.pk, snapshot=snapshot)


def abandon_wake(instance_id) -> None:
    """A wake whose restore failed: give its new machine back; the instance is hibernated again."""
    instance = Instance.objects.filter(pk=instance_id, status=S.WAKING).first()
    if instance is None:
        return
    if instance.machine_id:
        provider_of(instance).destroy(instance.machine_id)
    services.wake_abandoned(instance_id=instance.pk, machine_id=instance.machine_id)
