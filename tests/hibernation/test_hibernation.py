"""Auto-hibernation and wake, step by step, on devcloud machines and the real S3 server."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from agent.snapshot import Repository, config_from_env, snapshot_create, snapshot_restore
from apps.agents.models import Agent as AgentRow
from apps.agents.models import AgentStatus
from apps.hibernation import services as hibernation
from apps.hibernation.models import Wake
from apps.hibernation.tick import tick
from apps.instances import services
from apps.instances.models import Instance, InstanceStatus
from apps.snapshots.models import Snapshot, SnapshotStatus
from tests.hibernation.conftest import Agent, commands
from tests.snapshot.trees import describe

S = InstanceStatus
pytestmark = pytest.mark.django_db(transaction=True)


def reload(instance) -> Instance:
    return Instance.objects.get(pk=instance.pk)


def disk(devcloud, machine_id) -> Path:
    return Path(devcloud.machine(machine_id)["disk"])


def workspace_with_work(devcloud, instance) -> Path:
    workspace = disk(devcloud, instance.machine_id) / "workspace"
    workspace.mkdir(exist_ok=True)
    (workspace / "weights.bin").write_bytes(os.urandom(600_000))
    (workspace / "notes.txt").write_text("epoch 12: loss 0.031\n")
    return workspace


def agent_snapshots(agent: Agent, workspace: Path, *, fail: str = "") -> Snapshot:
    """What the agent does with the hibernation snapshot command."""
    command = agent.pending("snapshot")
    assert command is not None, "no snapshot command delivered"
    if fail:
        agent.finish(command, error=fail)
    else:
        repo = Repository(config_from_env(command["args"]["repository"]))
        agent.finish(command, result=snapshot_create(repo, str(workspace)).to_dict())
    return Snapshot.objects.get(pk=command["args"]["snapshot"])


def hibernate_to_paused(machine, devcloud, tasks) -> Path:
    agent = machine.agent_sim
    workspace = workspace_with_work(devcloud, machine)
    agent.report(seconds=80)
    assert tick().hibernating == [machine.pk]
    assert reload(machine).status == S.HIBERNATING
    snapshot = agent_snapshots(agent, workspace)
    tasks.drain()  # the storage check
    assert Snapshot.objects.get(pk=snapshot.pk).verified_at is not None
    assert tick().stopping == []  # first a confirming snapshot
    confirming = agent_snapshots(agent, workspace)
    tasks.drain()
    assert Snapshot.objects.get(pk=confirming.pk).new_bytes == 0
    assert tick().stopping == [machine.pk]
    tasks.drain()  # stop at the provider, watch until stopped
    instance = reload(machine)
    assert instance.status == S.PAUSED, instance.status_reason
    agent_row = AgentRow.objects.get(pk=instance.pk)  # stopped with its machine: no longer healthy
    assert agent_row.status == AgentStatus.NOT_INSTALLED and agent_row.token_hash is None
    return workspace


def release_now(machine, tasks) -> None:
    """As if the paused machine's DUMONT_HIBERNATE_RELEASE_AFTER were over."""
    Instance.objects.filter(pk=machine.pk).update(release_at=timezone.now() - timedelta(seconds=1))
    tick()
    tasks.drain()
    assert reload(machine).status == S.HIBERNATED


def test_an_idle_machine_is_snapshotted_stopped_then_given_back(machine, devcloud, tasks, settings):
    expected = describe(hibernate_to_paused(machine, devcloud, tasks))
    instance = reload(machine)
    assert instance.release_at is not None
    assert devcloud.machine(instance.machine_id)["actual_status"] == "stopped"  # disk kept

    Instance.objects.filter(pk=instance.pk).update(release_at=timezone.now() - timedelta(seconds=1))
    assert tick().releasing == [instance.pk]
    tasks.drain()
    hibernated = reload(instance)
    assert hibernated.status == S.HIBERNATED and hibernated.machine_id == ""
    assert [m for m in devcloud.machines() if str(m["id"]) == instance.machine_id] == []
    steps = list(hibernated.events.values_list("to_status", flat=True))
    assert steps[-4:] == [S.HIBERNATING, S.STOPPING, S.PAUSED, S.HIBERNATED]
    first, confirming = Snapshot.objects.filter(instance=instance, status=SnapshotStatus.SUCCEEDED).order_by("created_at")
    assert first.files == confirming.files == len([e for e in expected.values() if e[0] == "file"])
    assert first.new_bytes > 0 and confirming.new_bytes == 0


def test_a_busy_gpu_never_hibernates(machine, tasks):
    machine.agent_sim.report(seconds=80, gpu=35.0)
    assert tick().hibernating == []
    assert reload(machine).status == S.RUNNING and not commands(machine, "snapshot").exists()


