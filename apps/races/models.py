"""Rows of a multi-start race: the race itself, one row per machine it asked for, and stray
machines the reconciler found at a provider.

A candidate row is written and committed before its create call is made, so every machine
Dumont asks a provider for is on record, with its label, even when the reply never comes.

The tables keep the names they had when these models lived in apps.instances (`instances_race`,
...): the move changed no row (migrations/0001_initial.py).
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from decimal import Decimal

from django.db import models
from django.utils import timezone


class RacePurpose(models.TextChoices):
    CREATE = "create"
    WAKE = "wake"


class RaceStatus(models.TextChoices):
    RUNNING = "running"
    WON = "won"
    FAILED = "failed"
    CANCELLED = "cancelled", "cancelled (the instance moved on)"


class CandidateOutcome(models.TextChoices):
    PENDING = "", "in the race"
    WON = "won"
    LOST = "lost", "lost (another was ready first)"
    TIMED_OUT = "timed_out", "not ready before its round ended"
    FAILED = "failed"
    OFFER_GONE = "offer_gone", "offer taken before we could rent it"
    CANCELLED = "cancelled", "race cancelled"


# Machine labels: `dumont-<instance>` for a single start, `dumont-<instance>-c<candidate>` for a
# race candidate. The reconciler reads them back; anything else is not Dumont's.
LABEL_PATTERN = re.compile(
    r"^dumont-(?P<instance>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(?:-c(?P<candidate>\d+))?$"
)


def candidate_label(instance_id, candidate_id: int) -> str:
    return f"dumont-{instance_id}-c{candidate_id}"


class Race(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    instance = models.ForeignKey("instances.Instance", on_delete=models.CASCADE, related_name="races")
    purpose = models.CharField(max_length=10, choices=RacePurpose.choices)
    status = models.CharField(max_length=10, choices=RaceStatus.choices, default=RaceStatus.RUNNING)
    result = models.TextField(blank=True, help_text="How it ended, in words.")

    # The strategy in force when the race began (settings may change while it runs).
    batch_size = models.PositiveSmallIntegerField()
    max_rounds = models.PositiveSmallIntegerField()
    round_timeout_s = models.FloatField()

    round = models.PositiveSmallIntegerField(default=0, help_text="The round now running (1-based); 0 before the first.")
    round_deadline_at = models.DateTimeField(null=True, blank=True)
    deadline_at = models.DateTimeField(help_text="Past this the reconciler ends the race whatever state it is in.")
    lease_until = models.DateTimeField(
        null=True, blank=True, help_text="The worker driving the race renews this; an expired lease means it died."
    )
    claims = models.PositiveSmallIntegerField(
        default=0, help_text="Workers that took the race: more than one means a worker died and another resumed it."
    )

    winner = models.OneToOneField(
        "RaceCandidate", null=True, blank=True, on_delete=models.SET_NULL, related_name="won_race"
    )
    started_at = models.DateTimeField(default=timezone.now)
    ready_at = models.DateTimeField(null=True, blank=True, help_text="The winner's SSH handshake completed.")
    running_at = models.DateTimeField(null=True, blank=True, help_text="The instance was recorded running.")
    finished_at = models.DateTimeField(null=True, blank=True)
    cleaned_up_at = models.DateTimeField(
        null=True, blank=True, help_text="Every machine but the winner confirmed destroyed."
    )
    loser_seconds = models.FloatField(default=0, help_text="Billed seconds of every machine that did not win.")
    loser_cost = models.DecimalField(
        max_digits=12, decimal_places=6, default=Decimal(0), help_text="What those seconds cost, USD."
    )

    class Meta:
        db_table = "instances_race"
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["status", "lease_until"])]

    def __str__(self) -> str:
        return f"{self.purpose} race of {self.instance_id} ({self.status})"

    @property
    def is_running(self) -> bool:
        return self.status == RaceStatus.RUNNING

    @property
    def time_to_ready_s(self) -> float | None:
        return (self.ready_at - self.started_at).total_seconds() if self.ready_at else None

    @property
    def overhead_s(self) -> float | None:
        """From the winner's SSH handshake to the instance recorded running."""
        if self.ready_at and self.running_at:
            return (self.running_at - self.ready_at).total_seconds()
        return None

    @property
    def cleanup_s(self) -> float | None:
        """From the winner to the last other machine destroyed."""
        if self.ready_at and self.cleaned_up_at:
            return max(0.0, (self.cleaned_up_at - self.ready_at).total_seconds())
        return None


