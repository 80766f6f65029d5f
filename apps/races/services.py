"""Every write of a race. Nothing here talks to a provider or opens SSH (engine.py does that).

Each function is one short transaction on locked rows; the engine calls them before a provider
call (intent) and after it (result). Instance transitions go through the instance services, so
they carry their InstanceEvent and follow-up tasks like any other.

A create race starts when an instance is created with the "race" strategy (registered in
RacesConfig.ready()); a wake race when apps.hibernation wakes a hibernated instance. The
winner is handed over with `race_won`; losers' seconds are reported with `loser_billed`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from apps.instances import services as instance_services
from apps.instances.models import Instance, InstanceStatus
from apps.providers.base import Offer
from dumont.dispatch import enqueue
from dumont.errors import Conflict, IllegalTransition

from .models import CandidateOutcome, Race, RaceCandidate, RacePurpose, RaceStatus, candidate_label
from .signals import loser_billed, race_won

log = logging.getLogger(__name__)
S = InstanceStatus
O = CandidateOutcome

# The instance states in which a race of each purpose still has someone waiting for it.
LIVE_STATES = {
    RacePurpose.CREATE: frozenset({S.REQUESTED, S.PROVISIONING, S.BOOTING}),
    RacePurpose.WAKE: frozenset({S.WAKING}),
}


def race_start(*, instance: Instance, purpose: str) -> Race:
    """Record a race with the strategy in force and queue its worker once this commits."""
    rounds, timeout = settings.DUMONT_RACE_ROUNDS, settings.DUMONT_RACE_ROUND_TIMEOUT
    with transaction.atomic():
        Instance.objects.select_for_update().get(pk=instance.pk)
        if Race.objects.filter(instance=instance, status=RaceStatus.RUNNING).exists():
            raise Conflict("a race for this instance is already running", code="race_running")
        now = timezone.now()
        race = Race.objects.create(
            instance=instance,
            purpose=purpose,
            batch_size=settings.DUMONT_RACE_BATCH_SIZE,
            max_rounds=rounds,
            round_timeout_s=timeout,
            started_at=now,
            # Every round, one more for creates, searches and destroys, and a lease to notice.
            deadline_at=now + timedelta(seconds=(rounds + 1) * timeout + settings.DUMONT_RACE_LEASE),
        )
        enqueue("races.run", race.id)
    return race


# --- the worker's lease ------------------------------------------------------------------------


def race_claim(*, race_id) -> bool:
    """Take the race for this worker unless another one holds a live lease on it."""
    now = timezone.now()
    claimed = Race.objects.filter(
        Q(lease_until__isnull=True) | Q(lease_until__lt=now), pk=race_id, status=RaceStatus.RUNNING
    ).update(lease_until=now + timedelta(seconds=settings.DUMONT_RACE_LEASE), claims=F("claims") + 1)
    return claimed == 1


def race_renew(*, race_id) -> datetime:
    until = timezone.now() + timedelta(seconds=settings.DUMONT_RACE_LEASE)
    Race.objects.filter(pk=race_id).update(lease_until=until)
    return until


def race_release(*, race_id) -> None:
    Race.objects.filter(pk=race_id).update(lease_until=None)


# --- rounds ------------------------------------------------------------------------------------


def race_begin(*, race_id) -> None:
    """A create race takes its instance from requested to provisioning (a wake race is waking)."""
    race = Race.objects.select_related("instance").get(pk=race_id)
    if race.purpose != RacePurpose.CREATE or race.instance.status != S.REQUESTED:
        return
    try:
        instance_services.instance_transition(
            instance_id=race.instance_id,
            to=S.PROVISIONING,
            actor="system:race",
            reason=f"racing up to {race.batch_size} machines at once, {race.max_rounds} rounds",
            allowed_from=frozenset({S.REQUESTED}),
        )
    except IllegalTransition:
        pass  # destroyed before the race began: the race sees it and calls itself off


def race_begin_round(*, race_id, round: int, offers: list[Offer]) -> list[RaceCandidate]:
    """One candidate row per offer, committed before any create call is made."""
    with transaction.atomic():
        race = Race.objects.select_for_update().get(pk=race_id)
        if race.status != RaceStatus.RUNNING:
            return []
        now = timezone.now()
        race.round = round
        race.round_deadline_at = now + timedelta(seconds=race.round_timeout_s)
        race.save(update_fields=["round", "round_deadline_at"])
        candidates = []
        for slot, offer in enumerate(offers):
            candidate = RaceCandidate.objects.create(
                race=race, round=round, slot=slot, offer_id=offer.id, host_id=offer.machine_id,
                gpu_name=offer.gpu_name, price_per_hour=offer.price_per_hour, location=offer.location,
                create_requested_at=now,
            )
            candidate.label = candidate_label(race.instance_id, candidate.pk)
            candidate.save(update_fields=["label"])
            candidates.append(candidate)
        instance_services.instance_set_reason(
            instance_id=race.instance_id,
            reason=f"race round {round} of {race.max_rounds}: starting {len(offers)} machines")
    return candidates


def race_end_round(*, race_id, round: int) -> int:
    """The round's time is up: every candidate of it still in play is abandoned."""
    return _abandon(race_id, O.TIMED_OUT, Q(round=round), error="not ready before the round ended")


