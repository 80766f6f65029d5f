"""Writes about snapshots: asking the agent for one, recording what it reports and what storage
shows, retention and deletion. Storage calls happen in tasks (jobs.py), never in here.

The agent's reports arrive through `apps.agents.signals.command_updated` (receivers.py); the
workspace's size in storage goes out as `signals.workspace_stored` (the ledger bills it)."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.agents.models import AgentCommand, AgentStatus
from apps.agents.services import agent_command_create
from apps.instances.models import Instance, InstanceStatus
from dumont.dispatch import enqueue, send
from dumont.errors import Conflict, IllegalTransition

from . import grants, keys, selectors, storage
from .models import Snapshot, SnapshotStatus, SnapshotTrigger, Workspace
from .signals import workspace_stored

log = logging.getLogger(__name__)

St = SnapshotStatus
# States in which the newest verified snapshot is the only copy of the work: it cannot be deleted.
NEEDS_SNAPSHOT = {InstanceStatus.HIBERNATING, InstanceStatus.PAUSED, InstanceStatus.HIBERNATED, InstanceStatus.WAKING}


def workspace_for(instance: Instance) -> Workspace:
    """The instance's repository, created (with a new random key) the first time it is needed."""
    storage.check_configured()
    workspace = Workspace.objects.filter(instance=instance).first()
    if workspace is None:
        workspace, _ = Workspace.objects.get_or_create(
            instance=instance,
            defaults={"prefix": storage.workspace_prefix(instance.id), "sealed_key": keys.new_sealed_key(instance.id)},
        )
    return workspace


def snapshot_request(*, instance: Instance, actor: str, trigger: str = SnapshotTrigger.MANUAL) -> Snapshot:
    """Ask the instance's agent to snapshot its workspace. 409 unless the machine is running with
    a healthy agent, or while another snapshot of it is under way."""
    with transaction.atomic():
        instance = Instance.objects.select_for_update().get(pk=instance.pk)
        allowed = {InstanceStatus.RUNNING, InstanceStatus.HIBERNATING}
        if instance.status not in allowed:
            raise IllegalTransition(
                f"a snapshot is taken by the agent of a running machine; this instance is {instance.status}",
                status=instance.status,
            )
        agent = getattr(instance, "agent", None)
        if agent is None or agent.status != AgentStatus.HEALTHY:
            state = agent.status if agent else "not installed"
            raise Conflict(f"the instance's agent is {state}; a snapshot needs a healthy agent", code="agent_not_ready")
        under_way = instance.snapshots.filter(status=St.PENDING).first()
        if under_way is not None:
            raise Conflict(f"snapshot {under_way.id} of this instance is still under way", code="snapshot_under_way")
        workspace_for(instance)
        snapshot_id = uuid.uuid4()
        command = agent_command_create(instance=instance, kind="snapshot", args={"snapshot": str(snapshot_id)},
                                       actor=actor)
        return Snapshot.objects.create(id=snapshot_id, instance=instance, command=command, trigger=trigger,
                                       actor=actor)


def delivery_args(instance_id, kind: str, args: dict) -> dict:
    """A storage command's arguments as sent to the agent: with the repository settings and the
    workspace key added at delivery, so they are never stored in the command row. The storage
    keys are the machine's grant (scoped); without a live one the agent keeps those it was
    installed with. Reads the database only: a heartbeat is being answered."""
    workspace = Workspace.objects.filter(instance_id=instance_id).first()
    if workspace is None:
        return args
    if not grants.scoped():
        return {**args, "repository": storage.repository_env(workspace)}
    grant = grants.grant_for_delivery(instance_id=instance_id)
    if grant is None:
        env = storage.repository_env(workspace, keys=("", ""))
        return {**args, "repository": {k: v for k, v in env.items() if k not in storage.KEY_VARIABLES}}
    return {**args, "repository": storage.repository_env(workspace, keys=grants.grant_keys(grant))}


def machine_env(instance: Instance) -> dict[str, str]:
    """The storage settings an agent is installed with: its machine's own grant, issued now
    (scoped; the store is called: install task only), else the bucket's keys (shared)."""
    workspace = workspace_for(instance)
    if not grants.scoped():
        return storage.repository_env(workspace)
    grant = grants.grant_issue(instance=instance, workspace=workspace)
    return storage.repository_env(workspace, keys=grants.grant_keys(grant))


def command_finished(command: AgentCommand) -> None:
    """The agent reported a snapshot command's end: record it, then check it in storage."""
    snapshot = Snapshot.objects.filter(command=command, status=St.PENDING).first()
    if snapshot is None:
        return
    now = timezone.now()
    if command.status != "succeeded":
        Snapshot.objects.filter(pk=snapshot.pk, status=St.PENDING).update(
            status=St.FAILED, error=command.error or "the agent reported a failure", finished_at=now)
        return
    result = command.result or {}
    updated = Snapshot.objects.filter(pk=snapshot.pk, status=St.PENDING).update(
        status=St.SUCCEEDED, finished_at=now, engine_id=str(result.get("id", ""))[:64],
        files=_int(result.get("files")), bytes=_int(result.get("bytes")),
        stored_bytes=_int(result.get("stored_bytes")), new_bytes=_int(result.get("new_bytes")),
        uploaded_bytes=_int(result.get("uploaded_bytes")), duration_s=_float(result.get("duration_s")),
    )
    if updated:
        enqueue("snapshots.verify", snapshot.pk)


