"""The snapshot API and its records: asking the agent, delivery with the key, results, storage
checks, retention and deletion. The agent's side is played by heartbeats and by the real engine
writing to the real S3 server, as the agent on a machine would."""

from __future__ import annotations

import os

import pytest

from agent.snapshot import snapshot_create
from apps.agents.models import Agent, AgentCommand, AgentStatus
from apps.instances.models import Instance, InstanceStatus
from apps.snapshots import jobs, keys, storage
from apps.snapshots.models import Snapshot, SnapshotStatus, Workspace
from tests.snapshots.helpers import post_heartbeat

St = SnapshotStatus
pytestmark = pytest.mark.django_db(transaction=True)  # follow-up tasks are queued on commit


def ask(api, instance, **headers):
    return api.post(f"/api/v1/instances/{instance.id}/snapshot", **headers)


def deliver(instance) -> dict:
    """The next heartbeat's snapshot command, as the agent receives it."""
    [command] = [c for c in post_heartbeat(instance)["commands"] if c["kind"] == "snapshot"]
    return command


def agent_snapshots(instance, tmp_path, files: dict[str, bytes]):
    """What the agent does for a snapshot command: the engine, writing to the instance's repository."""
    workspace = tmp_path / f"ws-{len(list(tmp_path.iterdir()))}"
    workspace.mkdir()
    for name, data in files.items():
        (workspace / name).write_bytes(data)
    return snapshot_create(storage.repository(Workspace.objects.get(instance=instance)), str(workspace))


def finish(instance, command: dict, result) -> None:
    updates = [{"id": command["id"], "status": "acknowledged"},
               {"id": command["id"], "status": "succeeded", "result": result.to_dict()}]
    post_heartbeat(instance, updates=updates, seq=2)


def take_snapshot(api, instance, tmp_path, tasks, files) -> Snapshot:
    reply = ask(api, instance)
    assert reply.status_code == 202, reply.content
    command = deliver(instance)
    finish(instance, command, agent_snapshots(instance, tmp_path, files))
    tasks.drain()
    return Snapshot.objects.get(pk=reply.json()["id"])


# --- asking for a snapshot ---------------------------------------------------------------------


def test_a_snapshot_is_asked_of_the_agent_and_its_key_travels_only_at_delivery(api, running, tasks):
    reply = ask(api, running)
    assert reply.status_code == 202
    body = reply.json()
    assert body["status"] == "pending" and body["instance"] == str(running.id) and body["verified"] is False

    command = deliver(running)
    repository = command["args"]["repository"]
    assert command["args"]["snapshot"] == body["id"]
    assert repository["DUMONT_S3_PREFIX"] == Workspace.objects.get(instance=running).prefix
    assert str(running.id) in repository["DUMONT_S3_PREFIX"]
    assert len(bytes.fromhex(repository["DUMONT_SNAPSHOT_KEY"])) == 32
    stored = AgentCommand.objects.get(pk=command["id"])
    assert stored.args == {"snapshot": body["id"]}  # no secret in the database row
    workspace = Workspace.objects.get(instance=running)
    assert bytes.fromhex(repository["DUMONT_SNAPSHOT_KEY"]) not in bytes(workspace.sealed_key)


def test_progress_reported_by_the_agent_shows_on_the_snapshot(api, running, tasks):
    snapshot_id = ask(api, running).json()["id"]
    command = deliver(running)
    progress = {"phase": "snapshot", "bytes": 250, "total_bytes": 1000, "files": 3, "total_files": 10,
                "bytes_per_s": 125, "eta_s": 6.0}
    post_heartbeat(running, updates=[{"id": command["id"], "status": "running", "progress": progress}], seq=2)
    body = api.get(f"/api/v1/snapshots/{snapshot_id}").json()
    assert body["status"] == "pending"
    assert body["progress"]["percent"] == 25.0 and body["progress"]["command_status"] == "running"
    assert body["progress"]["eta_s"] == 6.0


def test_a_second_snapshot_while_one_is_under_way_is_a_conflict(api, running, tasks):
    assert ask(api, running).status_code == 202
    reply = ask(api, running)
    assert reply.status_code == 409 and reply.json()["error"] == "snapshot_under_way"


