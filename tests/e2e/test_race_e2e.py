"""A race through real Celery workers, one of them killed (SIGKILL) in the middle of it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from django.conf import settings as django_settings

from apps.races.models import Race, RaceCandidate
from apps.races.reconciler import reconcile

from .conftest import ROOT, _database_url, _wait_for_line, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

RACE_WINDOWS = {
    "DUMONT_AGENT_ENABLED": "false",
    "DUMONT_RACE_POLL_INTERVAL": "0.1",
    "DUMONT_RACE_LEASE": "1",
}


@pytest.fixture
def worker_env() -> dict[str, str]:
    return dict(RACE_WINDOWS)


def start_another_worker(devcloud, tmp_path) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "REDIS_URL": django_settings.CELERY_BROKER_URL,
        "VAST_API_URL": devcloud.url,
        "VAST_API_KEY": devcloud.api_key,
        "DUMONT_SSH_KEY_FILE": str(django_settings.DUMONT_SSH_KEY_FILE),
        "DUMONT_VAR_DIR": str(django_settings.VAR_DIR),
        **RACE_WINDOWS,
    }
    log_path = tmp_path / "worker2.log"
    with open(log_path, "w") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "dumont", "worker", "--pool", "threads", "--concurrency", "4",
             "--loglevel", "INFO", "--without-heartbeat", "--without-gossip", "--without-mingle", "-n", "second@%h"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    _wait_for_line(log_path, "ready.", worker, timeout=30)
    return worker


def test_a_race_survives_its_worker_being_killed_and_leaves_only_the_winner(
    api, devcloud, celery_worker, tmp_path, settings
):
    settings.DUMONT_RACE_BATCH_SIZE = 3  # the race row takes it from the process that creates it
    devcloud.faults(machine_profiles=[{"boot_delay_s": 1.5}] * 3)
    created = api.post("/api/v1/instances", {"label": "race-e2e", "gpu_name": "RTX 4090", "disk_gb": 16},
                       format="json")
    assert created.status_code == 202 and created.json()["start_strategy"] == "race"
    race = Race.objects.get(instance_id=created.json()["id"])

    wait_for(lambda: RaceCandidate.objects.filter(race=race).exclude(machine_id="").count() == 3,
             timeout=30, what="the race's three machines to be created")
    os.kill(celery_worker.pid, signal.SIGKILL)
    celery_worker.wait()

    second = start_another_worker(devcloud, tmp_path)
    try:
        wait_for(lambda: reconcile().races_resumed, timeout=10, what="the reconciler to hand the race on")
        body = wait_for(
            lambda: (b := api.get(f"/api/v1/instances/{race.instance_id}").json())["status"] in ("running", "failed")
            and b,
            timeout=30, what="the instance to settle",
        )
        assert body["status"] == "running", body["status_reason"]
        race.refresh_from_db()
        assert race.claims == 2, "the second worker resumed the race"
        winner = race.winner.machine_id
        wait_for(lambda: {str(m["id"]) for m in devcloud.machines()} == {winner}, timeout=10,
                 what="only the winner left")
        assert body["machine_id"] == winner
    finally:
        second.terminate()
        second.wait(timeout=15)
