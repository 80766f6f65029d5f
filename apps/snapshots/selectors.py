"""Reads about snapshots; another user's snapshot is simply not found."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from apps.instances.selectors import instance_get
from dumont.errors import InvalidInput, NotFound

from .models import Snapshot, SnapshotStatus


def snapshot_list(*, user, instance_id: str | None = None, status: str | None = None) -> QuerySet[Snapshot]:
    snapshots = Snapshot.objects.filter(instance__user=user).select_related("instance", "command")
    if instance_id is not None:  # given, even empty: it must be an instance id
        try:
            uuid.UUID(instance_id)
        except ValueError:
            raise InvalidInput(f"instance must be an instance id, got {instance_id!r}", code="bad_instance") from None
        snapshots = snapshots.filter(instance=instance_get(user=user, instance_id=instance_id))
    if status is not None:
        if status not in SnapshotStatus.values:
            raise InvalidInput(f"unknown status {status!r}; one of: {', '.join(SnapshotStatus.values)}",
                               code="bad_status")
        snapshots = snapshots.filter(status=status)
    return snapshots


def snapshot_get(*, user, snapshot_id) -> Snapshot:
    try:
        key = uuid.UUID(str(snapshot_id))
    except ValueError:
        raise NotFound("no such snapshot") from None
    snapshot = Snapshot.objects.filter(instance__user=user, pk=key).select_related("instance", "command").first()
    if snapshot is None:
        raise NotFound("no such snapshot")
    return snapshot


def snapshot_progress(snapshot: Snapshot) -> dict | None:
    """The agent's latest progress report while the snapshot is being written."""
    if snapshot.status != SnapshotStatus.PENDING or snapshot.command is None:
        return None
    report = dict(snapshot.command.progress or {})
    report["command_status"] = snapshot.command.status
    total = report.get("total_bytes") or 0
    report["percent"] = round(100 * report.get("bytes", 0) / total, 1) if total else None
    return report


def instance_snapshots(*, instance, limit: int = 10) -> list[Snapshot]:
    return list(instance.snapshots.select_related("command").order_by("-created_at")[:limit])


def newest_verified(*, instance_id) -> Snapshot | None:
    return (Snapshot.objects.filter(instance_id=instance_id, status=SnapshotStatus.SUCCEEDED, verified_at__isnull=False)
            .order_by("-created_at").first())
