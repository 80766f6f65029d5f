"""The chaos soak, run by bench/chaos_soak.py (skipped otherwise): workspaces hibernate and wake
again and again, with new files after every wake, while random parts of the stack die or hang
for random lengths of time. Then every fault is healed and the counts are taken:
- instances not back where they belong (running with their latest files) without an operator;
- machines leaked (in devcloud, owned by no instance);
- machines destroyed without a verified snapshot of their last files;
- verified snapshots lost or silently wrong (each one restored here and compared with the
  version of the files it was taken after).
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import Counter

import pytest
import requests

from agent.snapshot import snapshot_restore
from apps.instances.models import Instance, InstanceEvent
from apps.snapshots import storage
from apps.snapshots.models import Snapshot
from tests.polling import wait_for

from .conftest import Chaos
from .test_chaos import HASHES, _local_hashes, _on_machine

SOAK_SECONDS = float(os.environ.get("DUMONT_CHAOS_SOAK_SECONDS", "0"))
WORKSPACES = int(os.environ.get("DUMONT_CHAOS_SOAK_WORKSPACES", "2"))
SEED = int(os.environ.get("DUMONT_CHAOS_SOAK_SEED", "1"))
REPORT = os.environ.get("DUMONT_CHAOS_SOAK_REPORT", "")

pytestmark = [pytest.mark.e2e, pytest.mark.chaos, pytest.mark.django_db(transaction=True),
              pytest.mark.skipif(not SOAK_SECONDS, reason="the soak runs from bench/chaos_soak.py")]

# name: (break it, heal it)
KINDS = {
    "postgres killed": (lambda c: c.proxies["postgres"].down(), lambda c: c.proxies["postgres"].up()),
    "postgres hung": (lambda c: c.proxies["postgres"].pause(), lambda c: c.proxies["postgres"].up()),
    "redis killed": (lambda c: c.proxies["redis"].down(), lambda c: c.proxies["redis"].up()),
    "s3 killed": (lambda c: c.proxies["s3"].down(), lambda c: c.proxies["s3"].up()),
    "s3 hung": (lambda c: c.proxies["s3"].pause(), lambda c: c.proxies["s3"].up()),
    "worker killed": (lambda c: c.stack.kill_worker(), lambda c: c.stack.start_worker(wait=False)),
    "devcloud killed": (lambda c: c.proxies["devcloud"].down(), lambda c: c.proxies["devcloud"].up()),
}


class Faults(threading.Thread):
    def __init__(self, chaos: Chaos, rng: random.Random, until: float):
        super().__init__(daemon=True, name="faults")
        self.chaos, self.rng, self.until = chaos, rng, until
        self.counts: Counter = Counter()

    def run(self) -> None:
        while time.monotonic() < self.until:
            time.sleep(self.rng.uniform(2, 12))
            kind = self.rng.choice(sorted(KINDS))
            inject, heal = KINDS[kind]
            self.counts[kind] += 1
            inject(self.chaos)
            time.sleep(self.rng.uniform(1, 8))
            heal(self.chaos)


class Workspace:
    """One instance, every version of its files the soak wrote, with when, and every verified
    snapshot seen (retention deletes old ones later: they still protected a machine then)."""

    def __init__(self, instance_id: str):
        self.id = instance_id
        self.versions: list[dict] = []  # {"machine", "started", "finished", "lines"}
        self.verified: dict[str, tuple[float, float]] = {}  # snapshot id -> (created, verified)

    def note_snapshots(self) -> None:
        for snapshot in Snapshot.objects.filter(instance_id=self.id, status="succeeded", verified_at__isnull=False,
                                                verify_error=""):
            self.verified[str(snapshot.id)] = (snapshot.created_at.timestamp(), snapshot.verified_at.timestamp())

    def write(self, chaos: Chaos, instance: Instance) -> bool:
        """A new version of the files, written with the GPU busy so that no hibernation starts
        in the middle of it; False when the instance moved on first."""
        chaos.devcloud.set_gpu(instance.machine_id, 90)
        try:
            time.sleep(1.5)  # the agent reports the busy GPU
            if Instance.objects.get(pk=self.id).status != "running":
                return False
            n = len(self.versions) + 1
            started = time.time()
            _on_machine(instance, f"mkdir -p ~/workspace/data && cd ~/workspace && "
                                  f"head -c 2000000 /dev/urandom > data/v{n}.bin && echo 'version {n}' > notes.txt")
            lines = sorted(line for line in _on_machine(instance, HASHES).splitlines() if "  ./" in line)
            self.versions.append({"machine": instance.machine_id, "started": started, "finished": time.time(),
                                  "lines": lines})
            return True
        finally:
            chaos.devcloud.set_gpu(instance.machine_id, 0)


def _api(chaos: Chaos, method: str, path: str, **kwargs):
    try:
        return chaos.api(method, path, **kwargs)
    except requests.RequestException:
        return None  # the web server's database is down, say: the user tries again


def test_soak(chaos: Chaos, tmp_path):
    rng = random.Random(SEED)
    workspaces = []
    for n in range(WORKSPACES):
        reply = chaos.api("POST", "/api/v1/instances", json={"label": f"soak-{n}", "gpu_name": "RTX 4090",
                                                             "strategy": "single"})
        assert reply.status_code == 202, reply.text
        workspaces.append(Workspace(reply.json()["id"]))
        chaos.instance_ids.append(reply.json()["id"])
    for workspace in workspaces:
        instance = wait_for(lambda w=workspace: (i := Instance.objects.select_related("agent").get(pk=w.id)).status
                            == "running" and hasattr(i, "agent") and i.agent.status == "healthy" and i,
                            timeout=180, what="the first agent")
        assert workspace.write(chaos, instance)

    started = time.monotonic()
    faults = Faults(chaos, rng, until=started + SOAK_SECONDS)
    faults.start()
    while time.monotonic() < started + SOAK_SECONDS:
        for workspace in workspaces:
            workspace.note_snapshots()
            instance = Instance.objects.select_related("agent").get(pk=workspace.id)
            if instance.status == "hibernated":
                _api(chaos, "POST", f"/api/v1/instances/{workspace.id}/wake")
            elif (instance.status == "running" and instance.agent.status == "healthy"
                  and instance.machine_id != workspace.versions[-1]["machine"]):
                try:
                    workspace.write(chaos, instance)  # the user's first work after a wake
                except AssertionError:
                    pass  # the machine went meanwhile (hibernation): next round
        time.sleep(1)
    faults.join()
    for proxy in chaos.proxies.values():
        proxy.up()
    if chaos.stack.worker.poll() is not None:
        chaos.stack.start_worker(wait=False)

    counts = _settle_and_count(chaos, workspaces, tmp_path)
    counts["faults"] = dict(faults.counts)
    counts["seconds"] = SOAK_SECONDS
    counts["worker exits restarted by the supervisor"] = chaos.stack.crashes
    print(json.dumps(counts, indent=2))
    if REPORT:
        with open(REPORT, "w") as out:
            json.dump(counts, out, indent=2)
    bad = {key: counts[key] for key in ("not recovered", "failed", "machines leaked",
                                        "destroyed without a verified snapshot", "snapshots wrong or lost")}
    assert not any(bad.values()), bad


def _settle_and_count(chaos: Chaos, workspaces: list[Workspace], tmp_path) -> dict:
    """Every workspace back to running with its latest files, by the product alone (a wake asked
    for a hibernated one, as its user would), then the counts."""
    Instance.objects.filter(pk__in=[w.id for w in workspaces]).update(auto_hibernate=False)
    not_recovered, failed = 0, 0
    for workspace in workspaces:
        try:
            instance = wait_for(lambda w=workspace: _settled(chaos, w.id), timeout=300, interval=1,
                                what=f"instance {workspace.id} to settle")
            files = sorted(line for line in _on_machine(instance, HASHES).splitlines() if "  ./" in line)
            not_recovered += files != workspace.versions[-1]["lines"]
        except AssertionError:
            not_recovered += 1
            failed += Instance.objects.filter(pk=workspace.id, status="failed").count()
    owned = set(Instance.objects.exclude(machine_id="").values_list("machine_id", flat=True))
    deadline = time.monotonic() + 90  # the reconciler destroys what a killed race left
    while True:
        leaked = [m["id"] for m in chaos.devcloud.machines() if str(m["id"]) not in owned]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(1)
    destroyed = {str(entry["id"]): entry["destroyed_at"] for entry in chaos.devcloud.destroyed()}
    unsafe, checked, wrong, overlapping = 0, 0, 0, 0
    for workspace in workspaces:
        workspace.note_snapshots()
        snapshots = list(Snapshot.objects.filter(instance_id=workspace.id, status="succeeded",
                                                 verified_at__isnull=False, verify_error=""))
        for machine in {v["machine"] for v in workspace.versions}:
            if machine not in destroyed:
                continue
            last_write = max(v["finished"] for v in workspace.versions if v["machine"] == machine)
            if not any(created > last_write and verified < destroyed[machine]
                       for created, verified in workspace.verified.values()):
                unsafe += 1
        repo = storage.repository(Instance.objects.get(pk=workspace.id).workspace)
        for snapshot in snapshots:
            at = snapshot.created_at.timestamp()
            if any(v["started"] <= at <= v["finished"] for v in workspace.versions):
                overlapping += 1  # taken while the soak wrote: either version would be right
                continue
            before = [v for v in workspace.versions if v["finished"] < at]
            target = tmp_path / f"restore-{snapshot.id}"
            try:
                snapshot_restore(repo, snapshot.engine_id, str(target))
                ok = bool(before) and _local_hashes(target) == before[-1]["lines"]
            except Exception:  # noqa: BLE001  (whatever stops a restore, the snapshot is lost)
                ok = False
            checked += 1
            wrong += not ok
    return {
        "workspaces": len(workspaces),
        "versions written": sum(len(w.versions) for w in workspaces),
        "hibernations": _events(workspaces, "paused", "hibernated"),
        "wakes": _events(workspaces, "waking", "running"),
        "hibernations called off": _events(workspaces, "hibernating", "running"),
        "not recovered": not_recovered,
        "failed": failed,
        "machines leaked": len(leaked),
        "destroyed without a verified snapshot": unsafe,
        "snapshots restored and compared": checked,
        "snapshots taken during a write (not compared)": overlapping,
        "snapshots wrong or lost": wrong,
    }


def _settled(chaos: Chaos, instance_id: str):
    instance = Instance.objects.select_related("agent").get(pk=instance_id)
    if instance.status in ("hibernated", "paused") and not instance.wake_requested_at:
        _api(chaos, "POST", f"/api/v1/instances/{instance_id}/wake")
    if instance.status == "running" and getattr(instance, "agent", None) and instance.agent.status == "healthy":
        return instance
    return None


def _events(workspaces: list[Workspace], from_status: str, to_status: str) -> int:
    return InstanceEvent.objects.filter(instance_id__in=[w.id for w in workspaces], from_status=from_status,
                                        to_status=to_status).count()
