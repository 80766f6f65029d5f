"""Operators change an instance's idle policy in the admin, through the service."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from apps.instances.models import Instance, InstanceStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator() -> Client:
    admin_user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw")
    client = Client()
    client.force_login(admin_user)
    return client


def form_data(instance, **changes) -> dict:
    data = {"auto_hibernate": "on" if instance.auto_hibernate else "", "idle_gpu_threshold": "",
            "idle_window_s": "", "idle_signals": "null", "keep_awake_until_0": "", "keep_awake_until_1": "",
            **{f"{prefix}-TOTAL_FORMS": "0" for prefix in ("events", "wakes", "commands")},
            **{f"{prefix}-INITIAL_FORMS": "0" for prefix in ("events", "wakes", "commands")}}
    data.update(changes)
    return data


def test_the_idle_policy_is_edited_in_the_admin_with_an_event(operator, user):
    instance = Instance.objects.create(user=user, label="box", image="img", status=InstanceStatus.RUNNING)
    url = f"/admin/instances/instance/{instance.pk}/change/"
    reply = operator.post(url, form_data(instance, idle_gpu_threshold="20", idle_signals='["jupyter"]'))
    assert reply.status_code == 302, reply.content.decode()[:3000]
    instance.refresh_from_db()
    assert instance.idle_gpu_threshold == 20 and instance.idle_signals == ["jupyter"]
    assert instance.events.filter(actor="admin:ops", reason__startswith="idle policy").exists()

    refused = operator.post(url, form_data(instance, idle_signals='["mouse"]'))
    assert refused.status_code == 200 and "unknown signals mouse" in refused.content.decode()
    instance.refresh_from_db()
    assert instance.idle_signals == ["jupyter"]
