"""Agent work lost with a worker, or never sent (the broker was down when the machine came up),
is sent again by agents.requeue_stalled on the beat."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.agents.install import requeue_stalled
from apps.agents.models import Agent, AgentStatus
from apps.instances.models import Instance, InstanceStatus

S = InstanceStatus
pytestmark = pytest.mark.django_db


@pytest.fixture
def agents_on(settings):
    settings.DUMONT_AGENT_ENABLED = True
    settings.DUMONT_RECONCILE_GRACE = 10
    settings.DUMONT_AGENT_INSTALL_TIMEOUT = 60
    settings.DUMONT_AGENT_FIRST_HEARTBEAT_TIMEOUT = 30
    return settings


def machine(user, status=S.RUNNING, *, age_s: float = 120, **fields) -> Instance:
    instance = Instance.objects.create(user=user, label=f"m-{status}", image="img", status=status, machine_id="7",
                                       ssh_host="127.0.0.1", ssh_port=22, **fields)
    Instance.objects.filter(pk=instance.pk).update(status_changed_at=timezone.now() - timedelta(seconds=age_s))
    return instance


def sent(tasks) -> list[tuple[str, str]]:
    return [(name, args[0]) for name, args, _ in tasks.sent]


def test_a_running_machine_whose_install_was_never_sent_gets_it(user, agents_on, tasks):
    lost = machine(user)
    machine(user, age_s=2)  # came up just now: its install is on its way
    assert requeue_stalled().installs == 1
    assert sent(tasks) == [("agents.install", str(lost.pk))]


def test_a_machine_whose_agent_was_stopped_with_it_and_not_reinstalled_gets_it(user, agents_on, tasks):
    instance = machine(user)
    Agent.objects.create(instance=instance, status=AgentStatus.NOT_INSTALLED)
    assert requeue_stalled().installs == 1 and sent(tasks) == [("agents.install", str(instance.pk))]


def test_an_install_that_outlived_its_timeout_is_sent_again(user, agents_on, tasks):
    stuck, fresh = machine(user), machine(user)
    Agent.objects.create(instance=stuck, status=AgentStatus.INSTALLING,
                         install_started_at=timezone.now() - timedelta(seconds=75))
    Agent.objects.create(instance=fresh, status=AgentStatus.INSTALLING,
                         install_started_at=timezone.now() - timedelta(seconds=30))
    assert requeue_stalled().installs == 1 and sent(tasks) == [("agents.install", str(stuck.pk))]


def test_healthy_failed_and_waiting_agents_are_left_alone(user, agents_on, tasks):
    for status in (AgentStatus.HEALTHY, AgentStatus.FAILED, AgentStatus.SILENT, AgentStatus.WAITING):
        Agent.objects.create(instance=machine(user), status=status, installed_at=timezone.now())
    assert vars(requeue_stalled()) == {"installs": 0, "hello_checks": 0} and tasks.sent == []


def test_an_agent_that_never_said_hello_gets_the_check_that_fails_it(user, agents_on, tasks):
    instance = machine(user)
    Agent.objects.create(instance=instance, status=AgentStatus.WAITING,
                         installed_at=timezone.now() - timedelta(seconds=45))
    assert requeue_stalled().hello_checks == 1
    assert sent(tasks) == [("agents.expect_heartbeat", str(instance.pk))]


def test_only_machines_that_should_run_an_agent(user, agents_on, tasks):
    restoring = machine(user, S.WAKING)  # a race's winner, about to restore the snapshot
    machine(user, S.WAKING, deadline_at=timezone.now() + timedelta(minutes=5))  # a paused machine starting
    for status in (S.BOOTING, S.STOPPING, S.PAUSED, S.HIBERNATING):
        machine(user, status)
    Instance.objects.create(user=user, label="no-machine", image="img", status=S.RUNNING)
    assert requeue_stalled().installs == 1 and sent(tasks) == [("agents.install", str(restoring.pk))]


def test_nothing_when_agents_are_switched_off(user, settings, tasks):
    settings.DUMONT_AGENT_ENABLED = False
    machine(user)
    assert requeue_stalled().installs == 0 and tasks.sent == []
