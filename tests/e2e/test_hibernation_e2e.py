"""Hibernation end to end, with shrunken windows: a devcloud machine whose agent was installed
over SSH goes idle; its agent snapshots the workspace to the real S3 server; the machine is
stopped, then given back; wake races for a new machine, installs the agent, restores the
snapshot, and the workspace is byte-identical, checked over SSH on the new machine."""

from __future__ import annotations

import pytest

from apps.hibernation.models import Wake
from apps.hibernation.tick import tick
from apps.instances.models import Instance
from apps.providers.ssh import ssh_run
from apps.snapshots.models import Snapshot
from tests.e2e.test_snapshot_e2e import agent_worker_env, snapshot_settings  # noqa: F401  (a fixture)

from .conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

HASHES = "cd ~/workspace && find . -type f -print0 | sort -z | xargs -0 sha256sum && find . | sort"


@pytest.fixture
def windows(settings):
    settings.DUMONT_IDLE_WINDOW = 3
    settings.DUMONT_HIBERNATE_RELEASE_AFTER = 1
    return settings


@pytest.fixture
def worker_env(live_server, snapshot_settings):  # noqa: F811
    return agent_worker_env(live_server, snapshot_settings, DUMONT_RACE_POLL_INTERVAL="0.1",
                            DUMONT_RACE_ROUND_TIMEOUT="30")


def _on_machine(instance: Instance, command: str) -> str:
    status, out, err = ssh_run(instance.ssh_host, instance.ssh_port, command,
                               pinned_host_key=instance.ssh_host_key, timeout=30)
    assert status == 0, err
    return out


def _status_after_tick(instance_id, wanted: str):
    tick()  # what Celery beat runs every DUMONT_HIBERNATION_TICK seconds
    instance = Instance.objects.get(pk=instance_id)
    if instance.status == "failed":
        raise AssertionError(f"instance failed: {instance.status_reason}")
    return instance if instance.status == wanted else None


def test_idle_machine_hibernates_and_wakes_with_its_workspace(api, devcloud, celery_worker, live_server, windows):
    instance_id = api.post("/api/v1/instances", {"label": "hib-e2e", "gpu_name": "RTX 4090", "strategy": "single"},
                           format="json").json()["id"]
    wait_for(lambda: (Instance.objects.get(pk=instance_id).agent.status == "healthy"
                      if hasattr(Instance.objects.get(pk=instance_id), "agent") else None),
             timeout=120, what="the agent's first heartbeat")
    instance = Instance.objects.get(pk=instance_id)
    old_machine = instance.machine_id
    _on_machine(instance, "mkdir -p ~/workspace/data ~/workspace/empty && cd ~/workspace "
                          "&& head -c 3000000 /dev/urandom > data/weights.bin && echo 'loss 0.031' > notes.txt "
                          "&& ln -s data/weights.bin latest && chmod 600 notes.txt")
    expected = _on_machine(instance, HASHES)

    wait_for(lambda: _status_after_tick(instance_id, "hibernating"), timeout=60, interval=0.5,
             what="the idle machine to start hibernating")
    wait_for(lambda: _status_after_tick(instance_id, "paused"), timeout=120, interval=0.5,
             what="the snapshot, its storage check and the stop")
    first, confirming = Snapshot.objects.filter(instance_id=instance_id, trigger="hibernate").order_by("created_at")
    assert first.verified_at is not None and first.files == 2 and first.new_bytes > 3_000_000
    assert confirming.verified_at is not None and confirming.new_bytes == 0  # nothing written since
    hibernated = wait_for(lambda: _status_after_tick(instance_id, "hibernated"), timeout=60, interval=0.5,
                          what="the machine to be given back")
    assert hibernated.machine_id == "" and devcloud.machine(old_machine) is None

    assert api.post(f"/api/v1/instances/{instance_id}/wake").status_code == 202
    woken = wait_for(lambda: _status_after_tick(instance_id, "running"), timeout=180, interval=0.5,
                     what="wake: race, agent install, restore")
    assert woken.machine_id not in ("", old_machine)
    assert _on_machine(woken, HASHES) == expected
    assert _on_machine(woken, "stat -c %a ~/workspace/notes.txt && readlink ~/workspace/latest").split() == \
        ["600", "data/weights.bin"]
    parts = Wake.objects.get(instance_id=instance_id).parts
    assert all(parts[name] is not None for name in ("machine", "agent", "restore", "total")), parts
