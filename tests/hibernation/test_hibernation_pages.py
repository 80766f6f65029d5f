"""The instance page's wake button, wake timings and idle policy form."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from apps.hibernation.models import Wake
from apps.instances.models import Instance, InstanceStatus

S = InstanceStatus
HTMX = {"HTTP_HX_REQUEST": "true"}


def make(user, status=S.PAUSED, **fields) -> Instance:
    return Instance.objects.create(user=user, label="box", image="img", gpu_name="RTX 4090", status=status,
                                   machine_id="42", **fields)


@pytest.mark.django_db
def test_a_paused_or_hibernated_instance_offers_wake(browser, user):
    for status in (S.PAUSED, S.HIBERNATED):
        page = browser.get(f"/instances/{make(user, status).pk}").content.decode()
        assert ">Wake</button>" in page
    assert ">Wake</button>" not in browser.get(f"/instances/{make(user, S.RUNNING).pk}").content.decode()


@pytest.mark.django_db(transaction=True)
def test_wake_from_the_page_starts_the_machine(browser, user, tasks):
    instance = make(user)
    reply = browser.post(f"/instances/{instance.pk}/wake", {"return_to": "detail"}, **HTMX)
    assert reply.status_code == 200 and "badge-waking" in reply.content.decode()
    assert Instance.objects.get(pk=instance.pk).status == S.WAKING
    assert "instances.start_machine" in tasks.names()
    refused = browser.post(f"/instances/{make(user, S.DESTROYED).pk}/wake", {"return_to": "detail"}, **HTMX)
    assert refused.status_code == 409 and "t wake “box”: it is destroyed" in refused.content.decode()


@pytest.mark.django_db
def test_the_page_shows_a_wakes_parts_and_restore_progress(browser, user):
    from apps.agents.models import AgentCommand

    instance = make(user, S.WAKING)
    now = timezone.now()
    command = AgentCommand.objects.create(instance=instance, kind="restore", actor="t",
                                          progress={"bytes": 300, "total_bytes": 1200})
    wake = Wake.objects.create(instance=instance, source="hibernated", actor="t", restore_command=command,
                               machine_ready_at=now, restore_started_at=now + timedelta(seconds=4))
    Wake.objects.filter(pk=wake.pk).update(requested_at=now - timedelta(seconds=20))
    # a fake snapshot reference is not needed for the timings; needs_restore follows the snapshot
    page = browser.get(f"/instances/{instance.pk}", **HTMX).content.decode()
    assert "Waking" in page and "machine 20.0 s" in page
    assert 'value="300" max="1200"' in page and "restoring 300" in page


@pytest.mark.django_db(transaction=True)
def test_the_idle_policy_form_saves_and_refuses_bad_input(browser, user, tasks):
    instance = make(user, S.RUNNING)
    reply = browser.post(f"/instances/{instance.pk}/idle-policy", {
        "auto_hibernate": "on", "idle_gpu_threshold": "12.5", "idle_window_s": "600",
        "idle_signals": ["jupyter"], "keep_awake_until": "2099-01-01T08:00"})
    assert reply.status_code == 302
    instance.refresh_from_db()
    assert (instance.idle_gpu_threshold, instance.idle_window_s, instance.idle_signals) == (12.5, 600, ["jupyter"])
    assert instance.keep_awake_until.year == 2099
    browser.post(f"/instances/{instance.pk}/idle-policy", {"default_signals": "on"})
    instance.refresh_from_db()
    assert instance.idle_signals is None and instance.auto_hibernate is False
    bad = browser.post(f"/instances/{instance.pk}/idle-policy", {"idle_window_s": "3"}, follow=True)
    assert "Idle policy not saved" in bad.content.decode()
    page = browser.get(f"/instances/{instance.pk}").content.decode()
    assert "Auto-hibernation" in page and 'name="idle_gpu_threshold"' in page


@pytest.mark.django_db
def test_strangers_cannot_wake_or_change_the_policy(user, other_user):
    instance = make(user)
    other = Client()
    other.force_login(other_user)
    assert other.post(f"/instances/{instance.pk}/wake").status_code == 404
    assert other.post(f"/instances/{instance.pk}/idle-policy", {"auto_hibernate": "on"}).status_code == 404
