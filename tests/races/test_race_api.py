"""The strategy option of create, the race in the instance API, the race panel page and admin."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from apps.instances import services
from apps.instances.models import Instance, StartStrategy
from apps.providers.base import Offer
from apps.races.models import Race, RaceStatus
from apps.races.offers import choose_offers

CREATE = {"label": "train", "gpu_name": "RTX 4090", "disk_gb": 16}


def test_create_races_by_default_for_a_gpu_spec(api, tasks, settings, django_capture_on_commit_callbacks):
    settings.DUMONT_START_STRATEGY = "race"
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/v1/instances", CREATE, format="json")
    assert response.status_code == 202
    assert response.json()["start_strategy"] == "race"
    assert tasks.names() == ["races.run"]
    race = Race.objects.get(instance_id=response.json()["id"])
    assert (race.status, race.purpose, race.batch_size, race.max_rounds) == (RaceStatus.RUNNING, "create", 5, 3)


def test_create_with_strategy_single_rents_one_machine(api, tasks, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/v1/instances", {**CREATE, "strategy": "single"}, format="json")
    assert response.status_code == 202 and response.json()["start_strategy"] == "single"
    assert tasks.names() == ["instances.provision"]
    assert not Race.objects.exists()


def test_a_chosen_offer_is_started_alone_and_cannot_race(api, tasks):
    alone = api.post("/api/v1/instances", {"label": "x", "offer_id": "123"}, format="json")
    assert alone.status_code == 202 and alone.json()["start_strategy"] == "single"
    refused = api.post("/api/v1/instances", {"label": "x", "offer_id": "123", "strategy": "race"}, format="json")
    assert refused.status_code == 400 and "race needs a GPU spec" in refused.json()["detail"]
    bad = api.post("/api/v1/instances", {**CREATE, "strategy": "fastest"}, format="json")
    assert bad.status_code == 400 and "strategy" in bad.json()["detail"]


def test_choose_offers_takes_the_cheapest_one_per_host_and_skips_hosts_tried():
    def offer(ask: str, host: str, price: str) -> Offer:
        return Offer(id=ask, machine_id=host, gpu_name="RTX 4090", num_gpus=1, gpu_ram_gb=24, price_per_hour=price,
                     reliability=0.99, inet_down_mbps=900, inet_up_mbps=900, location="", disk_space_gb=100,
                     verified=True)

    offers = [offer(a, h, Decimal(p)) for a, h, p in
              [("1", "h1", "0.50"), ("2", "h1", "0.30"), ("3", "h2", "0.40"), ("4", "h3", "0.35"), ("5", "h4", "0.20")]]
    assert [o.id for o in choose_offers(offers, count=3)] == ["5", "2", "4"]
    assert [o.id for o in choose_offers(offers, count=5, exclude_hosts=["h4", "h1"])] == ["4", "3"]


# --- the race in the API and on the page ----------------------------------------------------------


@pytest.fixture
def won_race(user, devcloud, tasks, settings):
    settings.DUMONT_RACE_POLL_INTERVAL = 0.05
    settings.DUMONT_RACE_BATCH_SIZE = 3
    instance = services.instance_create(
        user=user, actor="user:alice", strategy=StartStrategy.RACE, label="box", image="img", disk_gb=16,
        gpu_name="RTX 4090",
    )
    tasks.drain()
    return Instance.objects.get(pk=instance.pk)


@pytest.mark.django_db(transaction=True)
def test_instance_detail_api_shows_the_race_and_its_candidates(api, won_race):
    body = api.get(f"/api/v1/instances/{won_race.id}").json()
    race = body["race"]
    assert race["status"] == "won" and race["time_to_ready_s"] > 0
    assert len(race["candidates"]) == 3
    phases = sorted(c["phase"] for c in race["candidates"])
    assert phases == ["destroyed", "destroyed", "ready"]
    assert body["machine_label"] in {c["label"] for c in race["candidates"]}


@pytest.mark.django_db(transaction=True)
def test_race_panel_page_shows_each_candidate_and_stops_polling_once_clean(user, won_race):
    browser = Client()
    browser.force_login(user)
    detail = browser.get(reverse("instances:detail", args=[won_race.id])).content.decode()
    assert 'id="race-panel"' in detail and "Start race" in detail
    panel = browser.get(reverse("instances:race", args=[won_race.id]), HTTP_HX_REQUEST="true")
    assert panel.status_code == 286, "finished and cleaned up: htmx stops polling"
    text = panel.content.decode()
    assert text.count("<tr") == 4 and "won" in text and "lost (another was ready first)" in text


@pytest.mark.django_db
def test_race_panel_page_is_only_for_the_owner(user, other_user):
    instance = Instance.objects.create(user=user, label="box", image="img", gpu_name="RTX 4090")
    url = reverse("instances:race", args=[instance.id])
    assert Client().get(url).status_code == 302  # to the login page
    stranger = Client()
    stranger.force_login(other_user)
    assert stranger.get(url).status_code == 404


@pytest.mark.django_db(transaction=True)
def test_admin_lists_races_and_candidates(won_race):
    admin = get_user_model().objects.create_superuser("root", password="pw")
    client = Client()
    client.force_login(admin)
    race = Race.objects.get(instance=won_race)
    for url in (reverse("admin:races_race_changelist"), reverse("admin:races_racecandidate_changelist"),
                reverse("admin:races_race_change", args=[race.pk]),
                reverse("admin:races_straymachine_changelist")):
        assert client.get(url).status_code == 200, url
    listing = client.get(reverse("admin:races_racecandidate_changelist")).content.decode()
    assert race.winner.label in listing