def test_the_idempotency_key_replays_the_first_answer(api, running, tasks):
    first = ask(api, running, HTTP_IDEMPOTENCY_KEY="k1")
    again = ask(api, running, HTTP_IDEMPOTENCY_KEY="k1")
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"] and again["Idempotent-Replayed"] == "true"
    assert Snapshot.objects.filter(instance=running).count() == 1


@pytest.mark.parametrize("status", [InstanceStatus.PAUSED, InstanceStatus.BOOTING, InstanceStatus.DESTROYED])
def test_only_a_running_machine_is_snapshotted(api, running, status, tasks):
    Instance.objects.filter(pk=running.pk).update(status=status)
    reply = ask(api, running)
    assert reply.status_code == 409 and reply.json()["error"] == "illegal_state"
    assert "running" in reply.json()["detail"]


def test_a_snapshot_needs_a_healthy_agent(api, running, tasks):
    Agent.objects.filter(pk=running.pk).update(status=AgentStatus.SILENT)
    reply = ask(api, running)
    assert reply.status_code == 409 and reply.json()["error"] == "agent_not_ready"
    assert "silent" in reply.json()["detail"]


def test_without_storage_settings_the_answer_says_what_is_missing(api, running, settings, tasks):
    settings.DUMONT_SNAPSHOT_S3_BUCKET = None
    reply = ask(api, running)
    assert reply.status_code == 409
    assert "DUMONT_SNAPSHOT_S3_BUCKET" in reply.json()["detail"]


# --- results, storage checks ------------------------------------------------------------------------


def test_a_reported_snapshot_is_recorded_then_verified_in_storage(api, running, tasks, tmp_path):
    snapshot = take_snapshot(api, running, tmp_path, tasks, {"a.txt": b"hello" * 100, "b.bin": b"\0" * 5000})
    assert snapshot.status == St.SUCCEEDED and snapshot.verified_at is not None, snapshot.verify_error
    assert snapshot.files == 2 and snapshot.bytes == 5500 and snapshot.engine_id
    assert snapshot.new_bytes == 5500 and snapshot.stored_bytes > 0 and snapshot.duration_s is not None
    body = api.get(f"/api/v1/snapshots/{snapshot.id}").json()
    assert body["verified"] is True and body["progress"] is None


def test_a_snapshot_with_an_object_missing_from_storage_is_not_verified(api, running, tasks, tmp_path):
    reply = ask(api, running)
    command = deliver(running)
    result = agent_snapshots(running, tmp_path, {"big.bin": bytes(range(256)) * 40000})
    repo = storage.repository(Workspace.objects.get(instance=running))
    manifest = repo.load_manifest(result.id)
    victim = manifest.blobs[manifest.files()["big.bin"].blobs[0]].object
    repo.storage.delete(victim)
    finish(running, command, result)
    tasks.drain()
    snapshot = Snapshot.objects.get(pk=reply.json()["id"])
    assert snapshot.status == St.SUCCEEDED and snapshot.verified_at is None
    assert repo.storage.key(victim) in snapshot.verify_error


def test_a_failure_reported_by_the_agent_fails_the_snapshot(api, running, tasks):
    snapshot_id = ask(api, running).json()["id"]
    command = deliver(running)
    post_heartbeat(running, updates=[{"id": command["id"], "status": "failed", "error": "disk on fire"}], seq=2)
    body = api.get(f"/api/v1/snapshots/{snapshot_id}").json()
    assert body["status"] == "failed" and body["error"] == "disk on fire"
    assert ask(api, running).status_code == 202  # the next one may go


def test_a_snapshot_the_agent_never_finishes_fails_after_the_timeout(api, running, settings, tasks):
    from apps.snapshots.services import snapshots_fail_stale

    snapshot_id = ask(api, running).json()["id"]
    settings.DUMONT_SNAPSHOT_TIMEOUT = 0
    assert snapshots_fail_stale() == 1
    assert "no result from the agent" in Snapshot.objects.get(pk=snapshot_id).error


def test_retention_keeps_the_newest_verified_snapshots(api, running, tasks, tmp_path, settings):
    settings.DUMONT_SNAPSHOT_KEEP_LAST = 2
    taken = [take_snapshot(api, running, tmp_path, tasks, {"f": f"version {n}".encode()}) for n in range(3)]
    assert [s.verified_at is not None for s in taken] == [True] * 3
    left = list(Snapshot.objects.filter(instance=running).order_by("created_at"))
    assert [s.pk for s in left] == [taken[1].pk, taken[2].pk]
    repo = storage.repository(Workspace.objects.get(instance=running))
    assert sorted(repo.snapshot_ids()) == sorted([taken[1].engine_id, taken[2].engine_id])


