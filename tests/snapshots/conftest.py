"""Snapshot records on the control plane, against the same real S3 server as the engine tests."""

from __future__ import annotations

import uuid

import pytest

from apps.agents import services as agent_services
from apps.instances.models import Instance, InstanceStatus
from tests.s3 import BUCKET


@pytest.fixture
def storage_settings(settings, s3_server):
    settings.DUMONT_SNAPSHOT_S3_ENDPOINT = s3_server
    settings.DUMONT_SNAPSHOT_S3_BUCKET = BUCKET
    settings.DUMONT_SNAPSHOT_S3_PREFIX = f"cp-{uuid.uuid4().hex[:8]}/"
    settings.DUMONT_SNAPSHOT_S3_ACCESS_KEY = "test"
    settings.DUMONT_SNAPSHOT_S3_SECRET_KEY = "test-secret"
    settings.DUMONT_SNAPSHOT_MASTER_KEY = "ab" * 32
    settings.DUMONT_SNAPSHOT_PARALLEL = 4
    return settings


@pytest.fixture
def running(user, storage_settings):
    """A running instance whose agent has said hello (its token is `running.token`)."""
    instance = Instance.objects.create(user=user, label="box", image="img", status=InstanceStatus.RUNNING)
    instance.token = agent_services.agent_token_issue(instance=instance)
    from tests.snapshots.helpers import post_heartbeat

    post_heartbeat(instance)
    return instance