def test_terminal_input_in_the_window_blocks_hibernation(machine, tasks):
    machine.agent_sim.report(seconds=80, ssh_sessions=1, last_input_age_s=15)
    assert tick().hibernating == []
    assert reload(machine).status == S.RUNNING


def test_a_silent_agent_never_leads_to_hibernation_or_destroy(machine, devcloud, tasks):
    machine.agent_sim.report(seconds=80)
    AgentRow.objects.filter(pk=machine.pk).update(status=AgentStatus.SILENT)
    assert tick().hibernating == []
    assert reload(machine).status == S.RUNNING
    assert devcloud.machine(machine.machine_id)["actual_status"] == "running"


def test_keep_awake_until_holds_an_idle_machine(machine, tasks):
    Instance.objects.filter(pk=machine.pk).update(keep_awake_until=timezone.now() + timedelta(hours=1))
    machine.agent_sim.report(seconds=80)
    assert tick().hibernating == []


def test_a_failed_snapshot_leaves_the_machine_running_with_the_failure_shown(machine, devcloud, tasks):
    workspace = workspace_with_work(devcloud, machine)
    machine.agent_sim.report(seconds=80)
    tick()
    agent_snapshots(machine.agent_sim, workspace, fail="upload interrupted: connection reset")
    assert tick().aborted == [machine.pk]
    instance = reload(machine)
    assert instance.status == S.RUNNING
    assert "snapshot failed" in instance.status_reason and "connection reset" in instance.status_reason
    assert devcloud.machine(instance.machine_id)["actual_status"] == "running"


def test_activity_during_the_snapshot_calls_hibernation_off(machine, devcloud, tasks):
    workspace = workspace_with_work(devcloud, machine)
    machine.agent_sim.report(seconds=80)
    tick()
    time.sleep(0.05)
    machine.agent_sim.report(seconds=0, gpu=80.0)  # back at work while the snapshot runs
    agent_snapshots(machine.agent_sim, workspace)
    tasks.drain()
    assert tick().aborted == [machine.pk]
    instance = reload(machine)
    assert instance.status == S.RUNNING and "in use again" in instance.status_reason
    assert instance.last_activity_at is not None


def test_a_machine_is_never_given_back_without_a_snapshot_newer_than_its_last_activity(machine, devcloud, tasks):
    hibernate_to_paused(machine, devcloud, tasks)
    Instance.objects.filter(pk=machine.pk).update(
        last_activity_at=timezone.now(), release_at=timezone.now() - timedelta(seconds=1))
    tick()
    tasks.drain()
    instance = reload(machine)
    assert instance.status == S.PAUSED and instance.release_at is None
    assert "no verified snapshot newer than its last activity" in instance.status_reason
    assert devcloud.machine(instance.machine_id)  # kept


def test_wake_from_paused_reuses_the_machine(machine, devcloud, tasks, api):
    workspace = hibernate_to_paused(machine, devcloud, tasks)
    reply = api.post(f"/api/v1/instances/{machine.pk}/wake")
    assert reply.status_code == 202 and reply.json()["status"] == "waking"
    tasks.drain()
    instance = reload(machine)
    assert instance.status == S.RUNNING and instance.machine_id == machine.machine_id
    assert (workspace / "notes.txt").read_text() == "epoch 12: loss 0.031\n"
    wake = Wake.objects.get(instance=instance)
    assert wake.source == "paused" and wake.running_at is not None and not wake.needs_restore


def test_wake_from_hibernated_races_restores_then_runs(machine, devcloud, tasks, api):
    expected = describe(hibernate_to_paused(machine, devcloud, tasks))
    old_machine = machine.machine_id
    release_now(machine, tasks)

    first = api.post(f"/api/v1/instances/{machine.pk}/wake", HTTP_IDEMPOTENCY_KEY="w1")
    again = api.post(f"/api/v1/instances/{machine.pk}/wake")  # a second wake at once: the same wake
    assert first.status_code == again.status_code == 202 and again.json()["status"] == "waking"
    tasks.drain()  # the race
    instance = reload(machine)
    assert instance.status == S.WAKING and instance.machine_id and instance.machine_id != old_machine
    assert Wake.objects.filter(instance=instance).count() == 1

    agent = Agent(instance)  # the agent installed on the new machine
    command = agent.pending("restore")
    target = disk(devcloud, instance.machine_id) / "workspace"
    repo = Repository(config_from_env(command["args"]["repository"]))
    result = snapshot_restore(repo, command["args"]["snapshot"], str(target))
    agent.finish(command, result=result.to_dict())
    instance = reload(instance)
    assert instance.status == S.RUNNING, instance.status_reason
    assert describe(target) == expected
    wake = Wake.objects.get(instance=instance)
    parts = wake.parts
    assert parts["total"] >= parts["machine"] > 0 and parts["restore"] is not None


