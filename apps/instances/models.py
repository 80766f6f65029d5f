"""The instance: what the user rented, its state machine, its audit trail, idempotency records.

Layer 2. Agents, races, snapshots, billing and hibernation keep their own models in their apps and
point at Instance; nothing here points at them.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

# What counts as use for the idle rule (apps.hibernation.idle); kept here for the field's validator.
IDLE_SIGNALS = ("ssh_input", "jupyter", "cpu")


def _validate_idle_signals(value) -> None:
    if value is None:
        return
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValidationError("a list of signal names")
    unknown = sorted(set(value) - set(IDLE_SIGNALS))
    if unknown:
        raise ValidationError(f"unknown signals {', '.join(unknown)}; known: {', '.join(IDLE_SIGNALS)}")


class StartStrategy(models.TextChoices):
    RACE = "race", "race several machines, keep the first ready"
    SINGLE = "single", "rent one machine and wait for it"


class InstanceStatus(models.TextChoices):
    REQUESTED = "requested"
    PROVISIONING = "provisioning"
    BOOTING = "booting"
    RUNNING = "running"
    STOPPING = "stopping"
    HIBERNATING = "hibernating"
    PAUSED = "paused"
    HIBERNATED = "hibernated"
    WAKING = "waking"
    DESTROYING = "destroying"
    DESTROYED = "destroyed"
    FAILED = "failed"


S = InstanceStatus

# Which states each state may be entered from. Everything not listed is an illegal transition.
ALLOWED_FROM: dict[str, frozenset[str]] = {
    S.PROVISIONING: frozenset({S.REQUESTED}),
    S.BOOTING: frozenset({S.PROVISIONING}),
    S.RUNNING: frozenset({S.BOOTING, S.WAKING, S.HIBERNATING}),  # from hibernating: called off
    S.HIBERNATING: frozenset({S.RUNNING}),
    S.STOPPING: frozenset({S.RUNNING, S.HIBERNATING}),
    S.PAUSED: frozenset({S.STOPPING}),
    S.HIBERNATED: frozenset({S.PAUSED, S.WAKING}),  # from waking: a restore failed, the snapshot kept
    S.WAKING: frozenset({S.PAUSED, S.HIBERNATED}),
    S.DESTROYING: frozenset(set(S) - {S.DESTROYING, S.DESTROYED}),
    S.DESTROYED: frozenset({S.DESTROYING}),
    S.FAILED: frozenset(set(S) - {S.FAILED, S.DESTROYED}),
}

# States in which nothing happens until someone acts: pages stop polling, workers stop watching.
SETTLED = frozenset({S.RUNNING, S.PAUSED, S.HIBERNATED, S.DESTROYED, S.FAILED})

# States in which Dumont is waiting on the provider, so a watcher task polls it.
WATCHED = frozenset({S.BOOTING, S.WAKING, S.STOPPING})


class Instance(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="instances")
    label = models.CharField(max_length=100, help_text="The user's name for this machine.")
    status = models.CharField(max_length=20, choices=InstanceStatus.choices, default=S.REQUESTED)
    status_reason = models.TextField(blank=True, help_text="Why it is in this state (failures name the step).")
    status_changed_at = models.DateTimeField(auto_now_add=True)
    deadline_at = models.DateTimeField(
        null=True, blank=True, help_text="When the current wait on the provider gives up."
    )

    # What the user asked for.
    provider = models.CharField(max_length=20, default="vast")
    gpu_name = models.CharField(max_length=50, blank=True)
    num_gpus = models.PositiveSmallIntegerField(default=1)
    min_gpu_ram_gb = models.PositiveIntegerField(null=True, blank=True)
    max_price_per_hour = models.DecimalField(max_digits=8, decimal_places=4, null=True, blank=True)
    requested_offer_id = models.CharField(max_length=50, blank=True)
    image = models.CharField(max_length=300)
    disk_gb = models.PositiveIntegerField(default=32)
    start_strategy = models.CharField(
        max_length=10, choices=StartStrategy.choices, default=StartStrategy.SINGLE,
        help_text="race: start several machines, keep the first ready; single: one machine.",
    )

    # What the provider gave. create_attempted_at is written *before* the create call so that a
    # lost reply is looked up by label instead of creating a second machine.
    create_attempted_at = models.DateTimeField(null=True, blank=True)
    offer_id = models.CharField(max_length=50, blank=True)
    machine_id = models.CharField(max_length=50, blank=True, db_index=True)
    host_id = models.CharField(max_length=50, blank=True)
    machine_gpu_name = models.CharField(max_length=50, blank=True)
    price_per_hour = models.DecimalField(max_digits=8, decimal_places=4, null=True, blank=True)
    location = models.CharField(max_length=100, blank=True)
    ssh_host = models.CharField(max_length=255, blank=True)
    ssh_port = models.PositiveIntegerField(null=True, blank=True)
    ssh_host_key = models.TextField(blank=True, help_text="Pinned on first handshake; a change is refused.")
    provider_label = models.CharField(
        max_length=100, blank=True, help_text="The machine's label when it is not dumont-<id> (a race winner's)."
    )

    # Auto-hibernation: the idle policy (empty: the global settings) and its bookkeeping.
    auto_hibernate = models.BooleanField(default=True, help_text="Snapshot and stop the machine when idle.")
    idle_gpu_threshold = models.FloatField(null=True, blank=True, help_text="Percent; empty: DUMONT_IDLE_GPU_THRESHOLD.")
    idle_window_s = models.PositiveIntegerField(null=True, blank=True, help_text="Seconds; empty: DUMONT_IDLE_WINDOW.")
    idle_signals = models.JSONField(null=True, blank=True, validators=[_validate_idle_signals],
                                    help_text="Activity that counts as use: ssh_input, jupyter, cpu; empty: DUMONT_IDLE_SIGNALS.")
    keep_awake_until = models.DateTimeField(null=True, blank=True, help_text="Never hibernated before this.")
    last_activity_at = models.DateTimeField(null=True, blank=True,
                                            help_text="Newest use seen; a machine is given back only with a snapshot newer than this.")
    release_at = models.DateTimeField(null=True, blank=True, help_text="Paused by hibernation: the machine is given back then.")
    wake_requested_at = models.DateTimeField(null=True, blank=True, help_text="A wake that waits for a snapshot or a stop.")
    watched_at = models.DateTimeField(null=True, blank=True,
                                      help_text="Last poll of the provider for this instance (the reconciler revives a lost watch).")
    wake_fallback_at = models.DateTimeField(null=True, blank=True,
                                            help_text="Waking a paused machine: race for a new one if it is not up by then.")

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "status"]), models.Index(fields=["status"])]

    def __str__(self) -> str:
        return f"{self.label} ({self.status})"

    @property
    def machine_label(self) -> str:
        """The label its machine carries at the provider; leak hunts match on it.

        `dumont-<id>` for a single start; a race winner keeps its candidate label.
        """
        return self.provider_label or f"dumont-{self.id}"

    @property
    def is_settled(self) -> bool:
        return self.status in SETTLED


class InstanceEvent(models.Model):
    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="events")
    actor = models.CharField(max_length=150, help_text="user:<name>, admin:<name> or system:<step>")
    from_status = models.CharField(max_length=20, choices=InstanceStatus.choices, blank=True)
    to_status = models.CharField(max_length=20, choices=InstanceStatus.choices)
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.from_status or '∅'} → {self.to_status} by {self.actor}"


class IdempotencyRecord(models.Model):
    """The first response to a request carrying an Idempotency-Key, replayed for repeats."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    scope = models.CharField(max_length=100, help_text="The endpoint, e.g. instances.create")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="sha256 of the request body")
    response_status = models.PositiveSmallIntegerField()
    response_body = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "scope", "key"], name="idempotency_unique_key")
        ]
