"""Chaos: one workspace's whole journey (create, idle, snapshot, hibernation, release, wake by a
race, restore) while one part of the stack dies or hangs in each phase of it.

Each test takes one fault (PostgreSQL, Redis, the S3 store, the Celery worker with its beat,
devcloud's API) and applies it four times: while the hibernation snapshot is written, between
the verified snapshot and the destroy of the machine, while the wake's race runs, and while the
snapshot is restored. A fault lasts HOLD seconds, then the part comes back. Nobody intervenes:
the beat, the retries and the agents must bring the instance to where it belongs. Then:
- the instance is running on a new machine with its workspace byte for byte, and healthy;
- 0 machines leaked: devcloud holds the instance's machine and nothing else;
- 0 machines destroyed without a verified snapshot: the machine that held the work was
  destroyed only after a snapshot of it was verified in storage;
- 0 snapshots lost or silently wrong: every verified snapshot is restored here and compared.
"""

from __future__ import annotations

import hashlib
import time
from datetime import datetime
from pathlib import Path

import pytest

from agent.snapshot import snapshot_restore
from apps.hibernation.models import Wake
from apps.instances.models import Instance
from apps.providers.ssh import ssh_run
from apps.races.models import Race
from apps.snapshots import storage
from apps.snapshots.models import Snapshot, SnapshotStatus
from tests.polling import wait_for

from .conftest import Chaos

pytestmark = [pytest.mark.e2e, pytest.mark.chaos, pytest.mark.django_db(transaction=True)]

HOLD = 5.0  # seconds each fault lasts

FAULTS = {
    "postgres": (lambda c: c.proxies["postgres"].down(), lambda c: c.proxies["postgres"].up()),
    "redis": (lambda c: c.proxies["redis"].down(), lambda c: c.proxies["redis"].up()),
    "s3": (lambda c: c.proxies["s3"].pause(), lambda c: c.proxies["s3"].up()),
    "worker": (lambda c: c.stack.kill_worker(), lambda c: c.stack.start_worker()),
    "devcloud": (lambda c: c.proxies["devcloud"].down(), lambda c: c.proxies["devcloud"].up()),
}

WRITE = ("mkdir -p ~/workspace/data ~/workspace/src && cd ~/workspace "
         "&& head -c 24000000 /dev/urandom > data/weights.bin "
         "&& for i in $(seq 1 40); do echo \"step $i\" > src/part-$i.txt; done "
         "&& ln -s data/weights.bin latest")
HASHES = "cd ~/workspace && find . -type f -print0 | sort -z | xargs -0 sha256sum && find . | sort"


def _on_machine(instance: Instance, command: str) -> str:
    status, out, err = ssh_run(instance.ssh_host, instance.ssh_port, command,
                               pinned_host_key=instance.ssh_host_key, timeout=60)
    assert status == 0, err
    return out


def _instance(instance_id) -> Instance:
    instance = Instance.objects.select_related("agent").get(pk=instance_id)
    if instance.status == "failed":
        raise AssertionError(f"instance failed: {instance.status_reason}")
    return instance


def _strike(chaos: Chaos, fault: str, phase: str) -> None:
    """The fault, now; HOLD seconds later the part is back."""
    inject, heal = FAULTS[fault]
    chaos.injected.append((fault, phase, time.time()))
    inject(chaos)
    time.sleep(HOLD)
    heal(chaos)


