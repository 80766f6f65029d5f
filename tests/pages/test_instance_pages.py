"""The server-rendered instance pages: access, forms, actions, and htmx polling."""

from __future__ import annotations

import html
import re

import pytest
from django.contrib.staticfiles import finders
from django.urls import reverse

from apps.instances.models import Instance, InstanceEvent, InstanceStatus

S = InstanceStatus
HTMX = {"HTTP_HX_REQUEST": "true"}
VALID_CREATE = {
    "label": "train-llm",
    "gpu_name": "RTX 4090",
    "num_gpus": "2",
    "max_price_per_hour": "0.45",
    "image": "pytorch/pytorch:latest",
    "disk_gb": "40",
}


def make_instance(user, status=S.RUNNING, label="box", **fields) -> Instance:
    return Instance.objects.create(
        user=user, label=label, image="img", gpu_name="RTX 4090", status=status, **fields
    )


def text_of(response) -> str:
    """The body as a reader sees it: templates escape apostrophes in messages."""
    return html.unescape(response.content.decode())


def action_url(action: str, instance: Instance) -> str:
    return reverse(f"instances:{action}", args=[instance.id])


# --- access -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["instances:list", "instances:create"])
def test_anonymous_is_sent_to_login(client, db, name):
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login") + "?next=")


def test_anonymous_action_is_sent_to_login_and_changes_nothing(client, user):
    instance = make_instance(user)
    response = client.post(action_url("pause", instance))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    instance.refresh_from_db()
    assert instance.status == S.RUNNING