def test_a_failed_restore_gives_the_new_machine_back_and_hibernates_again(machine, devcloud, tasks, api):
    hibernate_to_paused(machine, devcloud, tasks)
    release_now(machine, tasks)
    api.post(f"/api/v1/instances/{machine.pk}/wake")
    tasks.drain()
    new_machine = reload(machine).machine_id
    agent = Agent(reload(machine))
    agent.finish(agent.pending("restore"), error="object data/ab/cd is missing from the bucket")
    tasks.drain()
    instance = reload(machine)
    assert instance.status == S.HIBERNATED and instance.machine_id == ""
    assert "data/ab/cd is missing" in instance.status_reason and "wake again to retry" in instance.status_reason
    assert devcloud.machine(new_machine) is None
    assert Snapshot.objects.filter(instance=instance, status=SnapshotStatus.SUCCEEDED).exists()
    assert Wake.objects.get(instance=instance).failed_at is not None
    assert api.post(f"/api/v1/instances/{machine.pk}/wake").json()["status"] == "waking"  # and again


def test_wake_while_hibernating_finishes_the_snapshot_then_stays_up(machine, devcloud, tasks, api):
    workspace = workspace_with_work(devcloud, machine)
    machine.agent_sim.report(seconds=80)
    tick()
    reply = api.post(f"/api/v1/instances/{machine.pk}/wake")
    assert reply.status_code == 202 and reply.json()["status"] == "hibernating"
    assert tick().aborted == []  # the snapshot is still being written: it finishes first
    snapshot = agent_snapshots(machine.agent_sim, workspace)
    tasks.drain()
    assert tick().aborted == [machine.pk]
    instance = reload(machine)
    assert instance.status == S.RUNNING and "woken during hibernation" in instance.status_reason
    assert Snapshot.objects.get(pk=snapshot.pk).verified_at is not None


def test_destroy_while_waking_destroys_everything(machine, devcloud, tasks, api):
    hibernate_to_paused(machine, devcloud, tasks)
    release_now(machine, tasks)
    api.post(f"/api/v1/instances/{machine.pk}/wake")
    assert api.delete(f"/api/v1/instances/{machine.pk}").status_code == 202
    tasks.drain()
    assert reload(machine).status == S.DESTROYED
    labelled = [m for m in devcloud.machines() if str(m.get("label", "")).startswith(f"dumont-{machine.pk}")]
    assert labelled == []


def test_waking_a_destroyed_or_running_instance(machine, tasks, api):
    assert api.post(f"/api/v1/instances/{machine.pk}/wake").json()["status"] == "running"  # nothing to do
    services.instance_destroy(instance=machine, actor="user:alice")
    tasks.drain()
    reply = api.post(f"/api/v1/instances/{machine.pk}/wake")
    assert reply.status_code == 409 and reply.json()["status"] == "destroyed"


def test_wake_is_refused_to_strangers_and_anonymous_users(machine, other_api, anon_api):
    assert other_api.post(f"/api/v1/instances/{machine.pk}/wake").status_code == 404
    assert anon_api.post(f"/api/v1/instances/{machine.pk}/wake").status_code == 401


def test_hibernated_without_any_verified_snapshot_cannot_wake(machine, tasks, api):
    Instance.objects.filter(pk=machine.pk).update(status=S.HIBERNATED)
    reply = api.post(f"/api/v1/instances/{machine.pk}/wake")
    assert reply.status_code == 409 and "no verified snapshot" in reply.json()["detail"]


def test_a_paused_machine_that_does_not_start_in_time_is_replaced_by_a_race(machine, devcloud, tasks, api):
    expected = describe(hibernate_to_paused(machine, devcloud, tasks))
    old_machine = machine.machine_id
    api.post(f"/api/v1/instances/{machine.pk}/wake")
    Instance.objects.filter(pk=machine.pk).update(wake_fallback_at=timezone.now() - timedelta(seconds=1))
    assert tick().falling_back == [machine.pk]  # its GPU was taken: not up within the timeout
    tasks.drain()
    instance = reload(machine)
    assert instance.status == S.WAKING and instance.machine_id not in ("", old_machine)
    assert devcloud.machine(old_machine) is None  # the old machine is given back
    agent = Agent(instance)
    command = agent.pending("restore")
    target = disk(devcloud, instance.machine_id) / "workspace"
    result = snapshot_restore(Repository(config_from_env(command["args"]["repository"])),
                              command["args"]["snapshot"], str(target))
    agent.finish(command, result=result.to_dict())
    assert reload(instance).status == S.RUNNING
    assert describe(target) == expected
    assert Wake.objects.get(instance=instance).fell_back_to_race_at is not None


