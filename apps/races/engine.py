"""The worker side of a race: one loop drives one race from its first create to its last destroy.

Provider and SSH calls run on a thread pool (creates, handshakes and destroys in parallel);
only the loop's own thread touches the database, always outside a transaction when it calls
out. Each poll makes one list call for the whole race, not one per candidate. The loop holds a
lease on the race and renews it as it goes; everything it needs to resume is in the rows, so a
race whose worker died is picked up again (or ended) by the reconciler.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from apps.instances.models import Instance
from apps.instances.orchestration import register_ssh_key
from apps.providers.base import CreateSpec, MachineState, OfferGone, Provider, ProviderError, ProviderUnavailable
from apps.providers.registry import get_provider
from apps.providers.ssh import SshNotReady, ssh_handshake

from . import services
from .models import CandidateOutcome, Race, RaceCandidate, RaceStatus
from .offers import choose_offers, describe_spec, race_offer_query

log = logging.getLogger(__name__)
O = CandidateOutcome

# Polls in a row a created machine may be missing from the provider's list before it counts
# as vanished (a fresh machine can lag behind in a list).
MISSING_POLLS = 3


@dataclass(frozen=True)
class _Job:
    kind: str  # "create", "ssh" or "destroy"
    candidate_id: int


def run_race(race_id) -> bool:
    """Drive the race to its end if no other worker holds it; False when another one does."""
    if not services.race_claim(race_id=race_id):
        return False
    runner = RaceRunner(race_id)
    try:
        runner.run()
    finally:
        runner.close()
    return True


class RaceRunner:
    def __init__(self, race_id, provider: Provider | None = None):
        self.race_id = race_id
        race = Race.objects.select_related("instance").get(pk=race_id)
        self.provider = provider or get_provider(race.instance.provider)
        self.pool = ThreadPoolExecutor(max_workers=max(4, 3 * race.batch_size), thread_name_prefix="race")
        self.jobs: dict[Future, _Job] = {}
        self.next_poll = 0.0
        self.renew_at = time.monotonic() + settings.DUMONT_RACE_LEASE / 3
        self.missing: Counter[int] = Counter()
        self.retry_destroy_at: dict[int, float] = {}
        # Creates whose reply was lost: the machine may exist; a list by label tells.
        self.unresolved: set[int] = set(
            RaceCandidate.objects.filter(race_id=race_id, machine_id="", destroyed_at__isnull=True)
            .exclude(outcome__in=[O.OFFER_GONE, O.FAILED])
            .values_list("pk", flat=True)
        )
        self.failure: str | None = None  # decided, to be recorded once the last round is destroyed

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        services.race_release(race_id=self.race_id)

    # --- the loop ------------------------------------------------------------------------------

    def run(self) -> None:
        try:
            register_ssh_key(self.provider)
        except ProviderError as exc:
            self.failure = f"could not register our SSH key with {self.provider.name}: {exc}"
        services.race_begin(race_id=self.race_id)
        while self.step():
            self.wait()

    def step(self) -> bool:
        """One pass over the race; False once there is nothing left to do."""
        race = Race.objects.select_related("instance").get(pk=self.race_id)
        self.renew()
        if race.status == RaceStatus.RUNNING:
            self.advance(race)
            race.refresh_from_db()
        self.destroy_unwanted()
        if race.status == RaceStatus.RUNNING or self.jobs or self.destroys_left():
            return True
        self.finish(race)
        return False

    def advance(self, race: Race) -> None:
        instance = race.instance
        if instance.status not in services.LIVE_STATES[race.purpose]:
            services.race_cancel(race_id=race.pk, reason=f"the instance is {instance.status}; race called off")
            return
        if self.failure is not None:
            if not self.destroys_left():
                self.record_failure(race)
            return
        if timezone.now() > race.deadline_at:
            services.race_time_out(race_id=race.pk, error="the race ran past its deadline")
            self.failure = "the race ran past its deadline"
            return
        candidates = list(race.candidates.all())
        current = [c for c in candidates if c.round == race.round]
        if race.round and any(not c.outcome for c in current):
            self.poll(race, candidates)
            if race.round_deadline_at and timezone.now() >= race.round_deadline_at:
                services.race_end_round(race_id=race.pk, round=race.round)
            return
        if self.destroys_left():
            return  # a round's machines are destroyed before the next round starts
        if race.round >= race.max_rounds:
            self.failure = "no machine was ready"
            return
        self.start_round(race, instance, candidates)

    def record_failure(self, race: Race) -> None:
        candidates = list(race.candidates.all())
        reason = f"{self.failure}: {summary(race, candidates)}" if candidates else self.failure
        services.race_fail(race_id=race.pk, reason=reason)

    def wait(self) -> None:
        """Until a call finishes or the next poll is due (at most one poll interval)."""
        now = time.monotonic()
        if self.next_poll <= now:
            self.next_poll = now + settings.DUMONT_RACE_POLL_INTERVAL
        timeout = self.next_poll - now
        if not self.jobs:
            time.sleep(timeout)
            return
        done, _ = wait(list(self.jobs), timeout=timeout, return_when=FIRST_COMPLETED)
        for future in done:
            job = self.jobs.pop(future)
            getattr(self, f"on_{job.kind}")(job.candidate_id, future)

    def renew(self) -> None:
        if time.monotonic() >= self.renew_at:
            services.race_renew(race_id=self.race_id)
            self.renew_at = time.monotonic() + settings.DUMONT_RACE_LEASE / 3

    # --- rounds --------------------------------------------------------------------------------

    def start_round(self, race: Race, instance: Instance, candidates: list[RaceCandidate]) -> None:
        try:
            offers = self.provider.search_offers(race_offer_query(instance))
        except ProviderError as exc:
            log.warning("race %s: offer search failed (%s); trying again", race.pk, exc)
            self.next_poll = time.monotonic() + settings.DUMONT_RACE_POLL_INTERVAL
            return
        tried = [c.host_id for c in candidates]
        chosen = choose_offers(offers, count=race.batch_size, exclude_hosts=tried)
        if not chosen:
            if race.round == 0:
                self.failure = f"no offer matches {describe_spec(instance)}"
            else:
                self.failure = f"no machine was ready and no untried offer is left for round {race.round + 1}"
            return
        env = {"DUMONT_INSTANCE_ID": str(instance.id)}
        for candidate in services.race_begin_round(race_id=race.pk, round=race.round + 1, offers=chosen):
            spec = CreateSpec(image=instance.image, disk_gb=instance.disk_gb, label=candidate.label, env=env)
            self.submit("create", candidate.pk, self.provider.create, offer_id=candidate.offer_id, spec=spec)
        self.next_poll = time.monotonic() + settings.DUMONT_RACE_POLL_INTERVAL
        log.info("race %s: round %d, %d machines", race.pk, race.round + 1, len(chosen))

    def poll(self, race: Race, candidates: list[RaceCandidate]) -> None:
        """One list call: adopt machines found by label, fail the dead, handshake the running."""
        if time.monotonic() < self.next_poll:
            return
        self.next_poll = time.monotonic() + settings.DUMONT_RACE_POLL_INTERVAL
        listed = self.list_machines({c.label for c in candidates})
        if listed is None:
            return
        for candidate in candidates:
            if not candidate.destroyed_at:
                self.observe(candidate, listed.get(candidate.label))

    def list_machines(self, labels: set[str]) -> dict | None:
        try:
            return {m.label: m for m in self.provider.list() if m.label in labels}
        except ProviderError as exc:
            log.warning("race %s: listing machines failed (%s)", self.race_id, exc)
            return None

    def observe(self, candidate: RaceCandidate, machine) -> None:
        if machine is None:
            if candidate.machine_id and not candidate.outcome:
                self.missing[candidate.pk] += 1
                if self.missing[candidate.pk] >= MISSING_POLLS:
                    services.candidate_fail(candidate_id=candidate.pk, outcome=O.FAILED,
                                            error=f"machine {candidate.machine_id} vanished at the provider")
            return
        self.missing.pop(candidate.pk, None)
        if not candidate.machine_id:
            self.unresolved.discard(candidate.pk)
            services.candidate_record_created(candidate_id=candidate.pk, machine_id=machine.id)
        if candidate.outcome:
            return
        if machine.state == MachineState.FAILED:
            services.candidate_fail(candidate_id=candidate.pk, outcome=O.FAILED,
                                    error=f"machine {machine.id} failed: {machine.status_msg or 'no reason given'}")
        elif machine.state == MachineState.RUNNING and machine.ssh_host and machine.ssh_port:
            if not candidate.running_at or (candidate.ssh_host, candidate.ssh_port) != (machine.ssh_host, machine.ssh_port):
                services.candidate_record_running(candidate_id=candidate.pk, ssh_host=machine.ssh_host,
                                                  ssh_port=machine.ssh_port)
            if not self.busy("ssh", candidate.pk):
                self.submit("ssh", candidate.pk, _handshake, machine.ssh_host, machine.ssh_port)

    # --- call results --------------------------------------------------------------------------

    def on_create(self, candidate_id: int, future: Future) -> None:
        try:
            machine_id = future.result()
        except OfferGone as exc:
            services.candidate_fail(candidate_id=candidate_id, outcome=O.OFFER_GONE, error=str(exc))
        except ProviderUnavailable as exc:
            # It may have landed: the next list finds it by label, or the reconciler does.
            self.unresolved.add(candidate_id)
            services.candidate_note_error(
                candidate_id=candidate_id, error=f"create reply lost ({exc}); looking for the machine by label"
            )
        except ProviderError as exc:
            services.candidate_fail(candidate_id=candidate_id, outcome=O.FAILED, error=f"create refused: {exc}")
        except Exception as exc:
            log.exception("race %s: create of candidate %s failed", self.race_id, candidate_id)
            services.candidate_fail(candidate_id=candidate_id, outcome=O.FAILED, error=f"create failed: {exc!r}")
        else:
            services.candidate_record_created(candidate_id=candidate_id, machine_id=machine_id)

    def on_ssh(self, candidate_id: int, future: Future) -> None:
        try:
            host_key, ready_at = future.result()
        except SshNotReady as exc:
            log.debug("race %s: candidate %s: %s", self.race_id, candidate_id, exc)
            return
        except Exception:
            log.exception("race %s: handshake with candidate %s failed", self.race_id, candidate_id)
            return
        if services.race_record_winner(race_id=self.race_id, candidate_id=candidate_id,
                                       host_key=host_key, ready_at=ready_at):
            log.info("race %s: candidate %s won", self.race_id, candidate_id)
            self.destroy_unwanted()  # at once: the losers' seconds are paid for

    def on_destroy(self, candidate_id: int, future: Future) -> None:
        try:
            future.result()
        except Exception as exc:
            log.warning("race %s: destroying candidate %s failed: %s", self.race_id, candidate_id, exc)
            services.candidate_record_destroy_failed(candidate_id=candidate_id, error=str(exc))
            self.retry_destroy_at[candidate_id] = time.monotonic() + settings.DUMONT_RACE_POLL_INTERVAL
        else:
            services.candidate_record_destroyed(candidate_id=candidate_id)

    # --- destroying ------------------------------------------------------------------------------

    def unwanted(self):
        return RaceCandidate.objects.filter(
            race_id=self.race_id, destroy_requested_at__isnull=False, destroyed_at__isnull=True,
            destroy_attempts__lt=settings.DUMONT_RACE_DESTROY_ATTEMPTS,
        ).exclude(machine_id="")

    def destroy_unwanted(self) -> None:
        now = time.monotonic()
        for candidate in self.unwanted():
            if self.busy("destroy", candidate.pk) or self.retry_destroy_at.get(candidate.pk, 0) > now:
                continue
            self.submit("destroy", candidate.pk, self.provider.destroy, candidate.machine_id)

    def destroys_left(self) -> bool:
        return self.unwanted().exists() or any(job.kind == "destroy" for job in self.jobs.values())

    def finish(self, race: Race) -> None:
        """The race is decided and every call returned: look once more for lost creates, then
        note the clean-up done when no machine but the winner is left."""
        if self.unresolved:
            found = self.list_machines(set(
                RaceCandidate.objects.filter(pk__in=self.unresolved).values_list("label", flat=True)
            )) or {}
            for candidate in RaceCandidate.objects.filter(pk__in=self.unresolved):
                machine = found.get(candidate.label)
                if machine is not None:
                    services.candidate_record_created(candidate_id=candidate.pk, machine_id=machine.id)
                    self._destroy_now(candidate.pk, machine.id)
            self.unresolved.clear()
        left = RaceCandidate.objects.filter(race_id=race.pk, destroyed_at__isnull=True).exclude(machine_id="")
        if race.winner_id:
            left = left.exclude(pk=race.winner_id)
        if not left.exists():
            services.race_record_cleaned_up(race_id=race.pk)

    def _destroy_now(self, candidate_id: int, machine_id: str) -> None:
        try:
            self.provider.destroy(machine_id)
        except ProviderError as exc:
            services.candidate_record_destroy_failed(candidate_id=candidate_id, error=str(exc))
        else:
            services.candidate_record_destroyed(candidate_id=candidate_id)

    # --- the pool ------------------------------------------------------------------------------

    def submit(self, kind: str, candidate_id: int, call, *args, **kwargs) -> None:
        self.jobs[self.pool.submit(call, *args, **kwargs)] = _Job(kind, candidate_id)

    def busy(self, kind: str, candidate_id: int) -> bool:
        return _Job(kind, candidate_id) in self.jobs.values()


def _handshake(host: str, port: int):
    host_key = ssh_handshake(host, port)
    return host_key, timezone.now()


def summary(race: Race, candidates: list[RaceCandidate]) -> str:
    """What became of every machine of the race, for the failure reason."""
    outcomes = Counter(c.outcome for c in candidates)
    parts = []
    if outcomes[O.TIMED_OUT]:
        parts.append(f"{outcomes[O.TIMED_OUT]} not ready within {race.round_timeout_s:g} s")
    if outcomes[O.FAILED]:
        parts.append(f"{outcomes[O.FAILED]} failed to start")
    if outcomes[O.OFFER_GONE]:
        parts.append(f"{outcomes[O.OFFER_GONE]} offers taken before we could rent them")
    rounds = f"{race.round} round{'s' if race.round != 1 else ''}"
    text = f"{len(candidates)} machine{'s' if len(candidates) != 1 else ''} tried in {rounds}"
    if parts:
        text += f" ({', '.join(parts)})"
    left = sum(1 for c in candidates if c.machine_id and not c.destroyed_at)
    if left:
        return text + f"; {left} not yet confirmed destroyed (the reconciler retries)"
    return text + "; every machine was destroyed"
