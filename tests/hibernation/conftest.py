"""Hibernation against devcloud (real machines, real stop/start/destroy) and the real S3 server.
The agent is played by heartbeats, and its snapshot by the real engine writing to the instance's
repository, as the agent on the machine would; tests/e2e runs the real agent."""

from __future__ import annotations

import time

import pytest
from rest_framework.test import APIClient

from apps.agents import services as agent_services
from apps.agents.models import AgentCommand
from apps.instances import services
from apps.instances.models import Instance, InstanceStatus
from tests.snapshots.conftest import storage_settings  # noqa: F401  (snapshot storage on the S3 server)

S = InstanceStatus
INTERVAL = 10.0


@pytest.fixture
def windows(settings):
    settings.DUMONT_AGENT_INTERVAL = INTERVAL
    settings.DUMONT_IDLE_WINDOW = 60
    settings.DUMONT_HIBERNATE_RELEASE_AFTER = 30 * 60
    settings.DUMONT_WAKE_START_TIMEOUT = 30
    return settings


class Agent:
    """Heartbeats for one instance, as its agent would send them."""

    def __init__(self, instance: Instance):
        self.instance = instance
        self.token = agent_services.agent_token_issue(instance=instance)
        self.client = APIClient()
        self.client.credentials(HTTP_AUTHORIZATION=f"Agent {self.token}")
        self.seq = 0

    def beat(self, samples=(), updates=()) -> dict:
        self.seq += 1
        body = {"instance_id": str(self.instance.id), "agent_version": "0.1.0", "seq": self.seq,
                "samples": list(samples), "updates": list(updates)}
        reply = self.client.post("/api/v1/agent/status", body, format="json")
        assert reply.status_code == 200, reply.content
        return reply.json()

    def report(self, *, seconds: float, gpu: float = 0.0, **activity) -> None:
        """Samples every INTERVAL over the last `seconds`, ending now."""
        now = time.time()
        ages = range(int(seconds), -1, -int(INTERVAL))
        self.beat([{"at": now - age, "gpus": [{"index": 0, "utilization": gpu}],
                    "activity": {"ssh_sessions": 0, "cpu_percent": 1.0, **activity}} for age in ages])

    def pending(self, kind: str) -> dict | None:
        for command in self.beat()["commands"]:
            if command["kind"] == kind:
                return command
        return None

    def finish(self, command: dict, *, result: dict | None = None, error: str = "") -> None:
        update = {"id": command["id"], "status": "failed", "error": error} if error else \
            {"id": command["id"], "status": "succeeded", "result": result or {}}
        self.beat(updates=[{"id": command["id"], "status": "acknowledged"}, update])


@pytest.fixture
def machine(user, devcloud, tasks, windows, storage_settings):  # noqa: F811
    """A running instance on a devcloud machine, with a healthy (simulated) agent."""
    instance = services.instance_create(user=user, actor="user:alice", label="work", image="img", disk_gb=16,
                                        gpu_name="RTX 4090")
    tasks.drain()
    instance = Instance.objects.get(pk=instance.pk)
    assert instance.status == S.RUNNING, instance.status_reason
    instance.agent_sim = Agent(instance)
    instance.agent_sim.beat()
    return instance


def commands(instance, kind: str):
    return AgentCommand.objects.filter(instance=instance, kind=kind).order_by("created_at")
