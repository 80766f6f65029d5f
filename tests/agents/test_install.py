"""Installing the agent over SSH on devcloud machines: the failure paths, each with a reason."""

import pytest

from apps.agents import install as agent_install
from apps.agents import services as agent_services
from apps.agents.models import Agent, AgentCommand, AgentStatus
from apps.instances import services
from apps.instances.models import Instance, InstanceStatus
from dumont.locks import single_flight

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def running(user, devcloud, tasks, settings):
    instance = services.instance_create(
        user=user, actor="t", label="box", image="img", disk_gb=16, gpu_name="RTX 4090"
    )
    tasks.drain()
    instance = Instance.objects.get(pk=instance.pk)
    assert instance.status == InstanceStatus.RUNNING, instance.status_reason
    return instance


def test_an_agent_that_never_reports_fails_with_its_log_tail(running, tasks, settings):
    settings.DUMONT_AGENT_CONTROL_URL = "http://127.0.0.1:9"  # nothing listens there
    settings.DUMONT_AGENT_FIRST_HEARTBEAT_TIMEOUT = 1.5
    settings.DUMONT_AGENT_INTERVAL = 0.2
    agent_install.install(running.id)
    assert Agent.objects.get(pk=running.pk).status == AgentStatus.WAITING
    assert tasks.names() == ["agents.expect_heartbeat"]
    tasks.drain()
    agent = Agent.objects.get(pk=running.pk)
    assert agent.status == AgentStatus.FAILED
    assert "no heartbeat within 1.5 s" in agent.error
    assert "unreachable" in agent.error  # the agent's own log line, read over SSH


HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def test_a_changed_host_key_is_refused(running):
    Instance.objects.filter(pk=running.pk).update(ssh_host_key=HOST_KEY)
    agent_install.install(running.id)
    agent = Agent.objects.get(pk=running.pk)
    assert agent.status == AgentStatus.FAILED
    assert agent.error.startswith("connect: refused, host key changed")


def test_an_unreachable_machine_fails_the_install_at_connect(running, settings):
    Instance.objects.filter(pk=running.pk).update(ssh_port=9)
    agent_install.install(running.id)
    agent = Agent.objects.get(pk=running.pk)
    assert agent.status == AgentStatus.FAILED and agent.error.startswith("connect:")


def test_install_skips_instances_that_are_not_running(user, db):
    instance = Instance.objects.create(user=user, label="x", image="i", status=InstanceStatus.PAUSED)
    agent_install.install(instance.id)
    assert not Agent.objects.filter(pk=instance.pk).exists()


def test_a_second_copy_of_the_install_leaves_the_installed_agent_alone(user, db):
    """The beat sent the install again while the first one's retry was waiting: the agent it
    installed must not be killed (it may be restoring the workspace)."""
    instance = Instance.objects.create(user=user, label="x", image="i", status=InstanceStatus.RUNNING,
                                       machine_id="7", ssh_host="127.0.0.1", ssh_port=9)
    Agent.objects.create(instance=instance, status=AgentStatus.HEALTHY, installed_at=instance.status_changed_at)
    agent_install.install(instance.id)  # port 9: an install attempt would fail at connect
    assert Agent.objects.get(pk=instance.pk).status == AgentStatus.HEALTHY


def test_one_install_at_a_time_per_instance(user, db):
    instance = Instance.objects.create(user=user, label="x", image="i", status=InstanceStatus.RUNNING,
                                       machine_id="7", ssh_host="127.0.0.1", ssh_port=9, ssh_host_key=HOST_KEY)
    with single_flight(f"agents.install.{instance.id}", ttl=60):  # the first install, still running
        agent_install.install(instance.id)
    assert not Agent.objects.filter(pk=instance.pk).exists()
    agent_install.install(instance.id)  # once it is done, an install runs (and fails at connect here)
    assert Agent.objects.get(pk=instance.pk).status == AgentStatus.FAILED


def test_an_agent_reporting_from_this_machine_is_not_reinstalled(user, db):
    """A retried install whose first run did start the agent (its success could not be recorded:
    the database was down) finds that agent heartbeating and leaves it be."""
    instance = Instance.objects.create(user=user, label="x", image="i", status=InstanceStatus.WAKING,
                                       machine_id="7", ssh_host="127.0.0.1", ssh_port=9, ssh_host_key=HOST_KEY)
    Agent.objects.create(instance=instance, status=AgentStatus.HEALTHY, installed_at=None,
                         last_heartbeat_at=instance.status_changed_at)
    agent_install.install(instance.id)  # port 9: an install attempt would fail at connect
    assert Agent.objects.get(pk=instance.pk).status == AgentStatus.HEALTHY


def test_a_reinstall_hands_the_commands_its_predecessor_left_unfinished_to_the_new_agent(user, db):
    instance = Instance.objects.create(user=user, label="x", image="i", status=InstanceStatus.WAKING, machine_id="7")
    running = AgentCommand.objects.create(instance=instance, kind="restore", status="running", actor="t")
    done = AgentCommand.objects.create(instance=instance, kind="snapshot", status="succeeded", actor="t")
    agent_services.agent_install_begin(instance_id=instance.pk)
    assert AgentCommand.objects.get(pk=running.pk).status == "pending"  # delivered again
    assert AgentCommand.objects.get(pk=done.pk).status == "succeeded"