def test_login_page_logs_in_and_lands_on_the_list(client, user):
    page = client.get(reverse("login"))
    assert page.status_code == 200
    response = client.post(
        reverse("login"), {"username": "alice", "password": "correct horse battery"}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("instances:list")


def test_logout_is_a_post_form_in_the_top_bar(browser):
    page = browser.get(reverse("instances:list")).content.decode()
    assert re.search(rf'<form[^>]*method="post"[^>]*action="{reverse("logout")}"', page)
    browser.post(reverse("logout"))
    assert browser.get(reverse("instances:list")).status_code == 302


def test_list_shows_only_own_instances(browser, user, other_user):
    make_instance(user, label="mine-4090")
    make_instance(other_user, label="theirs-a100")
    page = browser.get(reverse("instances:list")).content.decode()
    assert "mine-4090" in page
    assert "theirs-a100" not in page


@pytest.mark.parametrize(
    "method,name",
    [("get", "detail"), ("get", "row"), ("post", "pause"), ("post", "resume"), ("post", "destroy")],
)
def test_other_users_instance_is_404_and_untouched(browser, other_user, method, name):
    theirs = make_instance(other_user)
    response = getattr(browser, method)(action_url(name, theirs))
    assert response.status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == S.RUNNING
    assert not theirs.events.exists()


# --- list ---------------------------------------------------------------------------------------


def test_list_hides_destroyed_unless_asked(browser, user):
    make_instance(user, label="alive-one")
    make_instance(user, status=S.DESTROYED, label="gone-one")
    default = browser.get(reverse("instances:list")).content.decode()
    assert "alive-one" in default and "gone-one" not in default
    shown = browser.get(reverse("instances:list"), {"show_destroyed": "on"}).content.decode()
    assert "alive-one" in shown and "gone-one" in shown


def test_list_filters_by_status(browser, user):
    make_instance(user, label="running-one")
    make_instance(user, status=S.PAUSED, label="paused-one")
    make_instance(user, status=S.DESTROYED, label="gone-one")
    paused = browser.get(reverse("instances:list"), {"status": "paused"}).content.decode()
    assert "paused-one" in paused and "running-one" not in paused
    destroyed = browser.get(reverse("instances:list"), {"status": "destroyed"}).content.decode()
    assert "gone-one" in destroyed and "running-one" not in destroyed


def test_list_with_unknown_status_shows_everything_and_says_why(browser, user):
    make_instance(user, label="running-one")
    response = browser.get(reverse("instances:list"), {"status": "sleepy"})
    assert response.status_code == 200
    assert "running-one" in response.content.decode()
    assert response.context["filters"].errors["status"]


def test_list_answers_htmx_with_filters_and_table_only(browser, user):
    make_instance(user, label="running-one")
    response = browser.get(reverse("instances:list"), {"status": "running"}, **HTMX)
    body = response.content.decode()
    assert '<div id="instance-listing">' in body
    assert "<html" not in body and "running-one" in body
    assert '<option value="running" selected>' in body, "the filter is rendered as applied"


def test_row_offers_the_actions_its_state_allows(browser, user):
    running = make_instance(user, label="r")
    paused = make_instance(user, status=S.PAUSED, label="p")
    destroying = make_instance(user, status=S.DESTROYING, label="d")
    page = browser.get(reverse("instances:list")).content.decode()
    assert action_url("pause", running) in page and action_url("wake", running) not in page
    assert action_url("wake", paused) in page and action_url("pause", paused) not in page
    assert action_url("destroy", running) in page and action_url("destroy", paused) in page
    assert action_url("destroy", destroying) not in page


def test_destroy_button_asks_for_confirmation_and_targets_its_row(browser, user):
    instance = make_instance(user)
    page = browser.get(reverse("instances:list")).content.decode()
    form = re.search(rf'<form[^>]*action="{action_url("destroy", instance)}"[^>]*>', page, re.S)
    assert form, "destroy form missing"
    assert 'method="post"' in form.group(0)
    assert "hx-confirm=" in form.group(0)
    assert 'hx-target="closest tr"' in form.group(0)
    assert 'hx-swap="outerHTML"' in form.group(0)


# --- create -------------------------------------------------------------------------------------


def test_create_form_prefills_the_default_image(browser):
    from apps.web.serializers import DEFAULT_IMAGE

    page = browser.get(reverse("instances:create")).content.decode()
    assert f'value="{DEFAULT_IMAGE}"' in page
    assert '<datalist id="gpu-names">' in page


def test_create_makes_a_requested_instance_with_an_event(browser, user):
    response = browser.post(reverse("instances:create"), VALID_CREATE)
    instance = Instance.objects.get(user=user)
    assert response.status_code == 302
    assert response["Location"] == reverse("instances:detail", args=[instance.id])
    assert instance.status == S.REQUESTED
    assert (instance.label, instance.gpu_name, instance.num_gpus, instance.disk_gb) == (
        "train-llm", "RTX 4090", 2, 40
    )
    assert str(instance.max_price_per_hour) == "0.4500"
    event = InstanceEvent.objects.get(instance=instance)
    assert (event.to_status, event.actor) == (S.REQUESTED, "user:alice")
    assert instance.start_strategy == "race"  # DUMONT_START_STRATEGY, when the form names none


def test_create_offers_race_or_single_and_records_the_choice(browser, user):
    page = browser.get(reverse("instances:create")).content.decode()
    assert 'name="strategy" value="race"' in page and 'value="single"' in page
    browser.post(reverse("instances:create"), {**VALID_CREATE, "strategy": "single"})
    assert Instance.objects.get(user=user).start_strategy == "single"
    bad = browser.post(reverse("instances:create"), {**VALID_CREATE, "label": "x", "strategy": "lottery"})
    assert bad.status_code == 200 and "strategy" in bad.context["form"].errors


def test_create_with_small_disk_and_no_gpu_shows_errors_and_creates_nothing(browser):
    response = browser.post(reverse("instances:create"), {**VALID_CREATE, "disk_gb": "4", "gpu_name": ""})
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert set(errors) == {"disk_gb", "gpu_name"}
    body = response.content.decode()
    assert "greater than or equal to 8" in body
    assert 'value="train-llm"' in body, "the user's input is kept"
    assert not Instance.objects.exists()


# --- actions ------------------------------------------------------------------------------------


def test_pause_of_running_instance_stops_it_and_redirects_with_a_message(browser, user):
    instance = make_instance(user)
    response = browser.post(action_url("pause", instance), follow=True)
    instance.refresh_from_db()
    assert instance.status == S.STOPPING
    assert instance.events.get().actor == "user:alice"
    assert response.redirect_chain == [(reverse("instances:list"), 302)]
    assert "Pausing “box”." in response.content.decode()


def test_pause_from_detail_page_redirects_back_to_it(browser, user):
    instance = make_instance(user)
    response = browser.post(action_url("pause", instance), {"return_to": "detail"})
    assert response["Location"] == reverse("instances:detail", args=[instance.id])


def test_pause_of_paused_instance_is_refused_with_a_message(browser, user):
    instance = make_instance(user, status=S.PAUSED)
    response = browser.post(action_url("pause", instance), follow=True)
    instance.refresh_from_db()
    assert instance.status == S.PAUSED
    assert not instance.events.exists()
    assert "Can't pause “box”: it is paused." in text_of(response)


def test_htmx_pause_answers_with_the_updated_row(browser, user):
    instance = make_instance(user)
    response = browser.post(action_url("pause", instance), **HTMX)
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith(f'<tr id="instance-{instance.id}"')
    assert "stopping" in body
    assert "hx-trigger=\"every 2s\"" in body, "a stopping row keeps watching itself"


def test_htmx_pause_of_paused_instance_is_409_with_the_row_and_a_note(browser, user):
    instance = make_instance(user, status=S.PAUSED)
    response = browser.post(action_url("pause", instance), **HTMX)
    body = text_of(response)
    assert response.status_code == 409
    assert f'<tr id="instance-{instance.id}"' in body
    assert "Can't pause “box”: it is paused." in body
    instance.refresh_from_db()
    assert instance.status == S.PAUSED


def test_htmx_action_from_detail_answers_with_the_status_fragment(browser, user):
    instance = make_instance(user)
    response = browser.post(action_url("destroy", instance), {"return_to": "detail"}, **HTMX)
    body = response.content.decode()
    assert body.lstrip().startswith('<section id="instance-status"')
    assert "destroy requested" in body, "the timeline shows the new event"
    instance.refresh_from_db()
    assert instance.status == S.DESTROYING


def test_resume_of_paused_instance_wakes_it(browser, user):
    instance = make_instance(user, status=S.PAUSED)
    browser.post(action_url("resume", instance))
    instance.refresh_from_db()
    assert instance.status == S.WAKING


def test_actions_refuse_get(browser, user):
    instance = make_instance(user)
    assert browser.get(action_url("pause", instance)).status_code == 405


# --- polling ------------------------------------------------------------------------------------


def test_row_of_settled_instance_answers_286_without_polling(browser, user):
    instance = make_instance(user, status=S.RUNNING)
    response = browser.get(action_url("row", instance), **HTMX)
    assert response.status_code == 286
    body = response.content.decode()
    assert f'<tr id="instance-{instance.id}"' in body
    assert "hx-trigger" not in body.split(">", 1)[0]


def test_row_of_unsettled_instance_answers_200_and_keeps_polling(browser, user):
    instance = make_instance(user, status=S.BOOTING)
    response = browser.get(action_url("row", instance), **HTMX)
    assert response.status_code == 200
    row_tag = response.content.decode().split(">", 1)[0]
    assert f'hx-get="{action_url("row", instance)}"' in row_tag
    assert 'hx-trigger="every 2s"' in row_tag
    assert 'hx-swap="outerHTML"' in row_tag


def test_detail_shows_ssh_command_and_timeline(browser, user):
    instance = make_instance(user, ssh_host="203.0.113.7", ssh_port=40022, machine_id="m-77")
    InstanceEvent.objects.create(
        instance=instance, actor="system:watch", from_status=S.BOOTING, to_status=S.RUNNING,
        reason="SSH ready at 203.0.113.7:40022",
    )
    page = browser.get(reverse("instances:detail", args=[instance.id])).content.decode()
    assert "ssh -p 40022 root@203.0.113.7" in page
    assert "SSH ready at 203.0.113.7:40022" in page and "system:watch" in page
    assert "m-77" in page


def test_detail_status_fragment_polls_until_settled(browser, user):
    instance = make_instance(user, status=S.WAKING)
    url = reverse("instances:detail", args=[instance.id])
    waking = browser.get(url, **HTMX)
    assert waking.status_code == 200
    assert waking.content.decode().lstrip().startswith('<section id="instance-status"')
    assert 'hx-trigger="every 2s"' in waking.content.decode()
    Instance.objects.filter(pk=instance.pk).update(status=S.RUNNING)
    running = browser.get(url, **HTMX)
    assert running.status_code == 286
    assert "hx-trigger" not in running.content.decode().split(">", 1)[0]


# --- base page ----------------------------------------------------------------------------------


def test_base_page_loads_htmx_2_locally_and_no_external_script(browser):
    page = browser.get(reverse("instances:list")).content.decode()
    sources = re.findall(r'<script[^>]*\bsrc="([^"]+)"', page)
    assert "/static/django_htmx/htmx-2.min.js" in sources
    assert not [src for src in sources if re.match(r"(https?:)?//", src)]
    htmx = finders.find("django_htmx/htmx-2.min.js")
    assert htmx and 'version:"2.' in open(htmx).read()


def test_base_page_sends_csrf_token_with_htmx_requests(browser):
    response = browser.get(reverse("instances:list"))
    token = response.context["csrf_token"]
    assert f'hx-headers=\'{{"X-CSRFToken": "{token}"}}\'' in response.content.decode()
