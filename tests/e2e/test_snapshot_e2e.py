"""Snapshots end to end: a devcloud machine whose agent was installed over SSH (with the snapshot
engine's dependencies uploaded) snapshots its workspace to the real S3 server when asked through
the API; the control plane finds it in storage; a restore command brings it back byte for byte."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from apps.agents import services as agent_services
from apps.agents.models import AgentCommand
from apps.instances.models import Instance
from apps.snapshots import storage
from apps.snapshots.models import Workspace
from tests.s3 import BUCKET
from tests.snapshot.trees import MARKER, describe, every_kind_tree

from .conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

INTERVAL = 0.5
MASTER_KEY = "5e" * 32


@pytest.fixture
def snapshot_settings(settings, scoped_s3):
    """Storage that checks keys: machines get scoped credentials of their own, as in production."""
    values = {
        "DUMONT_SNAPSHOT_CREDENTIALS": "scoped",
        "DUMONT_SNAPSHOT_S3_ENDPOINT": scoped_s3.endpoint,
        "DUMONT_SNAPSHOT_IAM_ENDPOINT": scoped_s3.endpoint,
        "DUMONT_SNAPSHOT_S3_REGION": "us-east-1",
        "DUMONT_SNAPSHOT_S3_BUCKET": BUCKET,
        "DUMONT_SNAPSHOT_S3_PREFIX": f"e2e-{uuid.uuid4().hex[:8]}/",
        "DUMONT_SNAPSHOT_S3_ACCESS_KEY": scoped_s3.access_key,
        "DUMONT_SNAPSHOT_S3_SECRET_KEY": scoped_s3.secret_key,
        "DUMONT_SNAPSHOT_MASTER_KEY": MASTER_KEY,
        "DUMONT_WORKSPACE_PATH": "~/workspace",
    }
    for name, value in values.items():
        setattr(settings, name, value)
    settings.DUMONT_AGENT_INTERVAL = INTERVAL
    return values


def agent_worker_env(live_server, snapshot_settings: dict, **extra: str) -> dict:
    """The worker installs agents that report to the live server and snapshot to the S3 server."""
    return {
        "DUMONT_AGENT_ENABLED": "true",
        "DUMONT_AGENT_CONTROL_URL": live_server.url,
        "DUMONT_AGENT_INTERVAL": str(INTERVAL),
        "DUMONT_AGENT_FIRST_HEARTBEAT_TIMEOUT": "60",
        "DUMONT_AGENT_UPLOAD_DEPENDENCIES": "true",
        **snapshot_settings,
        **extra,
    }


@pytest.fixture
def worker_env(live_server, snapshot_settings):
    return agent_worker_env(live_server, snapshot_settings)


def test_snapshot_through_the_api_then_restore_on_the_machine(api, devcloud, celery_worker, live_server,
                                                              scoped_s3):
    instance_id = api.post("/api/v1/instances", {"label": "snap-e2e", "gpu_name": "RTX 4090"},
                           format="json").json()["id"]

    def agent_healthy():
        agent = api.get(f"/api/v1/instances/{instance_id}").json().get("agent") or {}
        if agent.get("status") == "failed":
            raise AssertionError(f"agent install failed: {agent['error']}")
        return agent.get("status") == "healthy"

    wait_for(agent_healthy, timeout=120, what="the agent's first heartbeat")
    disk = Path(devcloud.machine(Instance.objects.get(pk=instance_id).machine_id)["disk"])
    agent_env = (disk / ".dumont" / "agent.env").read_text()
    assert "DUMONT_S3_ACCESS_KEY=" in agent_env and scoped_s3.secret_key not in agent_env  # its own key only
    workspace = disk / "workspace"
    assert workspace.is_dir()  # the installer made the workspace
    workspace.rmdir()
    every_kind_tree(workspace)

    asked = api.post(f"/api/v1/instances/{instance_id}/snapshot")
    assert asked.status_code == 202, asked.content
    snapshot_id = asked.json()["id"]

    def verified():
        body = api.get(f"/api/v1/snapshots/{snapshot_id}").json()
        if body["status"] == "failed" or body["verify_error"]:
            raise AssertionError(f"snapshot failed: {body['error'] or body['verify_error']}")
        return body if body["verified"] else None

    snapshot = wait_for(verified, timeout=120, what="the snapshot to be written and found in storage")
    expected = describe(workspace)
    assert snapshot["files"] == sum(1 for entry in expected.values() if entry[0] == "file")
    assert snapshot["new_bytes"] == snapshot["bytes"] > 9 * 1024 * 1024

    # Nothing in the bucket is readable: no object holds the plaintext marker.
    repo = storage.repository(Workspace.objects.get(instance_id=instance_id))
    names = [name for name, _ in repo.storage.list("")]
    assert any(name.startswith("snapshots/") for name in names)
    assert not any(MARKER.encode() in repo.storage.get(name) for name in names)

    restore = agent_services.agent_command_create(
        instance=Instance.objects.get(pk=instance_id), kind="restore",
        args={"snapshot": snapshot["engine_id"], "workspace": "~/restored"}, actor="test")

    def restored():
        command = AgentCommand.objects.get(pk=restore.pk)
        if command.status == "failed":
            raise AssertionError(f"restore failed: {command.error}")
        return command if command.status == "succeeded" else None

    command = wait_for(restored, timeout=120, what="the restore command")
    assert command.result["id"] == snapshot["engine_id"]
    assert "DUMONT_SNAPSHOT_KEY" not in str(command.args)  # the key went only over the wire
    assert describe(disk / "restored") == expected