def race_time_out(*, race_id, error: str) -> int:
    """The race ran past its deadline: every candidate still in play is abandoned."""
    return _abandon(race_id, O.TIMED_OUT, error=error)


# --- candidates --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arrival:
    candidate: RaceCandidate
    destroy: bool  # the race no longer wants it: destroy on arrival


def candidate_record_created(*, candidate_id, machine_id: str) -> Arrival:
    """The provider named the machine (a create reply, or found by its label)."""
    with transaction.atomic():
        candidate = RaceCandidate.objects.select_for_update().select_related("race").get(pk=candidate_id)
        if candidate.machine_id and candidate.machine_id != machine_id:
            log.error("candidate %s: machine %s, and now %s with the same label", candidate.pk,
                      candidate.machine_id, machine_id)
        if not candidate.machine_id:
            candidate.machine_id = machine_id
            candidate.created_at = timezone.now()
        unwanted = bool(candidate.outcome) or candidate.race.status != RaceStatus.RUNNING
        if unwanted and not candidate.outcome:
            candidate.outcome = O.CANCELLED
        if unwanted and not candidate.destroy_requested_at and not candidate.destroyed_at:
            candidate.destroy_requested_at = timezone.now()
        candidate.save()
    if not unwanted:
        _first_machine_boots(candidate.race, machine_id)
    return Arrival(candidate=candidate, destroy=unwanted and not candidate.destroyed_at)


def _first_machine_boots(race: Race, machine_id: str) -> None:
    """A create race's instance is booting once any of its machines exists."""
    if race.purpose != RacePurpose.CREATE:
        return
    try:
        instance_services.instance_transition(
            instance_id=race.instance_id,
            to=S.BOOTING,
            actor="system:race",
            reason=f"race round {race.round}: machine {machine_id} created, waiting for SSH",
            allowed_from=frozenset({S.PROVISIONING}),
        )
    except IllegalTransition:
        pass  # already booting (another candidate was first), or the instance moved on


def candidate_record_running(*, candidate_id, ssh_host: str, ssh_port: int) -> None:
    RaceCandidate.objects.filter(pk=candidate_id, running_at__isnull=True).update(running_at=timezone.now())
    RaceCandidate.objects.filter(pk=candidate_id).update(ssh_host=ssh_host, ssh_port=ssh_port)


def candidate_fail(*, candidate_id, outcome: str, error: str) -> bool:
    """The candidate will not win (exited, OCI error, offer gone, API error): out of the race,
    destroyed if it has a machine. False when it was already out."""
    now = timezone.now()
    return bool(
        RaceCandidate.objects.filter(pk=candidate_id, outcome="").update(
            outcome=outcome, error=error[:2000], destroy_requested_at=now
        )
    )


