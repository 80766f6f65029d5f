"""The agent end to end: installed over SSH on a devcloud machine, heartbeats into the live
control plane, GPU changes visible through the API, a command round trip, token isolation."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pytest
import requests

from apps.agents import services as agent_services
from apps.agents.models import AgentCommand
from apps.instances.models import Instance

from .conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

INTERVAL = 0.5


@pytest.fixture
def worker_env(live_server):
    return {
        "DUMONT_AGENT_ENABLED": "true",
        "DUMONT_AGENT_CONTROL_URL": live_server.url,
        "DUMONT_AGENT_INTERVAL": str(INTERVAL),
        "DUMONT_AGENT_FIRST_HEARTBEAT_TIMEOUT": "60",
    }


@pytest.fixture(autouse=True)
def fast_agent(settings):
    settings.DUMONT_AGENT_INTERVAL = INTERVAL  # the live server tells agents this interval


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _detail(api, instance_id):
    return api.get(f"/api/v1/instances/{instance_id}").json()


def _agent_token(devcloud, instance) -> str:
    machine = devcloud.machine(instance["machine_id"])
    for line in (Path(machine["disk"]) / ".dumont" / "agent.env").read_text().splitlines():
        name, _, value = line.partition("=")
        if name == "DUMONT_AGENT_TOKEN":
            return value.strip("'")
    raise AssertionError("no token in agent.env")


def _post_heartbeat(live_server, token, instance_id):
    body = {"instance_id": str(instance_id), "agent_version": "test", "seq": 1, "samples": []}
    return requests.post(f"{live_server.url}/api/v1/agent/status", json=body,
                         headers={"Authorization": f"Agent {token}"}, timeout=10)


def test_agent_installed_over_ssh_reports_and_runs_commands(api, user, devcloud, celery_worker, live_server):
    created = api.post("/api/v1/instances", {"label": "agent-e2e", "gpu_name": "RTX 4090"}, format="json")
    instance_id = created.json()["id"]

    def agent_healthy():
        body = _detail(api, instance_id)
        agent = body.get("agent") or {}
        if agent.get("status") == "failed":
            raise AssertionError(f"agent install failed: {agent['error']}")
        return body if agent.get("status") == "healthy" else None

    body = wait_for(agent_healthy, timeout=90, what="the agent's first heartbeat")
    assert body["status"] == "running"

    # A change of the simulated GPU shows through the API within two intervals: the second
    # sample taken after the change reads it (the first may average across the change).
    devcloud.set_gpu(body["machine_id"], 73)
    changed_at = time.time()

    def two_samples_after_change():
        samples = [s for s in _detail(api, instance_id)["recent_samples"]
                   if _epoch(s["at"]) > changed_at]
        return samples if len(samples) >= 2 else None

    after = wait_for(two_samples_after_change, timeout=20, interval=0.05, what="two samples after the change")
    assert after[1]["gpu_util_max"] == pytest.approx(73, abs=0.5), after

    # A command round-trips: delivered, acknowledged, result stored.
    command = agent_services.agent_command_create(
        instance=Instance.objects.get(pk=instance_id), kind="echo", args={"say": "hello"}, actor="test"
    )

    def command_done():
        command.refresh_from_db()
        return command.status in ("succeeded", "failed")

    wait_for(command_done, timeout=20, what="the echo command to finish")
    assert (command.status, command.result) == ("succeeded", {"say": "hello"})
    assert command.acknowledged_at is not None and command.attempts >= 1
    assert AgentCommand.objects.get(pk=command.pk).finished_at is not None

    # The token speaks only for its own instance, and dies with it.
    token = _agent_token(devcloud, body)
    other = Instance.objects.create(user=user, label="other", image="img", status="running")
    assert _post_heartbeat(live_server, token, other.id).status_code == 404
    assert _post_heartbeat(live_server, token, instance_id).status_code == 200
    api.delete(f"/api/v1/instances/{instance_id}")
    wait_for(lambda: _detail(api, instance_id)["status"] == "destroyed", timeout=30, what="destroyed")
    assert _post_heartbeat(live_server, token, instance_id).status_code == 401
