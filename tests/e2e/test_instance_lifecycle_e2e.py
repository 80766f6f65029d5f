"""The whole path through a real Celery worker: API → worker → devcloud → SSH, and back."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from apps.providers.ssh import ssh_handshake, ssh_run

from .conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _status_becomes(api, instance_id: str, wanted: str):
    def check():
        body = api.get(f"/api/v1/instances/{instance_id}").json()
        if body["status"] == "failed":
            raise AssertionError(f"instance failed: {body['status_reason']}")
        return body if body["status"] == wanted else None

    return wait_for(check, timeout=60, what=f"status {wanted}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_instance_created_through_the_api_runs_pauses_resumes_and_is_destroyed(api, devcloud, celery_worker):
    created = api.post(
        "/api/v1/instances", {"label": "e2e", "gpu_name": "RTX 4090", "disk_gb": 16}, format="json"
    )
    assert created.status_code == 202
    instance_id = created.json()["id"]

    running = _status_becomes(api, instance_id, "running")
    host_key = ssh_handshake(running["ssh_host"], running["ssh_port"])
    assert host_key.startswith("ssh-")
    [machine] = [m for m in devcloud.machines() if m.get("label") == running["machine_label"]]
    machine_dir = Path(machine["dir"])
    assert machine_dir.is_dir()

    assert api.post(f"/api/v1/instances/{instance_id}/pause").status_code == 202
    _status_becomes(api, instance_id, "paused")
    assert machine_dir.is_dir()

    assert api.post(f"/api/v1/instances/{instance_id}/resume").status_code == 202
    resumed = _status_becomes(api, instance_id, "running")
    assert ssh_handshake(resumed["ssh_host"], resumed["ssh_port"], pinned_host_key=host_key)

    # A detached process started over SSH must die with the machine too.
    status, out, _ = ssh_run(
        resumed["ssh_host"], resumed["ssh_port"], "setsid nohup sleep 1000 >/dev/null 2>&1 & echo $!",
        pinned_host_key=host_key,
    )
    detached = int(out.strip())
    assert status == 0 and _alive(detached)

    assert api.delete(f"/api/v1/instances/{instance_id}").status_code == 202
    destroyed = _status_becomes(api, instance_id, "destroyed")
    assert [e["to_status"] for e in destroyed["events"]][-2:] == ["destroying", "destroyed"]
    assert not machine_dir.exists()
    assert not [m for m in devcloud.machines() if m.get("label") == running["machine_label"]]
    wait_for(lambda: not _alive(detached), timeout=5, what="the machine's processes to end")