def candidate_note_error(*, candidate_id, error: str) -> None:
    """Something went wrong that may still come right (a lost create reply)."""
    RaceCandidate.objects.filter(pk=candidate_id).update(error=error[:2000])


def candidate_record_destroyed(*, candidate_id) -> None:
    """The provider confirmed the machine gone: bill its seconds to the race if it lost."""
    with transaction.atomic():
        candidate = RaceCandidate.objects.select_for_update().select_related("race").get(pk=candidate_id)
        if candidate.destroyed_at:
            return
        candidate.destroyed_at = timezone.now()
        candidate.billed_seconds = candidate.billed_until(candidate.destroyed_at)
        candidate.cost = _cost(candidate.price_per_hour, candidate.billed_seconds)
        candidate.save(update_fields=["destroyed_at", "billed_seconds", "cost"])
        if candidate.race.winner_id != candidate.pk:
            Race.objects.filter(pk=candidate.race_id).update(
                loser_seconds=F("loser_seconds") + candidate.billed_seconds,
                loser_cost=F("loser_cost") + candidate.cost,
            )
            if candidate.billed_seconds:
                # Dated at the race's start: a create race's losers are boot cost on both sides of
                # the savings report, a wake race's are a cost of hibernating.
                loser_billed.send(Race, instance=candidate.race.instance, seconds=candidate.billed_seconds,
                                  price_per_hour=candidate.price_per_hour or 0, at=candidate.race.started_at)


def candidate_machine_gone(*, instance_id, machine_id: str) -> None:
    """The instance's own machine (a race winner) was destroyed with the instance."""
    for candidate_id in RaceCandidate.objects.filter(
        race__instance_id=instance_id, machine_id=machine_id, destroyed_at__isnull=True
    ).values_list("pk", flat=True):
        candidate_record_destroyed(candidate_id=candidate_id)


def candidate_record_destroy_failed(*, candidate_id, error: str) -> None:
    RaceCandidate.objects.filter(pk=candidate_id).update(
        destroy_attempts=F("destroy_attempts") + 1, error=f"destroy failed: {error}"[:2000]
    )


def _cost(price_per_hour: Decimal, seconds: float) -> Decimal:
    return (price_per_hour * Decimal(str(round(seconds, 3))) / 3600).quantize(Decimal("0.000001"))


def _abandon(race_id, outcome: str, where: Q = Q(), *, error: str = "") -> int:
    """Take every candidate still in play out of the race; their machines are to be destroyed."""
    changes = {"outcome": outcome, "destroy_requested_at": timezone.now()}
    if error:
        changes["error"] = error
    return RaceCandidate.objects.filter(where, race_id=race_id, outcome="").update(**changes)


# --- the end -----------------------------------------------------------------------------------


def race_record_winner(*, race_id, candidate_id, host_key: str, ready_at: datetime) -> bool:
    """The first candidate running with a completed SSH handshake wins; everyone else loses.

    False when the race was already decided or its instance moved on (then nobody wins).
    """
    with transaction.atomic():
        race = Race.objects.select_for_update().get(pk=race_id)
        candidate = RaceCandidate.objects.select_for_update().get(pk=candidate_id)
        if race.status != RaceStatus.RUNNING or candidate.outcome:
            return False
        try:
            _record_instance_running(race, candidate, host_key)
        except IllegalTransition as exc:
            _finish(race, RaceStatus.CANCELLED, f"the instance moved on ({exc.extra['status']}) before a winner")
            _abandon(race.pk, O.CANCELLED)
            return False
        now = timezone.now()
        candidate.outcome, candidate.ssh_ready_at = O.WON, ready_at
        candidate.save(update_fields=["outcome", "ssh_ready_at"])
        race.winner, race.ready_at, race.running_at = candidate, ready_at, now
        seconds = (ready_at - race.started_at).total_seconds()
        _finish(race, RaceStatus.WON, f"machine {candidate.machine_id} (round {candidate.round}, slot "
                f"{candidate.slot}) ready over SSH after {seconds:.1f} s")
        _abandon(race.pk, O.LOST)
        race_won.send(Race, race=race, instance=Instance.objects.get(pk=race.instance_id))
    return True