class RaceCandidate(models.Model):
    race = models.ForeignKey(Race, on_delete=models.CASCADE, related_name="candidates")
    round = models.PositiveSmallIntegerField()
    slot = models.PositiveSmallIntegerField()
    offer_id = models.CharField(max_length=50)
    host_id = models.CharField(max_length=50, blank=True, help_text="The provider's physical machine.")
    gpu_name = models.CharField(max_length=50, blank=True)
    price_per_hour = models.DecimalField(max_digits=8, decimal_places=4)
    location = models.CharField(max_length=100, blank=True)
    label = models.CharField(max_length=100, blank=True, db_index=True)

    machine_id = models.CharField(max_length=50, blank=True, db_index=True)
    ssh_host = models.CharField(max_length=255, blank=True)
    ssh_port = models.PositiveIntegerField(null=True, blank=True)

    create_requested_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(null=True, blank=True, help_text="The provider accepted the create.")
    running_at = models.DateTimeField(null=True, blank=True, help_text="The provider first said running.")
    ssh_ready_at = models.DateTimeField(null=True, blank=True)
    destroy_requested_at = models.DateTimeField(null=True, blank=True)
    destroyed_at = models.DateTimeField(null=True, blank=True)
    destroy_attempts = models.PositiveSmallIntegerField(default=0)

    outcome = models.CharField(max_length=20, choices=CandidateOutcome.choices, default="", blank=True)
    error = models.TextField(blank=True)
    billed_seconds = models.FloatField(null=True, blank=True)
    cost = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)

    class Meta:
        db_table = "instances_racecandidate"
        ordering = ["round", "slot"]
        constraints = [
            models.UniqueConstraint(fields=["race", "round", "slot"], name="race_candidate_slot"),
        ]

    def __str__(self) -> str:
        return f"{self.label or self.pk} ({self.phase})"

    @property
    def phase(self) -> str:
        """Where the machine is now, from its timestamps: what the race page shows."""
        if self.destroyed_at:
            return "destroyed"
        if self.destroy_requested_at:
            return "destroying"
        if self.ssh_ready_at:
            return "ready"
        if self.running_at:
            return "running"
        if self.created_at:
            return "booting"
        if self.outcome:
            return "never created"
        return "creating"

    def billed_until(self, end) -> float:
        """Seconds the provider bills for this machine: from its creation to `end`."""
        if self.created_at is None:
            return 0.0
        return max(0.0, (end - self.created_at).total_seconds())

    def elapsed(self, now=None) -> timedelta:
        """How long it has been in the race, or was until destroyed."""
        end = self.destroyed_at or now or timezone.now()
        return end - self.create_requested_at


class StrayMachine(models.Model):
    """A Dumont-labelled machine at a provider that no live instance or race owns.

    Written when the reconciler first sees it, so the grace period counts from then; the row
    stays as the record of what was destroyed and why.
    """

    provider = models.CharField(max_length=20)
    machine_id = models.CharField(max_length=50)
    label = models.CharField(max_length=100)
    reason = models.TextField()
    first_seen_at = models.DateTimeField(default=timezone.now)
    destroyed_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        db_table = "instances_straymachine"
        ordering = ["-first_seen_at"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "machine_id"], name="stray_machine_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.provider}:{self.machine_id} {self.label}"