def _local_hashes(root: Path) -> list[str]:
    """`sha256sum` lines of every regular file under root, as HASHES prints them, sorted."""
    return sorted(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  ./{path.relative_to(root)}"
                  for path in root.rglob("*") if path.is_file() and not path.is_symlink())


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_workspace_journey_survives_the_fault_in_every_phase(chaos: Chaos, fault, tmp_path):
    reply = chaos.api("POST", "/api/v1/instances", json={"label": f"chaos-{fault}", "gpu_name": "RTX 4090",
                                                         "strategy": "single"})
    assert reply.status_code == 202, reply.text
    instance_id = reply.json()["id"]
    chaos.instance_ids.append(instance_id)
    instance = wait_for(lambda: (i := _instance(instance_id)).status == "running" and hasattr(i, "agent")
                        and i.agent.status == "healthy" and i, timeout=120, what="the agent's first heartbeat")
    first_machine = instance.machine_id
    _on_machine(instance, WRITE)
    expected = _on_machine(instance, HASHES)
    written_at = time.time()

    # 1. While the hibernation snapshot is being written.
    wait_for(lambda: Snapshot.objects.filter(instance_id=instance_id, trigger="hibernate",
                                             status__in=["pending", "running"]).exists(),
             timeout=60, interval=0.05, what="the hibernation snapshot to start")
    _strike(chaos, fault, "snapshot")

    # 2. Between the verified snapshot and the destroy: the machine is being stopped or is paused.
    wait_for(lambda: _instance(instance_id).status in ("stopping", "paused"), timeout=150, interval=0.05,
             what="the hibernation to stop the machine (after a verified snapshot)")
    _strike(chaos, fault, "hibernation")
    wait_for(lambda: _instance(instance_id).status == "hibernated", timeout=150, interval=0.2,
             what="the machine to be given back")

    # 3. While the wake's race runs.
    reply = chaos.api("POST", f"/api/v1/instances/{instance_id}/wake")
    assert reply.status_code == 202, reply.text
    wait_for(lambda: Race.objects.filter(instance_id=instance_id, purpose="wake", status="running",
                                         candidates__isnull=False).exists()
             or _instance(instance_id).status == "running",
             timeout=60, interval=0.05, what="the wake's race to start")
    _strike(chaos, fault, "race")

    # 4. While the snapshot is restored onto the winner.
    wait_for(lambda: Wake.objects.filter(instance_id=instance_id, restore_command__isnull=False).exists()
             or _instance(instance_id).status == "running",
             timeout=150, interval=0.05, what="the restore to be asked for")
    _strike(chaos, fault, "restore")

    woken = wait_for(lambda: (i := _instance(instance_id)).status == "running" and i.agent.status == "healthy"
                     and i, timeout=240, interval=0.2, what="the wake to finish")
    assert woken.machine_id not in ("", first_machine)
    assert _on_machine(woken, HASHES) == expected, "the workspace is not byte for byte what was written"

    # 0 machines leaked (the reconciler may still be destroying race losers).
    wait_for(lambda: {str(m["id"]) for m in chaos.devcloud.machines()} == {woken.machine_id}, timeout=60,
             interval=0.5, what=f"devcloud to hold only machine {woken.machine_id}")

    # 0 machines destroyed without a verified snapshot.
    destroyed = {str(entry["id"]): entry["destroyed_at"] for entry in chaos.devcloud.destroyed()}
    assert first_machine in destroyed
    covering = [s.verified_at for s in Snapshot.objects.filter(instance_id=instance_id, status="succeeded",
                                                                verified_at__isnull=False, verify_error="")
                if s.created_at.timestamp() > written_at]
    assert covering and min(covering).timestamp() < destroyed[first_machine], \
        "the machine that held the work was destroyed before any snapshot of it was verified"

    # 0 snapshots lost or silently wrong: each verified one restores to exactly what was written.
    verified = list(Snapshot.objects.filter(instance_id=instance_id, status=SnapshotStatus.SUCCEEDED,
                                            verified_at__isnull=False).order_by("created_at"))
    assert verified
    repo = storage.repository(woken.workspace)
    remote = sorted(line for line in expected.splitlines() if "  ./" in line)
    for snapshot in verified:
        target = tmp_path / f"restore-{snapshot.engine_id}"
        snapshot_restore(repo, snapshot.engine_id, str(target))
        assert _local_hashes(target) == remote, f"snapshot {snapshot.engine_id} does not restore the workspace"
    assert [phase for _, phase, _ in chaos.injected] == ["snapshot", "hibernation", "race", "restore"]
    _report(instance_id, fault, chaos)


def _report(instance_id, fault: str, chaos: Chaos) -> None:
    events = Instance.objects.get(pk=instance_id).events.order_by("created_at")
    start = chaos.injected[0][2]
    print(f"\n{fault}: " + ", ".join(f"{phase}@{at - start:.1f}s" for _, phase, at in chaos.injected))
    for event in events:
        print(f"  {datetime.fromtimestamp(event.created_at.timestamp()):%H:%M:%S.%f} "
              f"{event.from_status}->{event.to_status} "
              f"{event.reason[:100]}")