# --- deleting ----------------------------------------------------------------------------------------


def test_delete_removes_the_manifest_then_the_record_then_gc_frees_its_data(api, running, tasks, tmp_path,
                                                                             settings):
    settings.DUMONT_SNAPSHOT_GC_GRACE = 0
    kept = take_snapshot(api, running, tmp_path, tasks, {"kept": b"k" * 3000})
    doomed = take_snapshot(api, running, tmp_path, tasks, {"big": bytes(range(256)) * 20000})
    repo = storage.repository(Workspace.objects.get(instance=running))
    manifest = repo.load_manifest(doomed.engine_id)
    big = {manifest.blobs[blob_id].object for blob_id in manifest.files()["big"].blobs}  # its own objects
    assert big <= {name for name, _ in repo.storage.list("packs/")}
    reply = api.delete(f"/api/v1/snapshots/{doomed.id}")
    assert reply.status_code == 202 and reply.json()["status"] == "deleting"
    assert tasks.drain() == ["snapshots.forget", "snapshots.gc"]
    assert not Snapshot.objects.filter(pk=doomed.pk).exists()
    assert repo.snapshot_ids() == [kept.engine_id]
    assert not big & {name for name, _ in repo.storage.list("packs/")}  # freed: no snapshot references them
    jobs.verify(kept.pk)  # the kept one is whole
    assert Snapshot.objects.get(pk=kept.pk).verify_error == ""


def test_gc_never_runs_while_the_agent_writes_a_snapshot(running, tasks):
    from agent.snapshot.errors import RepositoryLocked
    from agent.snapshot.locks import SHARED, lock_repository
    from apps.snapshots.services import workspace_for

    repo = storage.repository(workspace_for(running))
    repo.open_or_init()
    with lock_repository(repo, SHARED, purpose="snapshot"):
        with pytest.raises(RepositoryLocked):  # the task retries later (DUMONT_SNAPSHOT_GC_RETRY)
            jobs.collect_garbage(running.id)
    assert jobs.collect_garbage(running.id)["objects_deleted"] == 0


def test_a_snapshot_being_written_cannot_be_deleted(api, running, tasks):
    snapshot_id = ask(api, running).json()["id"]
    reply = api.delete(f"/api/v1/snapshots/{snapshot_id}")
    assert reply.status_code == 409 and reply.json()["status"] == "pending"


def test_the_only_copy_of_a_paused_workspace_cannot_be_deleted(api, running, tasks, tmp_path):
    older = take_snapshot(api, running, tmp_path, tasks, {"f": b"1"})
    newest = take_snapshot(api, running, tmp_path, tasks, {"f": b"2"})
    Instance.objects.filter(pk=running.pk).update(status=InstanceStatus.PAUSED)
    reply = api.delete(f"/api/v1/snapshots/{newest.id}")
    assert reply.status_code == 409 and reply.json()["error"] == "only_copy"
    assert api.delete(f"/api/v1/snapshots/{older.id}").status_code == 202


def test_a_failed_snapshot_is_deleted_at_once(api, running, tasks):
    snapshot_id = ask(api, running).json()["id"]
    command = deliver(running)
    post_heartbeat(running, updates=[{"id": command["id"], "status": "failed", "error": "nope"}], seq=2)
    assert api.delete(f"/api/v1/snapshots/{snapshot_id}").status_code == 204
    assert not Snapshot.objects.filter(pk=snapshot_id).exists()


# --- who may see what ---------------------------------------------------------------------------------


def test_anonymous_requests_are_refused(anon_api, running, tasks):
    snapshot_id = Snapshot.objects.create(instance=running, actor="t").pk
    assert anon_api.get("/api/v1/snapshots").status_code == 401
    assert anon_api.get(f"/api/v1/snapshots/{snapshot_id}").status_code == 401
    assert anon_api.delete(f"/api/v1/snapshots/{snapshot_id}").status_code == 401
    assert anon_api.post(f"/api/v1/instances/{running.id}/snapshot").status_code == 401