def snapshot_verified(*, snapshot_id, error: str = "") -> None:
    """Record the storage check; a verified snapshot lets older ones go (retention)."""
    if error:
        Snapshot.objects.filter(pk=snapshot_id).update(verify_error=error[:2000], verified_at=None)
        return
    with transaction.atomic():
        updated = Snapshot.objects.filter(pk=snapshot_id, status=St.SUCCEEDED).update(
            verified_at=timezone.now(), verify_error="")
        if updated:
            snapshot = Snapshot.objects.get(pk=snapshot_id)
            for old in snapshots_beyond_retention(snapshot.instance_id):
                _begin_delete(old, actor="system:retention")


def workspace_record_size(*, instance_id, stored_bytes: int) -> None:
    """The workspace's size in the bucket, just listed: storage is billed on it from now on."""
    workspace_stored.send(Workspace, instance=Instance.objects.get(pk=instance_id), stored_bytes=stored_bytes)


def snapshots_beyond_retention(instance_id) -> list[Snapshot]:
    """Stored snapshots older than the newest DUMONT_SNAPSHOT_KEEP_LAST verified ones."""
    keep = settings.DUMONT_SNAPSHOT_KEEP_LAST
    verified = list(Snapshot.objects.filter(instance_id=instance_id, status=St.SUCCEEDED, verified_at__isnull=False)
                    .order_by("-created_at")[:keep])
    if len(verified) < keep:
        return []
    oldest_kept = verified[-1].created_at
    return list(Snapshot.objects.filter(instance_id=instance_id, status=St.SUCCEEDED, created_at__lt=oldest_kept))


def snapshot_delete(*, snapshot: Snapshot, actor: str) -> Snapshot:
    """Remove a snapshot (its manifest in storage, then its row); GC frees its data later.
    409 while it is being written, or when it is the only copy of a stopped workspace."""
    with transaction.atomic():
        snapshot = Snapshot.objects.select_for_update().select_related("instance").get(pk=snapshot.pk)
        if snapshot.status == St.PENDING:
            raise IllegalTransition("this snapshot is still being written", status=snapshot.status)
        if snapshot.status == St.DELETING:
            raise IllegalTransition("this snapshot is already being deleted", status=snapshot.status)
        if snapshot.status == St.SUCCEEDED and snapshot.instance.status in NEEDS_SNAPSHOT:
            newest = selectors.newest_verified(instance_id=snapshot.instance_id)
            if newest is not None and newest.pk == snapshot.pk:
                raise Conflict(
                    f"this is the newest snapshot of a {snapshot.instance.status} instance: its workspace "
                    "exists nowhere else", code="only_copy",
                )
        if snapshot.status == St.FAILED or not snapshot.engine_id:
            snapshot.delete()  # nothing of it is known to be in storage by name
            return snapshot
        _begin_delete(snapshot, actor=actor)
    snapshot.refresh_from_db()
    return snapshot


def _begin_delete(snapshot: Snapshot, *, actor: str) -> None:
    Snapshot.objects.filter(pk=snapshot.pk).update(status=St.DELETING)
    log.info("snapshot %s of instance %s: deleting (%s)", snapshot.engine_id, snapshot.instance_id, actor)
    enqueue("snapshots.forget", snapshot.pk)


def snapshot_forgotten(*, snapshot_id) -> None:
    """Its manifest is gone from storage: drop the record, and let gc free its data."""
    snapshot = Snapshot.objects.filter(pk=snapshot_id, status=St.DELETING).first()
    if snapshot is not None:
        snapshot.delete()
        enqueue("snapshots.gc", snapshot.instance_id)


def snapshots_expire() -> int:
    """Snapshots of instances destroyed more than DUMONT_SNAPSHOT_KEEP_AFTER_DESTROY ago go
    (manifest, then gc): a destroyed workspace is not billed for storage forever."""
    limit = timezone.now() - timedelta(seconds=settings.DUMONT_SNAPSHOT_KEEP_AFTER_DESTROY)
    expired = Snapshot.objects.filter(status=St.SUCCEEDED, instance__status=InstanceStatus.DESTROYED,
                                      instance__status_changed_at__lt=limit)
    count = 0
    with transaction.atomic():
        for snapshot in expired.select_for_update(skip_locked=True):
            _begin_delete(snapshot, actor="system:expiry")
            count += 1
    Snapshot.objects.filter(status=St.FAILED, instance__status=InstanceStatus.DESTROYED,
                            instance__status_changed_at__lt=limit).delete()
    return count


def snapshots_fail_stale() -> int:
    """Fail pending snapshots with no result after DUMONT_SNAPSHOT_TIMEOUT: their agent died,
    was replaced, or its machine stopped."""
    limit = timezone.now() - timedelta(seconds=settings.DUMONT_SNAPSHOT_TIMEOUT)
    stale = Snapshot.objects.filter(status=St.PENDING, created_at__lt=limit)
    return stale.update(status=St.FAILED, finished_at=timezone.now(),
                        error=f"no result from the agent within {settings.DUMONT_SNAPSHOT_TIMEOUT:g} s")


def snapshots_requeue_unverified() -> int:
    """Snapshots the agent reported done whose storage check never ran (its task died with its
    worker, or the broker was down when the result came in) get it sent again: a hibernation
    waits on that check before it stops the machine."""
    limit = timezone.now() - timedelta(seconds=settings.DUMONT_RECONCILE_GRACE)
    unchecked = Snapshot.objects.filter(status=St.SUCCEEDED, verified_at__isnull=True, verify_error="",
                                        finished_at__lt=limit)
    count = 0
    for snapshot_id in unchecked.values_list("pk", flat=True):
        send("snapshots.verify", snapshot_id)
        count += 1
    return count


def _int(value) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _float(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
