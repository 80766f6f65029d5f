"""Every write of hibernation and wake. Transitions go through the instance state machine
(instance_transition: locked row, event, follow-up task on commit); provider calls happen in
orchestration.py. The race and agent layers report back through signals (receivers.py):
a wake race was won, a restore command moved, a paused machine is running again."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.agents.services import agent_command_create
from apps.instances import services as instance_services
from apps.instances.models import Instance, InstanceEvent, InstanceStatus
from apps.races.models import RacePurpose
from apps.races.services import race_start
from apps.snapshots import selectors as snapshot_selectors
from apps.snapshots import services as snapshot_services
from apps.snapshots.models import SnapshotTrigger
from dumont.dispatch import enqueue
from dumont.errors import DomainError, IllegalTransition

from .idle import Verdict
from .models import Wake, WakeSource

log = logging.getLogger(__name__)
S = InstanceStatus
ACTOR = "system:hibernation"
# An instance whose machine is gone (given back, or replaced by a race's).
NO_MACHINE = {"machine_id": "", "provider_label": "", "ssh_host": "", "ssh_port": None, "ssh_host_key": ""}


def _later(seconds: float):
    return timezone.now() + timedelta(seconds=seconds)


# --- hibernate ----------------------------------------------------------------------------------


def hibernate_begin(*, instance_id, verdict: Verdict) -> Instance | None:
    """Idle: ask the agent for a snapshot before anything is stopped. None when the snapshot
    cannot be asked for now (the instance stays running, the reason is logged)."""
    try:
        with transaction.atomic():
            instance = instance_services.instance_transition(
                instance_id=instance_id, to=S.HIBERNATING, actor=ACTOR, reason=f"idle: {verdict.reason}",
                last_activity_at=verdict.last_activity_at, wake_requested_at=None, deadline_at=None,
            )
            snapshot_services.snapshot_request(instance=instance, actor=ACTOR, trigger=SnapshotTrigger.HIBERNATE)
    except DomainError as exc:
        log.info("instance %s is idle but does not hibernate now: %s", instance_id, exc.detail)
        return None
    return instance


def hibernate_abort(*, instance_id, reason: str) -> Instance | None:
    """Back to running, machine untouched: activity came back, the snapshot failed, or a wake."""
    try:
        return instance_services.instance_transition(instance_id=instance_id, to=S.RUNNING, actor=ACTOR, reason=reason,
                                             allowed_from=frozenset({S.HIBERNATING}), wake_requested_at=None)
    except IllegalTransition:
        return None


def hibernate_confirm(*, instance_id) -> None:
    """Ask for the confirming snapshot: it catches what was written during the first one."""
    instance = Instance.objects.get(pk=instance_id)
    try:
        snapshot_services.snapshot_request(instance=instance, actor=ACTOR, trigger=SnapshotTrigger.HIBERNATE)
    except DomainError as exc:
        if exc.code == "snapshot_under_way":
            log.info("instance %s: the confirming snapshot is already asked for", instance_id)
            return
        hibernate_abort(instance_id=instance_id, reason=f"the confirming snapshot could not be asked for: {exc.detail}")


def hibernate_stop(*, instance_id, snapshot) -> Instance | None:
    """The snapshot is in storage and newer than any activity: stop the machine, keep its disk
    for DUMONT_HIBERNATE_RELEASE_AFTER, then give it back."""
    try:
        return instance_services.instance_transition(
            instance_id=instance_id, to=S.STOPPING, actor=ACTOR, allowed_from=frozenset({S.HIBERNATING}),
            reason=f"snapshot {snapshot.engine_id} verified in storage; stopping the machine",
            then="instances.stop_machine", deadline_at=_later(settings.DUMONT_STOP_TIMEOUT),
            release_at=_later(settings.DUMONT_HIBERNATE_RELEASE_AFTER),
        )
    except IllegalTransition:
        return None


def covering_snapshot(instance: Instance):
    """The newest verified snapshot, if it was taken after the instance's last activity: the
    only thing that allows giving its machine back."""
    snapshot = snapshot_selectors.newest_verified(instance_id=instance.pk)
    if snapshot is None:
        return None
    if instance.last_activity_at and snapshot.created_at < instance.last_activity_at:
        return None
    return snapshot


def release_claim(*, instance_id) -> bool:
    """Claim a paused instance's release for one worker; others see release_at moved on."""
    now = timezone.now()
    retry_at = now + timedelta(seconds=settings.DUMONT_STOP_TIMEOUT)
    return Instance.objects.filter(pk=instance_id, status=S.PAUSED, release_at__lte=now).update(
        release_at=retry_at) == 1


