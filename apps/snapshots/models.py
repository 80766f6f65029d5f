"""Snapshot records. The snapshots themselves live in object storage, written by the agent on the
machine; the control plane keeps what it asked for, what the agent reported, and whether the
objects were found in storage afterwards."""

from __future__ import annotations

import uuid

from django.db import models

from apps.agents.models import AgentCommand
from apps.instances.models import Instance


class Workspace(models.Model):
    """One instance's snapshot repository: where it lives and its key, sealed with the master key."""

    instance = models.OneToOneField(Instance, on_delete=models.CASCADE, primary_key=True, related_name="workspace")
    prefix = models.CharField(max_length=300, help_text="Every object of this workspace lives under it.")
    sealed_key = models.BinaryField(editable=False, help_text="AES-256-GCM with the master key; never shown.")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.prefix


class SnapshotStatus(models.TextChoices):
    PENDING = "pending", "pending"  # asked of the agent; progress is on the command
    SUCCEEDED = "succeeded", "succeeded"  # the agent wrote it; `verified_at` once checked in storage
    FAILED = "failed", "failed"
    DELETING = "deleting", "deleting"  # its manifest is being removed from storage


class SnapshotTrigger(models.TextChoices):
    MANUAL = "manual", "asked for"
    HIBERNATE = "hibernate", "before hibernation"


class Snapshot(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="snapshots")
    command = models.OneToOneField(AgentCommand, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="snapshot")
    trigger = models.CharField(max_length=20, choices=SnapshotTrigger.choices, default=SnapshotTrigger.MANUAL)
    status = models.CharField(max_length=20, choices=SnapshotStatus.choices, default=SnapshotStatus.PENDING)
    actor = models.CharField(max_length=150)
    engine_id = models.CharField(max_length=64, blank=True, help_text="The snapshot's name in the repository.")
    files = models.BigIntegerField(null=True, blank=True)
    bytes = models.BigIntegerField(null=True, blank=True, help_text="Logical size of the workspace's files.")
    stored_bytes = models.BigIntegerField(null=True, blank=True, help_text="Compressed, sealed size it references.")
    new_bytes = models.BigIntegerField(null=True, blank=True, help_text="Bytes of data not stored before.")
    uploaded_bytes = models.BigIntegerField(null=True, blank=True, help_text="Everything this snapshot uploaded.")
    duration_s = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)
    verified_at = models.DateTimeField(null=True, blank=True, help_text="Manifest and every object found in storage.")
    verify_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["instance", "status"])]

    def __str__(self) -> str:
        return f"{self.engine_id or self.id} ({self.status})"

    @property
    def verified(self) -> bool:
        return self.verified_at is not None


class StorageGrant(models.Model):
    """Credentials one machine holds for its workspace's prefix (DUMONT_SNAPSHOT_CREDENTIALS=scoped):
    read and write there, delete only its own locks. The secret is sealed with the master key and
    reaches the machine only in its agent's environment at install and in storage commands at
    delivery. A grant lives until `expires_at` unless renewed (its machine still runs), and is
    revoked at the store when the machine stops or goes (grants.py)."""

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="storage_grants")
    machine_id = models.CharField(max_length=50, blank=True, help_text="The machine it was issued for.")
    principal = models.CharField(max_length=64, help_text="The store's user for this workspace.")
    access_key = models.CharField(max_length=128, unique=True)
    sealed_secret = models.BinaryField(editable=False, help_text="AES-256-GCM with the master key; never shown.")
    issued_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(help_text="Revoked then unless renewed.")
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoke_reason = models.TextField(blank=True)
    revoke_error = models.TextField(blank=True, help_text="Why the store did not take the revocation (retried).")

    class Meta:
        ordering = ["-issued_at"]
        indexes = [models.Index(fields=["instance", "revoked_at"])]

    def __str__(self) -> str:
        return f"{self.access_key} for {self.instance_id} ({'revoked' if self.revoked_at else 'live'})"
