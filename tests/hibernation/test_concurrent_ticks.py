"""Two ticks side by side (a backlog after an outage, a tick slower than its period) must not
call a hibernation off: the second finds the confirming snapshot already asked for."""

from __future__ import annotations

import pytest

from apps.agents.models import Agent, AgentStatus
from apps.hibernation.services import hibernate_confirm
from apps.hibernation.tasks import hibernation_tick
from apps.instances.models import Instance
from apps.snapshots.models import Snapshot
from dumont.locks import single_flight

pytestmark = pytest.mark.django_db


def test_the_confirming_snapshot_asked_for_twice_leaves_the_hibernation_going(user):
    instance = Instance.objects.create(user=user, label="h", image="img", status="hibernating", machine_id="9")
    Agent.objects.create(instance=instance, status=AgentStatus.HEALTHY)
    Snapshot.objects.create(instance=instance, actor="system:hibernation", trigger="hibernate", status="succeeded")
    confirming = Snapshot.objects.create(instance=instance, actor="system:hibernation", trigger="hibernate")

    hibernate_confirm(instance_id=instance.pk)  # the second tick's call
    assert Instance.objects.get(pk=instance.pk).status == "hibernating"
    assert list(Snapshot.objects.filter(status="pending")) == [confirming]


def test_a_tick_skips_while_another_runs():
    with single_flight("hibernation.tick", ttl=60):
        assert hibernation_tick.apply().get() == {"skipped": "another tick is running"}
    assert "skipped" not in hibernation_tick.apply().get()