def release_recorded(*, instance_id, machine_id: str) -> Instance | None:
    """The machine is gone at the provider: only the snapshot remains."""
    try:
        return instance_services.instance_transition(
            instance_id=instance_id, to=S.HIBERNATED, actor=ACTOR,
            reason=f"machine {machine_id} given back; the workspace lives in its snapshot",
            release_at=None, deadline_at=None, **NO_MACHINE,
        )
    except IllegalTransition:
        return None


def release_refused(*, instance_id, reason: str) -> None:
    """Never destroyed without a covering snapshot: say why, and stop trying."""
    Instance.objects.filter(pk=instance_id, status=S.PAUSED).update(release_at=None, status_reason=reason)


# --- the idle policy ----------------------------------------------------------------------------


def instance_set_idle_policy(*, instance: Instance, actor: str, **policy) -> Instance:
    """Change when the instance hibernates; the change is an event in its timeline."""
    with transaction.atomic():
        instance = Instance.objects.select_for_update().get(pk=instance.pk)
        for name, value in policy.items():
            setattr(instance, name, value)
        instance.save()
        described = ", ".join(f"{name}={'default' if value is None else value}" for name, value in policy.items())
        InstanceEvent.objects.create(instance=instance, actor=actor, from_status=instance.status,
                                     to_status=instance.status, reason=f"idle policy: {described}")
    return instance


# --- wake ---------------------------------------------------------------------------------------


def instance_wake(*, instance: Instance, actor: str) -> Instance:
    """Bring the workspace back. Idempotent: a waking or running instance is answered as is;
    one still hibernating or stopping wakes as soon as its snapshot or stop is done."""
    with transaction.atomic():
        instance = Instance.objects.select_for_update().get(pk=instance.pk)
        if instance.status in (S.RUNNING, S.WAKING):
            return instance
        if instance.status in (S.HIBERNATING, S.STOPPING):
            instance.wake_requested_at = timezone.now()
            instance.save(update_fields=["wake_requested_at", "updated_at"])
            return instance
        if instance.status == S.PAUSED:
            return _wake_paused(instance, actor)
        if instance.status == S.HIBERNATED:
            return _wake_hibernated(instance, actor)
        raise IllegalTransition(f"cannot wake an instance that is {instance.status}", status=instance.status)


def _wake_paused(instance: Instance, actor: str) -> Instance:
    Wake.objects.create(instance=instance, source=WakeSource.PAUSED, actor=actor)
    return instance_services.instance_transition(
        instance_id=instance.pk, to=S.WAKING, actor=actor, reason="wake: starting the same machine",
        then="instances.start_machine", deadline_at=_later(settings.DUMONT_BOOT_TIMEOUT),
        wake_requested_at=None, release_at=None,
        wake_fallback_at=_later(settings.DUMONT_WAKE_START_TIMEOUT),
    )


def _wake_hibernated(instance: Instance, actor: str) -> Instance:
    snapshot = snapshot_selectors.newest_verified(instance_id=instance.pk)
    if snapshot is None:
        raise IllegalTransition("this hibernated instance has no verified snapshot to restore", status=instance.status)
    instance = instance_services.instance_transition(
        instance_id=instance.pk, to=S.WAKING, actor=actor,
        reason=f"wake: racing for a new machine, then restoring snapshot {snapshot.engine_id}",
        wake_requested_at=None, deadline_at=None, wake_fallback_at=None,
    )
    race = race_start(instance=instance, purpose=RacePurpose.WAKE)
    Wake.objects.create(instance=instance, source=WakeSource.HIBERNATED, actor=actor, race=race, snapshot=snapshot)
    return instance


