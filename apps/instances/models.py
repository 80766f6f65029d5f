from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


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
    S.RUNNING: frozenset({S.BOOTING, S.WAKING}),
    S.STOPPING: frozenset({S.RUNNING}),
    S.PAUSED: frozenset({S.STOPPING}),
    S.WAKING: frozenset({S.PAUSED}),
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

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "status"]), models.Index(fields=["status"])]

    def __str__(self) -> str:
        return f"{self.label} ({self.status})"

    @property
    def machine_label(self) -> str:
        """The label every provider machine of this instance carries; leak hunts match on it."""
        return f"dumont-{self.id}"

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
