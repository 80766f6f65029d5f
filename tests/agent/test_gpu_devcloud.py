"""The devcloud GPU backend against a real devcloud, with the machine's own credentials."""

from __future__ import annotations

import pytest

from agent.gpu import open_gpu_monitor

from .helpers import wait_for


@pytest.fixture
def machine(devcloud_server):
    """A running devcloud machine with one GPU; destroyed afterwards."""
    cloud = devcloud_server
    status, body = cloud.api(
        "POST", "/api/v0/bundles/", {"rented": {"eq": False}, "num_gpus": {"eq": 1}, "limit": 1}
    )
    assert status == 200 and body["offers"], body
    status, body = cloud.api(
        "PUT", f"/api/v0/asks/{body['offers'][0]['id']}/", {"image": "pytorch/pytorch", "disk": 8, "label": "agent-gpu"}
    )
    assert status == 200, body
    machine_id = body["new_contract"]
    wait_for(lambda: cloud.api("GET", f"/api/v0/instances/{machine_id}/")[1]["instances"]["actual_status"] == "running",
             timeout=10, what="the machine to run")
    yield machine_id
    cloud.api("DELETE", f"/api/v0/instances/{machine_id}/")


def machine_env(cloud, machine_id, **overrides) -> dict[str, str]:
    return {
        "DEVCLOUD_URL": cloud.url,
        "DEVCLOUD_MACHINE_ID": str(machine_id),
        "DEVCLOUD_MACHINE_TOKEN": cloud.machine(machine_id)["token"],
        **overrides,
    }


def test_reads_the_utilization_devcloud_simulates(devcloud_server, machine):
    devcloud_server.set_gpu(machine, 42)
    monitor = open_gpu_monitor("devcloud", machine_env(devcloud_server, machine), interval_s=0.1)
    try:
        reading = wait_for(lambda: (r := monitor.read()).gpus and r, what="a devcloud reading")
    finally:
        monitor.close()

    assert monitor.name == "devcloud"
    assert reading.error is None
    [gpu] = reading.gpus
    assert (gpu.index, gpu.utilization, gpu.utilization_source) == (0, 42.0, "devcloud")
    assert 0 < gpu.memory_used_mb < gpu.memory_total_mb


def test_a_wrong_machine_token_is_an_error_not_zero(devcloud_server, machine):
    env = machine_env(devcloud_server, machine, DEVCLOUD_MACHINE_TOKEN="not-the-token")
    monitor = open_gpu_monitor("devcloud", env, interval_s=0.1)
    try:
        reading = wait_for(lambda: (r := monitor.read()).error != "devcloud GPU: no reading yet" and r,
                           what="a failed devcloud reading")
    finally:
        monitor.close()

    assert reading.gpus == []
    assert reading.error == "devcloud GPU read failed: HTTP Error 401: Unauthorized"