def _record_instance_running(race: Race, candidate: RaceCandidate, host_key: str) -> None:
    """The winner becomes the instance's machine (the agent is installed on it: machine_ready).
    A create race's instance is running; a wake race's stays `waking` until the agent has
    restored the snapshot (apps.hibernation, on `race_won`)."""
    waking = race.purpose == RacePurpose.WAKE
    instance_services.instance_adopt_machine(
        instance_id=race.instance_id,
        to=S.WAKING if waking else S.RUNNING,
        actor="system:race",
        reason=(f"won the race: SSH ready at {candidate.ssh_host}:{candidate.ssh_port}"
                + ("; installing the agent to restore the workspace" if waking else "")),
        allowed_from=LIVE_STATES[race.purpose],
        ssh_host=candidate.ssh_host,
        ssh_port=candidate.ssh_port,
        ssh_host_key=host_key,
        machine_id=candidate.machine_id,
        provider_label=candidate.label,
        offer_id=candidate.offer_id,
        host_id=candidate.host_id,
        machine_gpu_name=candidate.gpu_name,
        price_per_hour=candidate.price_per_hour,
        location=candidate.location,
        create_attempted_at=candidate.create_requested_at,
    )


def race_fail(*, race_id, reason: str) -> None:
    """No machine was ready: the race and (when it still waits for one) its instance fail."""
    with transaction.atomic():
        race = Race.objects.select_for_update().get(pk=race_id)
        if race.status != RaceStatus.RUNNING:
            return
        _abandon(race.pk, O.CANCELLED)
        _finish(race, RaceStatus.FAILED, reason)
        try:
            instance_services.instance_transition(
                instance_id=race.instance_id, to=S.FAILED, actor="system:race", reason=reason,
                allowed_from=LIVE_STATES[race.purpose], deadline_at=None,
            )
        except IllegalTransition:
            pass  # the instance moved on by itself (destroyed): its failure is no news


def race_cancel(*, race_id, reason: str) -> bool:
    """The instance no longer waits for this race (destroyed, failed): every candidate goes."""
    with transaction.atomic():
        race = Race.objects.select_for_update().get(pk=race_id)
        if race.status != RaceStatus.RUNNING:
            return False
        _finish(race, RaceStatus.CANCELLED, reason)
        _abandon(race.pk, O.CANCELLED)
    return True


def _finish(race: Race, status: str, result: str) -> None:
    race.status, race.result, race.finished_at = status, result, timezone.now()
    race.save()


def race_record_cleaned_up(*, race_id) -> None:
    """Every machine but the winner is confirmed destroyed."""
    Race.objects.filter(pk=race_id, cleaned_up_at__isnull=True).update(
        cleaned_up_at=timezone.now(), lease_until=None
    )


def races_call_off(*, instance_id) -> None:
    """The instance is being destroyed: its running races are cancelled (their workers destroy
    what they started, creates still in flight on arrival), and machines its races still hold
    are destroyed once this commits (reconciler.destroy_leftovers)."""
    for race_id in Race.objects.filter(instance_id=instance_id, status=RaceStatus.RUNNING).values_list("pk", flat=True):
        race_cancel(race_id=race_id, reason="the instance is being destroyed")
    if leftovers(instance_id=instance_id).exists():
        enqueue("races.destroy_leftovers", instance_id)


def leftovers(*, instance_id) -> QuerySet[RaceCandidate]:
    """Machines of the instance's races that are to be destroyed and are not confirmed gone."""
    return RaceCandidate.objects.filter(
        race__instance_id=instance_id, destroyed_at__isnull=True, destroy_requested_at__isnull=False
    ).exclude(machine_id="")
