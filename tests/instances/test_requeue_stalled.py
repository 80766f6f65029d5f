"""Work lost with a worker is sent again (instances.requeue_stalled, on the beat): a destroy
stuck in destroying, a single start, stop or start nobody polls (a stop or start gets its
provider call again: the worker may have died before making it). A wake that restores its
snapshot onto a race's winner waits on its agent, not on the provider, and is left alone."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.instances import orchestration, services
from apps.instances.models import Instance, InstanceStatus
from apps.instances.orchestration import requeue_stalled
from apps.instances.tasks import stop_machine

S = InstanceStatus
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def quick(devcloud, settings):
    settings.DUMONT_RECONCILE_GRACE = 0
    return devcloud


def start_single(user) -> Instance:
    return services.instance_create(user=user, actor="user:alice", label="s", image="img", disk_gb=16,
                                    gpu_name="RTX 4090", strategy="single")


def test_an_instance_stuck_destroying_gets_its_destroy_task_again(user, quick, tasks):
    instance = start_single(user)
    tasks.drain()
    services.instance_destroy(instance=Instance.objects.get(pk=instance.pk), actor="user:alice")
    tasks.sent.clear()  # that destroy task died with its worker
    Instance.objects.filter(pk=instance.pk).update(status_changed_at=timezone.now() - timedelta(seconds=5))

    report = requeue_stalled()
    assert report.destroys == 1 and tasks.names() == ["instances.destroy_machine"]
    tasks.drain()
    assert Instance.objects.get(pk=instance.pk).status == S.DESTROYED
    assert quick.machines() == []


def test_a_single_start_whose_watch_died_with_its_worker_is_watched_again(user, quick, tasks, settings):
    settings.DUMONT_RECONCILE_GRACE = 2
    instance = start_single(user)
    tasks.drain()  # provisioned and running (devcloud boots fast)
    services.instance_pause(instance=Instance.objects.get(pk=instance.pk), actor="user:alice")
    assert tasks.names() == ["instances.stop_machine"]
    tasks.sent.clear()
    stop_machine.apply(args=(str(instance.pk),)).get()  # the stop call is made; its watch task is then lost
    tasks.sent.clear()
    assert Instance.objects.get(pk=instance.pk).status == S.STOPPING
    assert requeue_stalled().watches == 0  # polled (or changed state) within the grace period

    Instance.objects.filter(pk=instance.pk).update(watched_at=None,
                                                   status_changed_at=timezone.now() - timedelta(seconds=5))
    report = requeue_stalled()
    assert report.watches == 1 and tasks.names() == ["instances.stop_machine"]
    assert tasks.drain() == ["instances.stop_machine", "instances.watch"]
    assert Instance.objects.get(pk=instance.pk).status == S.PAUSED


def test_a_stop_whose_worker_died_before_the_provider_call_is_made_again(user, quick, tasks):
    instance = start_single(user)
    tasks.drain()
    services.instance_pause(instance=Instance.objects.get(pk=instance.pk), actor="user:alice")
    tasks.sent.clear()  # instances.stop_machine died with its worker: the machine still runs
    assert quick.machine(Instance.objects.get(pk=instance.pk).machine_id)["actual_status"] == "running"
    Instance.objects.filter(pk=instance.pk).update(status_changed_at=timezone.now() - timedelta(seconds=5))

    assert requeue_stalled().watches == 1 and tasks.names() == ["instances.stop_machine"]
    tasks.drain()
    assert Instance.objects.get(pk=instance.pk).status == S.PAUSED


def test_a_wake_restoring_onto_a_race_winner_is_never_watched_into_running(user, quick, tasks):
    """Its machine runs and answers SSH, but it is waking until the agent restored the snapshot:
    a watch would call it running with an empty workspace. It has no deadline: a race drove it."""
    long_ago = timezone.now() - timedelta(minutes=10)
    restoring = Instance.objects.create(user=user, label="r", image="img", status=S.WAKING, machine_id="42",
                                        ssh_host="127.0.0.1", ssh_port=22, status_changed_at=long_ago)
    Instance.objects.filter(pk=restoring.pk).update(status_changed_at=long_ago)
    starting = Instance.objects.create(user=user, label="p", image="img", status=S.WAKING, machine_id="43",
                                       deadline_at=timezone.now() + timedelta(minutes=5))
    Instance.objects.filter(pk=starting.pk).update(status_changed_at=long_ago)

    assert requeue_stalled().watches == 1 and tasks.names() == ["instances.start_machine"]
    assert tasks.sent[0][1] == (str(starting.pk),)  # the paused machine is started (again) and watched
    assert orchestration.watch(restoring.pk) is None
    assert Instance.objects.get(pk=restoring.pk).status == S.WAKING
