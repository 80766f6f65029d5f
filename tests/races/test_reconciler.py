"""The reconciler after a worker dies mid-race: stray machines go, foreign machines stay.

A worker kill is simulated by an exception that no handler catches, raised from the race loop
once its machines exist; the lease and deadline are then moved into the past, as time would.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.instances import services
from apps.instances.models import Instance, InstanceStatus
from apps.providers.base import OfferQuery
from apps.providers.registry import get_provider
from apps.races import engine
from apps.races.models import Race, RaceCandidate, RaceStatus, StrayMachine
from apps.races.reconciler import reconcile

S = InstanceStatus
pytestmark = pytest.mark.django_db(transaction=True)


class WorkerKilled(BaseException):
    """Nothing in the race loop catches it, as nothing runs after a SIGKILL."""


@pytest.fixture
def racing(devcloud, settings):
    settings.DUMONT_RACE_POLL_INTERVAL = 0.05
    settings.DUMONT_RACE_ROUND_TIMEOUT = 30
    settings.DUMONT_RACE_LEASE = 10
    settings.DUMONT_RACE_BATCH_SIZE = 3
    settings.DUMONT_RACE_ROUNDS = 3
    settings.DUMONT_RECONCILE_GRACE = 0
    return devcloud


def start_race(user) -> Instance:
    return services.instance_create(
        user=user, actor="user:alice", strategy="race", label="train", image="img", disk_gb=16,
        gpu_name="RTX 4090",
    )


def run_until_killed(race: Race, *, machines: int) -> None:
    """Drive the race until `machines` of its machines exist, then kill the loop."""
    step = engine.RaceRunner.step

    def step_then_die(self):
        more = step(self)
        if RaceCandidate.objects.filter(race=race).exclude(machine_id="").count() >= machines:
            raise WorkerKilled
        return more

    with pytest.MonkeyPatch.context() as patch, pytest.raises(WorkerKilled):
        patch.setattr(engine.RaceRunner, "step", step_then_die)
        engine.run_race(race.pk)


def time_passes(race: Race, *, past_deadline: bool) -> None:
    past = timezone.now() - timedelta(seconds=1)
    changes = {"lease_until": past}
    if past_deadline:
        changes["deadline_at"] = past
    Race.objects.filter(pk=race.pk).update(**changes)


def rent_outside_dumont(devcloud, label: str) -> str:
    """A machine on the same account that Dumont did not ask for (or not under this label)."""
    offer = get_provider("vast").search_offers(OfferQuery(gpu_name="RTX 3090"))[0]
    status, body = devcloud.api("PUT", f"/api/v0/asks/{offer.id}/", {"image": "img", "disk": 10, "label": label})
    assert status == 200, body
    return str(body["new_contract"])


def listed(devcloud) -> set[str]:
    return {str(m["id"]) for m in devcloud.machines()}


def test_a_race_whose_worker_died_is_ended_past_its_deadline_and_foreign_machines_stay(
    user, racing, tasks
):
    racing.faults(machine_profiles=[{"stuck_loading": True}] * 3)
    instance = start_race(user)
    race = Race.objects.get(instance=instance)
    run_until_killed(race, machines=3)
    raced = set(RaceCandidate.objects.filter(race=race).values_list("machine_id", flat=True))
    assert raced <= listed(racing) and len(raced) == 3
    foreign = {rent_outside_dumont(racing, "my-own-box"), rent_outside_dumont(racing, "dumont-not-ours")}

    time_passes(race, past_deadline=True)
    report = reconcile()

    assert report.races_ended == 1 and not report.errors
    race.refresh_from_db()
    instance = Instance.objects.get(pk=instance.pk)
    assert race.status == RaceStatus.FAILED
    assert instance.status == S.FAILED and "ran past its deadline" in instance.status_reason
    assert listed(racing) == foreign, "the race's machines are gone, the others untouched"


def test_a_race_whose_worker_died_in_time_is_resumed_by_another_worker(user, racing, tasks):
    instance = start_race(user)
    tasks.sent.clear()  # the first worker's task: it is the one that dies
    race = Race.objects.get(instance=instance)
    run_until_killed(race, machines=1)

    time_passes(race, past_deadline=False)
    report = reconcile()
    assert report.races_resumed == 1 and tasks.names() == ["races.run"]
    tasks.drain()

    race.refresh_from_db()
    assert race.status == RaceStatus.WON, race.result
    assert race.claims == 2
    assert Instance.objects.get(pk=instance.pk).status == S.RUNNING
    assert listed(racing) == {race.winner.machine_id}


def test_a_machine_orphaned_by_a_dead_worker_goes_after_the_grace_period(user, racing, tasks, settings):
    instance = start_race(user)
    tasks.drain()
    race = Race.objects.get(instance=instance)
    loser = race.candidates.exclude(pk=race.winner_id).first()
    # The create of a loser landed after its worker died: nobody will ever read its reply.
    orphan = rent_outside_dumont(racing, loser.label)
    unknown = rent_outside_dumont(racing, f"dumont-{uuid.uuid4()}")
    unlabelled = rent_outside_dumont(racing, "")
    settings.DUMONT_RECONCILE_GRACE = 60

    report = reconcile()
    assert report.strays_seen == 2 and report.strays_destroyed == 0
    assert {orphan, unknown} <= listed(racing)
    sightings = {s.machine_id: s for s in StrayMachine.objects.all()}
    assert set(sightings) == {orphan, unknown}
    assert "lost" in sightings[orphan].reason and "does not exist" in sightings[unknown].reason

    StrayMachine.objects.update(first_seen_at=timezone.now() - timedelta(seconds=61))
    report = reconcile()
    assert report.strays_destroyed == 2
    assert listed(racing) == {race.winner.machine_id, unlabelled}
    assert all(s.destroyed_at for s in StrayMachine.objects.all())


def test_machines_of_live_instances_and_races_are_left_alone(user, racing, tasks):
    single = services.instance_create(
        user=user, actor="user:alice", label="one", image="img", disk_gb=16, gpu_name="RTX 4090"
    )
    raced = start_race(user)
    tasks.drain()
    before = listed(racing)
    assert len(before) == 2

    report = reconcile()
    assert report.strays_seen == 0 and listed(racing) == before
    assert {Instance.objects.get(pk=i.pk).status for i in (single, raced)} == {S.RUNNING}
