"""The periodic sweep (Celery beat) that keeps a crash from leaking machines or hanging a race.

1. Races whose worker died (lease expired) are handed to a new worker, or, past their deadline,
   ended here: their machines destroyed and the race failed with a reason. (Single starts,
   stops and destroys whose task died are sent again by apps.instances' own periodic task.)
2. Every provider's machine list is paged through and each machine with a Dumont label is
   matched to its Instance or RaceCandidate. One that no live instance or race owns is recorded
   as a StrayMachine and destroyed once it has been seen for the grace period. Machines without
   a Dumont label were not made by Dumont and are never touched.

`destroy_leftovers` is not periodic: a destroyed instance's races hand it their machines.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Q
from django.utils import timezone

from apps.instances.models import Instance, InstanceStatus
from apps.providers.base import Machine, Provider, ProviderError
from apps.providers.registry import UnknownProvider, get_provider
from dumont.dispatch import send

from . import services
from .engine import run_race
from .models import LABEL_PATTERN, Race, RaceCandidate, RaceStatus, StrayMachine

log = logging.getLogger(__name__)
S = InstanceStatus


@dataclass
class Report:
    races_resumed: int = 0
    races_ended: int = 0
    machines_seen: int = 0
    strays_seen: int = 0
    strays_destroyed: int = 0
    errors: list[str] = field(default_factory=list)


def reconcile() -> Report:
    report = Report()
    reconcile_races(report)
    for name in _provider_names():
        try:
            provider = get_provider(name)
        except (ImproperlyConfigured, UnknownProvider) as exc:
            report.errors.append(f"{name}: {exc}")
            continue
        try:
            sweep(provider, report)
        except ProviderError as exc:
            log.warning("reconciler: listing %s failed: %s", name, exc)
            report.errors.append(f"{name}: {exc}")
    return report


def _provider_names() -> list[str]:
    names = set(Instance.objects.values_list("provider", flat=True).distinct())
    return sorted(names | {settings.DUMONT_PROVIDER})


# --- races whose worker died ---------------------------------------------------------------------


def reconcile_races(report: Report) -> None:
    now = timezone.now()
    lease = timedelta(seconds=settings.DUMONT_RACE_LEASE)
    orphaned = Race.objects.filter(status=RaceStatus.RUNNING).filter(
        Q(lease_until__lt=now) | Q(lease_until__isnull=True, started_at__lt=now - lease)
    )
    for race in orphaned:
        if now <= race.deadline_at:
            send("races.run", race.pk)  # a new worker resumes it from its rows
            report.races_resumed += 1
            continue
        log.warning("reconciler: race %s is past its deadline without a worker; ending it", race.pk)
        try:
            run_race(race.pk)  # sees the deadline: abandons, destroys, fails
        except Exception as exc:
            log.exception("reconciler: ending race %s failed", race.pk)
            report.errors.append(f"race {race.pk}: {exc}")
        services.race_fail(race_id=race.pk, reason="the race's worker was lost and the race ran past its deadline")
        report.races_ended += 1


# --- machines nobody owns ------------------------------------------------------------------------


def sweep(provider: Provider, report: Report) -> None:
    machines = [m for m in provider.list() if LABEL_PATTERN.match(m.label)]  # list first, rows after
    report.machines_seen += len(machines)
    owners = _Owners.load(machines)
    now = timezone.now()
    grace = timedelta(seconds=settings.DUMONT_RECONCILE_GRACE)
    strays = set()
    for machine in machines:
        reason = owners.why_stray(machine)
        if reason is None:
            continue
        strays.add(machine.id)
        report.strays_seen += 1
        sighting, _ = StrayMachine.objects.get_or_create(
            provider=provider.name, machine_id=machine.id, defaults={"label": machine.label, "reason": reason}
        )
        if sighting.destroyed_at is None and now - sighting.first_seen_at >= grace:
            _destroy(provider, machine, sighting, owners, report)
    # Sightings of machines that are gone by themselves, or owned again, are no longer news.
    StrayMachine.objects.filter(provider=provider.name, destroyed_at__isnull=True).exclude(
        machine_id__in=strays
    ).delete()


def _destroy(provider: Provider, machine: Machine, sighting: StrayMachine, owners: _Owners, report: Report) -> None:
    log.warning("reconciler: destroying stray machine %s (%s): %s", machine.id, machine.label, sighting.reason)
    try:
        provider.destroy(machine.id)
    except ProviderError as exc:
        StrayMachine.objects.filter(pk=sighting.pk).update(error=str(exc)[:2000])
        report.errors.append(f"destroy {machine.id}: {exc}")
        return
    StrayMachine.objects.filter(pk=sighting.pk).update(destroyed_at=timezone.now(), error="")
    report.strays_destroyed += 1
    candidate = owners.candidate_of(machine)
    if candidate is not None:
        if not candidate.machine_id:
            RaceCandidate.objects.filter(pk=candidate.pk, machine_id="").update(
                machine_id=machine.id, created_at=candidate.create_requested_at
            )
        services.candidate_record_destroyed(candidate_id=candidate.pk)


@dataclass
class _Owners:
    instances: dict[uuid.UUID, Instance]
    candidates: dict[int, RaceCandidate]

    @classmethod
    def load(cls, machines: list[Machine]) -> _Owners:
        instance_ids, candidate_ids = set(), set()
        for machine in machines:
            found = LABEL_PATTERN.match(machine.label)
            instance_ids.add(uuid.UUID(found["instance"]))
            if found["candidate"]:
                candidate_ids.add(int(found["candidate"]))
        return cls(
            instances=Instance.objects.in_bulk(instance_ids),
            candidates=RaceCandidate.objects.select_related("race").in_bulk(candidate_ids),
        )

    def candidate_of(self, machine: Machine) -> RaceCandidate | None:
        found = LABEL_PATTERN.match(machine.label)
        return self.candidates.get(int(found["candidate"])) if found["candidate"] else None

    def why_stray(self, machine: Machine) -> str | None:
        """None when a live instance or race owns the machine, else why nobody does."""
        found = LABEL_PATTERN.match(machine.label)
        instance = self.instances.get(uuid.UUID(found["instance"]))
        if instance is None:
            return "its instance does not exist"
        if instance.machine_id == machine.id and instance.status != S.DESTROYED:
            return None  # the instance's own machine, whatever its state (a failed wake keeps its disk)
        if found["candidate"]:
            return self._why_stray_candidate(machine, instance, int(found["candidate"]))
        if not instance.machine_id and instance.status in (S.REQUESTED, S.PROVISIONING):
            return None  # a single start whose create reply is still to be matched by label
        return f"instance is {instance.status} with machine {instance.machine_id or 'none'}, not this one"

    def _why_stray_candidate(self, machine: Machine, instance: Instance, candidate_id: int) -> str | None:
        candidate = self.candidates.get(candidate_id)
        if candidate is None or candidate.race.instance_id != instance.id:
            return "no race candidate carries this label"
        if candidate.race.status == RaceStatus.RUNNING and not candidate.outcome:
            return None  # still in its race
        outcome = candidate.get_outcome_display() if candidate.outcome else "out of the race"
        return f"race candidate {candidate.pk} {outcome}; race {candidate.race.status}"


# --- a destroyed instance's race machines --------------------------------------------------------


def destroy_leftovers(instance_id) -> None:
    """Destroy the machines the instance's races still hold (a winner's is the instance's own,
    destroyed with it). Idempotent: confirmed machines are not asked again."""
    instance = Instance.objects.filter(pk=instance_id).first()
    if instance is None:
        return
    provider = get_provider(instance.provider)
    for candidate in services.leftovers(instance_id=instance.pk):
        if candidate.machine_id != instance.machine_id:
            provider.destroy(candidate.machine_id)
            services.candidate_record_destroyed(candidate_id=candidate.pk)