def test_another_users_snapshots_and_instances_are_not_found(other_api, api, running, tasks):
    snapshot_id = ask(api, running).json()["id"]
    assert other_api.get(f"/api/v1/snapshots/{snapshot_id}").status_code == 404
    assert other_api.delete(f"/api/v1/snapshots/{snapshot_id}").status_code == 404
    assert other_api.post(f"/api/v1/instances/{running.id}/snapshot").status_code == 404
    assert other_api.get("/api/v1/snapshots").json()["results"] == []
    assert other_api.get(f"/api/v1/snapshots?instance={running.id}").status_code == 404


def test_the_list_filters_by_instance_and_status_and_rejects_bad_filters(api, running, tasks):
    snapshot_id = ask(api, running).json()["id"]
    assert [s["id"] for s in api.get(f"/api/v1/snapshots?instance={running.id}").json()["results"]] == [snapshot_id]
    assert api.get("/api/v1/snapshots?status=succeeded").json()["results"] == []
    bad = api.get("/api/v1/snapshots?status=sleeping")
    assert bad.status_code == 400 and "sleeping" in bad.json()["detail"]
    assert api.get("/api/v1/snapshots?instance=not-a-uuid").status_code == 400
    assert api.get("/api/v1/snapshots/not-a-uuid").status_code == 404


# --- keys ---------------------------------------------------------------------------------------------


def test_a_sealed_workspace_key_opens_only_for_its_instance_and_master_key(running, settings):
    sealed = keys.new_sealed_key(running.id)
    key = keys.open_key(running.id, sealed)
    assert len(key) == 32 and key not in sealed
    with pytest.raises(keys.SnapshotsNotConfigured, match="does not open"):
        keys.open_key("another-instance", sealed)
    settings.DUMONT_SNAPSHOT_MASTER_KEY = "cd" * 32
    with pytest.raises(keys.SnapshotsNotConfigured, match="was the master key changed"):
        keys.open_key(running.id, sealed)
    settings.DUMONT_SNAPSHOT_MASTER_KEY = "short"
    with pytest.raises(keys.SnapshotsNotConfigured, match="64 hex characters"):
        keys.new_sealed_key(running.id)


def test_the_storage_check_names_a_missing_manifest(running, tasks, tmp_path):
    from apps.snapshots.services import workspace_for

    repo = storage.repository(workspace_for(running))
    repo.open_or_init()
    assert "manifest" in jobs.check_in_storage(repo, "20990101T000000.000Z-deadbeef")


def test_the_workspace_size_in_storage_is_billed_after_each_check_and_gc(api, running, tasks, tmp_path, settings):
    from apps.billing.models import LedgerEntry

    settings.DUMONT_SNAPSHOT_GC_GRACE = 0
    snapshot = take_snapshot(api, running, tmp_path, tasks, {"random": os.urandom(3_000_000)})
    repo = storage.repository(Workspace.objects.get(instance=running))
    stored = [entry.stored_bytes for entry in LedgerEntry.objects.filter(instance=running, kind="storage")]
    assert stored == [jobs.stored_size(repo)] and stored[0] > 3_000_000  # incompressible, sealed
    api.delete(f"/api/v1/snapshots/{snapshot.id}")
    tasks.drain()
    last = LedgerEntry.objects.filter(instance=running, kind="storage").order_by("at", "pk").last()
    assert last.stored_bytes == jobs.stored_size(repo) < 1000  # config and a lock-free repository left


def test_snapshots_of_an_instance_destroyed_long_ago_expire(api, running, tasks, tmp_path, settings):
    from apps.snapshots.services import snapshots_expire

    settings.DUMONT_SNAPSHOT_GC_GRACE = 0
    snapshot = take_snapshot(api, running, tmp_path, tasks, {"f": os.urandom(50_000)})
    Instance.objects.filter(pk=running.pk).update(status=InstanceStatus.DESTROYED)
    assert snapshots_expire() == 0  # destroyed just now: kept for DUMONT_SNAPSHOT_KEEP_AFTER_DESTROY
    settings.DUMONT_SNAPSHOT_KEEP_AFTER_DESTROY = 0.001
    assert snapshots_expire() == 1
    tasks.drain()
    assert not Snapshot.objects.filter(pk=snapshot.pk).exists()
    repo = storage.repository(Workspace.objects.get(instance=running))
    assert repo.snapshot_ids() == [] and list(repo.storage.list("packs/")) == []