def test_a_user_paused_machine_without_a_snapshot_is_waited_for_not_replaced(machine, devcloud, tasks, api):
    services.instance_pause(instance=machine, actor="user:alice")
    tasks.drain()
    api.post(f"/api/v1/instances/{machine.pk}/wake")
    Instance.objects.filter(pk=machine.pk).update(wake_fallback_at=timezone.now() - timedelta(seconds=1))
    tick()
    tasks.drain()
    instance = reload(machine)
    assert instance.status == S.RUNNING and instance.machine_id == machine.machine_id


def test_the_idle_policy_is_the_instances_own_when_set(machine, api, other_api, anon_api, tasks):
    url = f"/api/v1/instances/{machine.pk}"
    reply = api.patch(url, {"idle_gpu_threshold": 50, "idle_signals": ["cpu", "ssh_input", "cpu"]}, format="json")
    assert reply.status_code == 200, reply.content
    assert reply.json()["idle_gpu_threshold"] == 50 and reply.json()["idle_signals"] == ["cpu", "ssh_input"]
    machine.agent_sim.report(seconds=80, gpu=35.0)
    assert tick().hibernating == [machine.pk]  # 35% is idle under its own 50% threshold
    assert machine.events.filter(reason__startswith="idle policy: idle_gpu_threshold=50").exists()

    bad = api.patch(url, {"idle_signals": ["mouse"]}, format="json")
    assert bad.status_code == 400 and "mouse" in bad.content.decode()
    assert api.patch(url, {}, format="json").status_code == 400
    assert api.patch(url, {"idle_window_s": 1}, format="json").status_code == 400
    assert api.patch(url, {"idle_gpu_threshold": None}, format="json").json()["idle_gpu_threshold"] is None
    assert other_api.patch(url, {"auto_hibernate": False}, format="json").status_code == 404
    assert anon_api.patch(url, {"auto_hibernate": False}, format="json").status_code == 401


def test_auto_hibernate_off_keeps_an_idle_machine_running(machine, api, tasks):
    api.patch(f"/api/v1/instances/{machine.pk}", {"auto_hibernate": False}, format="json")
    machine.agent_sim.report(seconds=80)
    assert tick().hibernating == []


def test_a_snapshot_killed_mid_upload_leaves_the_machine_running(machine, devcloud, tasks, settings):
    """The agent died during the upload: no result ever comes; the snapshot times out."""
    from apps.snapshots.services import snapshots_fail_stale

    machine.agent_sim.report(seconds=80)
    tick()
    assert machine.agent_sim.pending("snapshot") is not None  # delivered, then nothing more
    assert tick().stopping == [] and reload(machine).status == S.HIBERNATING
    settings.DUMONT_SNAPSHOT_TIMEOUT = 0.001
    assert snapshots_fail_stale() == 1
    assert tick().aborted == [machine.pk]
    instance = reload(machine)
    assert instance.status == S.RUNNING and "no result from the agent" in instance.status_reason
    assert devcloud.machine(instance.machine_id)["actual_status"] == "running"


def test_two_wakes_at_once_are_one_wake(machine, devcloud, tasks):
    import threading

    from django.db import connection

    hibernate_to_paused(machine, devcloud, tasks)
    release_now(machine, tasks)
    barrier, results = threading.Barrier(2), []

    def wake():
        try:
            barrier.wait()
            results.append(hibernation.instance_wake(instance=reload(machine), actor="user:alice").status)
        finally:
            connection.close()

    threads = [threading.Thread(target=wake) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [S.WAKING, S.WAKING]
    assert Wake.objects.filter(instance=machine).count() == 1
    assert machine.races.filter(purpose="wake").count() == 1


def test_files_written_during_the_snapshot_call_hibernation_off(machine, devcloud, tasks):
    workspace = workspace_with_work(devcloud, machine)
    machine.agent_sim.report(seconds=80)
    tick()
    agent_snapshots(machine.agent_sim, workspace)
    tasks.drain()
    tick()  # asks for the confirming snapshot
    (workspace / "checkpoint-13.bin").write_bytes(os.urandom(200_000))  # a job still writing, GPU idle
    agent_snapshots(machine.agent_sim, workspace)
    tasks.drain()
    assert tick().aborted == [machine.pk]
    instance = reload(machine)
    assert instance.status == S.RUNNING and "files were written during the snapshot" in instance.status_reason
    assert devcloud.machine(instance.machine_id)["actual_status"] == "running"
