"""How a step's failures end (apps.instances.steps): the database out of reach is waited out,
retried later each time; a provider error past its retries fails the instance, unless the
instance moved on meanwhile."""

from __future__ import annotations

import pytest
from django.db import OperationalError
from django.utils import timezone

from apps.instances import orchestration
from apps.instances.models import Instance
from apps.instances.steps import DATABASE_RETRY_CAP, retry_while_database_down
from apps.instances.tasks import stop_machine, watch
from apps.providers.base import ProviderError

pytestmark = pytest.mark.django_db


def test_a_step_is_retried_through_a_database_outage(monkeypatch, settings):
    settings.DUMONT_PROVIDER_RETRY_DELAY = 0.01
    calls = []

    def outage_then_done(instance_id):
        calls.append(instance_id)
        if len(calls) < 3:
            raise OperationalError("connection failed: Connection refused")

    monkeypatch.setattr(orchestration, "watch", outage_then_done)
    watch.apply(args=("an-instance",)).get()  # eager: each retry runs at once
    assert calls == ["an-instance"] * 3


def test_the_wait_between_tries_doubles_up_to_the_cap(settings):
    settings.DUMONT_PROVIDER_RETRY_DELAY = 1

    class Task:
        class request:
            retries = 0

        def retry(self, countdown, exc):
            return RuntimeError(countdown)

    task, waits = Task(), []
    for attempt in (0, 1, 2, 10):
        task.request.retries = attempt
        with pytest.raises(RuntimeError) as raised:
            retry_while_database_down(task, "step", OperationalError("down"))
        waits.append(raised.value.args[0])
    assert waits == [1, 2, 4, DATABASE_RETRY_CAP]


def test_a_step_that_gives_up_after_the_instance_moved_on_fails_nothing(user, monkeypatch):
    """A stop the beat sent again finished the job while this copy kept failing (the machine was
    then given back, so its last call found no machine): its error is moot."""
    stopping = Instance.objects.create(user=user, label="s", image="img", status="stopping", machine_id="7")

    def moved_on_then_fails(instance_id):
        Instance.objects.filter(pk=instance_id).update(status="paused", status_changed_at=timezone.now())
        raise ProviderError("no_such_instance: Instance 7 not found.")

    monkeypatch.setattr(orchestration, "stop_machine", moved_on_then_fails)
    stop_machine.apply(args=(str(stopping.pk),)).get()
    assert Instance.objects.get(pk=stopping.pk).status == "paused"


def test_a_step_that_gives_up_in_the_state_it_was_for_fails_the_instance(user, monkeypatch):
    stopping = Instance.objects.create(user=user, label="s", image="img", status="stopping", machine_id="7")

    def fails(instance_id):
        raise ProviderError("the provider refused the stop")

    monkeypatch.setattr(orchestration, "stop_machine", fails)
    stop_machine.apply(args=(str(stopping.pk),)).get()
    instance = Instance.objects.get(pk=stopping.pk)
    assert instance.status == "failed" and "the provider refused the stop" in instance.status_reason