def wake_fall_back_to_race(*, instance_id, snapshot) -> Instance | None:
    """The paused machine did not come back in time (its GPU was taken): a new machine from a
    race, with the snapshot restored. Called once the old machine is destroyed."""
    with transaction.atomic():
        instance = Instance.objects.select_for_update().get(pk=instance_id)
        if instance.status != S.WAKING or instance.wake_fallback_at is None:
            return None
        instance.wake_fallback_at = instance.deadline_at = None
        instance.status_reason = f"the machine did not start in time; racing for a new one (snapshot {snapshot.engine_id})"
        for name, value in NO_MACHINE.items():
            setattr(instance, name, value)
        instance.save()
        race = race_start(instance=instance, purpose=RacePurpose.WAKE)
        wake = current_wake(instance)
        if wake is not None:
            Wake.objects.filter(pk=wake.pk).update(race=race, snapshot=snapshot, fell_back_to_race_at=timezone.now())
    return instance


def current_wake(instance: Instance) -> Wake | None:
    return Wake.objects.filter(instance=instance, running_at__isnull=True, failed_at__isnull=True).first()


def wake_machine_ready(*, instance: Instance) -> None:
    """The race found a machine for a wake (on `race_won`; the instance is still waking). The
    restore command is queued now, and the agent installed on the new machine picks it up with
    its first heartbeat; once it reports success the instance is running. A wake with nothing to
    restore is done at once."""
    wake = current_wake(instance)
    if wake is None:
        return
    Wake.objects.filter(pk=wake.pk).update(machine_ready_at=timezone.now())
    if not wake.needs_restore:
        instance_services.instance_transition(instance_id=instance.pk, to=S.RUNNING, actor=ACTOR,
                                              allowed_from=frozenset({S.WAKING}), reason="woken on a new machine")
        return
    if not wake.restore_command_id:
        command = agent_command_create(
            instance=instance, kind="restore", actor=ACTOR,
            args={"snapshot": wake.snapshot.engine_id, "workspace": settings.DUMONT_WORKSPACE_PATH, "wake": wake.pk},
        )
        Wake.objects.filter(pk=wake.pk).update(restore_command=command)


def wake_restore_started(command) -> None:
    """The agent on the new machine acknowledged the restore: the install part is over."""
    Wake.objects.filter(restore_command=command, restore_started_at__isnull=True).update(
        restore_started_at=timezone.now())


def wake_restore_finished(command) -> None:
    """The agent restored (or failed to restore) the workspace of a waking instance."""
    wake = Wake.objects.filter(restore_command=command).select_related("instance").first()
    if wake is None:
        return
    now = timezone.now()
    if command.status != "succeeded":
        reason = f"restore of snapshot {wake.snapshot.engine_id if wake.snapshot else '?'} failed: {command.error}"
        Wake.objects.filter(pk=wake.pk).update(failed_at=now, error=reason)
        # Never running with a workspace that is not the snapshot's: a later snapshot of it would
        # bury the real one. The new machine holds nothing: it goes, and the instance is
        # hibernated again with its snapshot, ready for another wake.
        with transaction.atomic():
            Instance.objects.filter(pk=wake.instance_id, status=S.WAKING).update(status_reason=reason)
            enqueue("hibernation.abandon_wake", wake.instance_id)
        return
    result = command.result or {}
    try:
        instance_services.instance_transition(
            instance_id=wake.instance_id, to=S.RUNNING, actor=ACTOR, allowed_from=frozenset({S.WAKING}),
            reason=f"woken: {result.get('files', '?')} files restored in {result.get('duration_s', '?')} s",
        )
    except IllegalTransition:
        return
    Wake.objects.filter(pk=wake.pk).update(running_at=now)


def wake_abandoned(*, instance_id, machine_id: str) -> Instance | None:
    """The machine of a failed wake is gone: back to hibernated, the snapshot untouched."""
    wake = Wake.objects.filter(instance_id=instance_id, failed_at__isnull=False).first()
    reason = (wake.error if wake else "wake failed") + f"; machine {machine_id} given back, the snapshot is kept: wake again to retry"
    try:
        return instance_services.instance_transition(
            instance_id=instance_id, to=S.HIBERNATED, actor=ACTOR, reason=reason, allowed_from=frozenset({S.WAKING}),
            deadline_at=None, **NO_MACHINE,
        )
    except IllegalTransition:
        return None


def wake_record_running(*, instance: Instance) -> None:
    """A wake that needed no restore (the paused machine came back) is done."""
    wake = current_wake(instance)
    if wake is not None and not wake.needs_restore:
        Wake.objects.filter(pk=wake.pk).update(machine_ready_at=wake.machine_ready_at or timezone.now(),
                                               running_at=timezone.now())
