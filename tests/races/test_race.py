"""The multi-start race against devcloud: real machines, real SSH handshakes, time-scaled.

Celery tasks are captured and run here (the `tasks` fixture); devcloud's machine_profiles knob
gives each machine of a race its own boot delay, SSH delay or fault, in creation order.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from apps.instances import services
from apps.instances.models import Instance, InstanceStatus
from apps.providers.ssh import ssh_handshake
from apps.races.models import CandidateOutcome, Race, RaceStatus

S = InstanceStatus
O = CandidateOutcome
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def racing(devcloud, settings):
    settings.DUMONT_RACE_POLL_INTERVAL = 0.05
    settings.DUMONT_RACE_ROUND_TIMEOUT = 30
    settings.DUMONT_RACE_LEASE = 10
    settings.DUMONT_RACE_BATCH_SIZE = 5
    settings.DUMONT_RACE_ROUNDS = 3
    return devcloud


def race_for(user, **overrides) -> Instance:
    fields = {"label": "train", "image": "img", "disk_gb": 16, "gpu_name": "RTX 4090", **overrides}
    return services.instance_create(user=user, actor="user:alice", strategy="race", **fields)


def reload(instance: Instance) -> Instance:
    return Instance.objects.get(pk=instance.pk)


def the_race(instance: Instance) -> Race:
    return Race.objects.get(instance=instance)


def machine_ids(devcloud) -> set[str]:
    return {str(m["id"]) for m in devcloud.machines()}


def test_race_starts_a_batch_and_keeps_only_the_winner(user, racing, tasks):
    instance = race_for(user)
    assert tasks.names() == ["races.run"]
    tasks.drain()

    instance, race = reload(instance), the_race(instance)
    assert instance.status == S.RUNNING, instance.status_reason
    assert race.status == RaceStatus.WON and race.cleaned_up_at is not None
    candidates = list(race.candidates.all())
    assert len(candidates) == 5 and {c.round for c in candidates} == {1}
    assert len({c.host_id for c in candidates}) == 5, "never two candidates on one host"
    winner = race.winner
    assert instance.machine_id == winner.machine_id and instance.machine_label == winner.label
    assert ssh_handshake(instance.ssh_host, instance.ssh_port, pinned_host_key=instance.ssh_host_key)
    assert machine_ids(racing) == {winner.machine_id}, "every loser is destroyed"
    losers = [c for c in candidates if c != winner]
    assert all(c.outcome == O.LOST and c.destroyed_at and c.billed_seconds > 0 for c in losers)
    assert race.loser_cost == sum((c.cost for c in losers), Decimal(0)) > 0
    assert race.loser_seconds == pytest.approx(sum(c.billed_seconds for c in losers))
    steps = list(instance.events.values_list("to_status", flat=True))
    assert steps == [S.REQUESTED, S.PROVISIONING, S.BOOTING, S.RUNNING]


def test_the_winner_is_the_first_ssh_ready_machine_not_the_first_running(user, racing, tasks, settings):
    settings.DUMONT_RACE_BATCH_SIZE = 2
    # One boots fast but holds SSH back; the other boots later and answers at once.
    racing.faults(machine_profiles=[{"boot_delay_s": 0.05, "ssh_delay_s": 1.5}, {"boot_delay_s": 0.6}])
    instance = race_for(user)
    tasks.drain()

    instance, race = reload(instance), the_race(instance)
    assert instance.status == S.RUNNING, instance.status_reason
    first_running = min(race.candidates.all(), key=lambda c: c.running_at)
    assert race.winner != first_running
    assert first_running.running_at < race.winner.running_at < race.winner.ssh_ready_at
    assert first_running.ssh_ready_at is None and first_running.outcome == O.LOST
    assert machine_ids(racing) == {race.winner.machine_id}


def test_a_round_that_times_out_is_destroyed_before_the_next_round(user, racing, tasks, settings):
    settings.DUMONT_RACE_BATCH_SIZE = 2
    settings.DUMONT_RACE_ROUND_TIMEOUT = 1.0
    racing.faults(machine_profiles=[{"stuck_loading": True}, {"stuck_loading": True}])
    instance = race_for(user)
    tasks.drain()

    instance, race = reload(instance), the_race(instance)
    assert instance.status == S.RUNNING, instance.status_reason
    first, second = race.candidates.filter(round=1), race.candidates.filter(round=2)
    assert [c.outcome for c in first] == [O.TIMED_OUT, O.TIMED_OUT]
    assert race.winner.round == 2
    second_started = min(c.create_requested_at for c in second)
    assert all(c.destroyed_at and c.destroyed_at <= second_started for c in first)
    assert not {c.host_id for c in first} & {c.host_id for c in second}, "a host tried is not tried again"
    assert machine_ids(racing) == {race.winner.machine_id}


def test_three_failed_rounds_fail_the_instance_with_a_reason_and_no_machine(user, racing, tasks, settings):
    settings.DUMONT_RACE_BATCH_SIZE = 2
    settings.DUMONT_RACE_ROUND_TIMEOUT = 0.8
    racing.faults(machine_profiles=[
        {"stuck_loading": True}, {"stuck_loading": True},  # round 1: never ready
        {"oci_error": True}, {"oci_error": True},  # round 2: failed starts, the round ends early
        {"exit_after_running": True, "exit_delay_s": 0}, {"stuck_loading": True},  # round 3
    ])
    instance = race_for(user)
    tasks.drain()

    instance, race = reload(instance), the_race(instance)
    assert instance.status == S.FAILED
    assert race.status == RaceStatus.FAILED and race.round == 3
    assert "no machine was ready: 6 machines tried in 3 rounds" in instance.status_reason
    assert "3 not ready within 0.8 s" in instance.status_reason
    assert "3 failed to start" in instance.status_reason
    assert "every machine was destroyed" in instance.status_reason
    oci = race.candidates.filter(round=2)
    assert all("OCI runtime create failed" in c.error for c in oci)
    assert all(c.destroyed_at for c in race.candidates.all())
    assert racing.machines() == []
    assert instance.events.last().to_status == S.FAILED


def test_a_create_reply_that_arrives_after_the_race_is_destroyed_on_arrival(user, racing, tasks, settings):
    settings.DUMONT_RACE_BATCH_SIZE = 2
    racing.faults(machine_profiles=[{"create_delay_s": 1.5}, {}])
    instance = race_for(user)
    tasks.drain()

    race = the_race(instance)
    assert reload(instance).status == S.RUNNING
    [late] = race.candidates.exclude(pk=race.winner_id)
    assert late.created_at > race.finished_at, "the reply came after the race was decided"
    assert late.outcome == O.LOST and late.destroyed_at >= late.created_at
    assert machine_ids(racing) == {race.winner.machine_id}


def test_offers_gone_and_lost_replies_do_not_stop_the_round(user, racing, tasks, settings):
    settings.DUMONT_RACE_BATCH_SIZE = 3
    racing.faults(vanish_offers=1, lose_create_reply=1, machine_profiles=[{"boot_delay_s": 1.0}, {}])
    instance = race_for(user)
    tasks.drain()

    race = the_race(instance)
    assert reload(instance).status == S.RUNNING
    outcomes = sorted(c.outcome for c in race.candidates.all())
    assert O.OFFER_GONE in outcomes and O.WON in outcomes
    lost_reply = [c for c in race.candidates.all() if "create reply lost" in c.error]
    assert lost_reply and all(c.machine_id for c in lost_reply), "found by its label"
    assert machine_ids(racing) == {race.winner.machine_id}


def test_no_matching_offer_fails_at_once(user, racing, tasks):
    instance = race_for(user, gpu_name="GTX 280")
    tasks.drain()
    instance = reload(instance)
    assert instance.status == S.FAILED
    assert instance.status_reason == "no offer matches 1× GTX 280"
    assert the_race(instance).candidates.count() == 0


def test_destroying_the_instance_takes_the_winner_with_it(user, racing, tasks):
    instance = race_for(user)
    tasks.drain()
    services.instance_destroy(instance=reload(instance), actor="user:alice")
    tasks.drain()
    race = the_race(instance)
    assert reload(instance).status == S.DESTROYED
    assert racing.machines() == []
    assert race.winner.destroyed_at is not None
