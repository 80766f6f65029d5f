"""Storage work of the control plane, run by tasks outside any transaction: check that a snapshot
the agent reported is really in storage, and remove a deleted snapshot's manifest. Only
manifests and object listings are read here; workspace data never passes through."""

from __future__ import annotations

import logging

from django.conf import settings

from agent.snapshot import ObjectCorrupt, ObjectMissing, WrongKey
from agent.snapshot.gc import snapshot_gc
from agent.snapshot.repo import SNAPSHOTS

from . import services, storage
from .models import Snapshot, SnapshotStatus, Workspace

log = logging.getLogger(__name__)


def check_in_storage(repo, engine_id: str, sizes: dict[str, int] | None = None) -> str:
    """'' when the manifest opens and every object it references is listed at full length;
    otherwise what is wrong, naming the first missing object. `sizes`: the repository's
    listing (name -> size) when the caller has it already."""
    try:
        manifest = repo.load_manifest(engine_id)
    except (ObjectMissing, ObjectCorrupt, WrongKey) as exc:
        return f"manifest: {exc}"
    if sizes is None:
        sizes = listing(repo)
    short = [ref for ref in manifest.blobs.values() if sizes.get(ref.object, -1) < ref.offset + ref.length]
    if short:
        missing = sum(1 for ref in short if ref.object not in sizes)
        return (f"{len(short)} of {len(manifest.blobs)} blobs not in storage ({missing} objects missing), "
                f"first: {repo.storage.key(short[0].object)}")
    return ""


def verify(snapshot_id) -> None:
    snapshot = Snapshot.objects.select_related("instance__workspace").filter(
        pk=snapshot_id, status=SnapshotStatus.SUCCEEDED).first()
    if snapshot is None:
        return
    # StorageError (S3 unreachable) propagates: the task retries; it says nothing of the snapshot.
    repo = storage.repository(snapshot.instance.workspace)
    sizes = listing(repo)  # one listing for the check and for the size billed
    error = check_in_storage(repo, snapshot.engine_id, sizes)
    if error:
        log.warning("snapshot %s of instance %s failed its storage check: %s",
                    snapshot.engine_id, snapshot.instance_id, error)
    services.snapshot_verified(snapshot_id=snapshot.pk, error=error)
    services.workspace_record_size(instance_id=snapshot.instance_id, stored_bytes=sum(sizes.values()))


def listing(repo) -> dict[str, int]:
    """Every object of the workspace's repository: name -> size."""
    return dict(repo.storage.list(""))


def stored_size(repo) -> int:
    """Bytes the workspace takes in the bucket (what storage is billed on)."""
    return sum(listing(repo).values())


def forget(snapshot_id) -> None:
    snapshot = Snapshot.objects.select_related("instance__workspace").filter(
        pk=snapshot_id, status=SnapshotStatus.DELETING).first()
    if snapshot is None:
        return
    repo = storage.repository(snapshot.instance.workspace)
    repo.storage.delete(SNAPSHOTS + snapshot.engine_id)  # S3 delete: no error when already gone
    services.snapshot_forgotten(snapshot_id=snapshot.pk)


def collect_garbage(instance_id) -> dict | None:
    """Delete the workspace's objects no snapshot references any more (agent.snapshot.gc: under
    an exclusive lock, so never while the agent writes a snapshot). Raises RepositoryLocked
    then; the task tries again later."""
    workspace = Workspace.objects.filter(instance_id=instance_id).first()
    if workspace is None:
        return None
    repo = storage.repository(workspace)
    result = snapshot_gc(repo, grace_s=settings.DUMONT_SNAPSHOT_GC_GRACE)
    services.workspace_record_size(instance_id=instance_id, stored_bytes=stored_size(repo))
    log.info("instance %s: gc deleted %d objects (%d bytes) of %d", instance_id, result.objects_deleted,
             result.bytes_freed, result.objects_listed)
    return result.to_dict()
