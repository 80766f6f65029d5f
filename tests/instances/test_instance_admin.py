import pytest
from django.contrib.auth import get_user_model

from apps.instances.models import Instance, InstanceStatus

S = InstanceStatus


@pytest.fixture
def admin_client(client, db):
    admin = get_user_model().objects.create_superuser("ops", password="operator secret")
    client.force_login(admin)
    return client


def _run_action(admin_client, action, *instances):
    return admin_client.post(
        "/admin/instances/instance/",
        {"action": action, "_selected_action": [str(i.pk) for i in instances]},
        follow=True,
    )


def test_admin_actions_go_through_the_services_and_log_the_operator(admin_client, user):
    running = Instance.objects.create(user=user, label="a", image="i", status=S.RUNNING)
    paused = Instance.objects.create(user=user, label="b", image="i", status=S.PAUSED)
    _run_action(admin_client, "action_pause", running)
    _run_action(admin_client, "action_wake", paused)
    running.refresh_from_db()
    paused.refresh_from_db()
    assert (running.status, paused.status) == (S.STOPPING, S.WAKING)
    assert running.events.get().actor == "admin:ops"


def test_admin_action_refused_by_the_state_machine_is_reported_not_applied(admin_client, user):
    paused = Instance.objects.create(user=user, label="b", image="i", status=S.PAUSED)
    response = _run_action(admin_client, "action_pause", paused)
    assert "cannot go from paused to stopping" in response.content.decode()
    paused.refresh_from_db()
    assert paused.status == S.PAUSED


def test_admin_lists_filters_and_searches_instances(admin_client, user):
    Instance.objects.create(user=user, label="findme", image="i", status=S.RUNNING, machine_id="4242")
    page = admin_client.get("/admin/instances/instance/?q=4242&status__exact=running").content.decode()
    assert "findme" in page
    assert admin_client.get("/admin/instances/instanceevent/").status_code == 200
