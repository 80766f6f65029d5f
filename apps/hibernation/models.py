"""A wake, and the time each of its parts took (the instance page shows them).

The table keeps the name it had when the model lived in apps.instances (`instances_wake`).
"""

from __future__ import annotations

from django.db import models


class WakeSource(models.TextChoices):
    PAUSED = "paused", "paused machine started"
    HIBERNATED = "hibernated", "new machine, snapshot restored"


class Wake(models.Model):
    instance = models.ForeignKey("instances.Instance", on_delete=models.CASCADE, related_name="wakes")
    source = models.CharField(max_length=20, choices=WakeSource.choices)
    actor = models.CharField(max_length=150)
    requested_at = models.DateTimeField(auto_now_add=True)
    race = models.ForeignKey("races.Race", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    snapshot = models.ForeignKey("snapshots.Snapshot", on_delete=models.SET_NULL, null=True, blank=True,
                                 related_name="+", help_text="Restored onto the new machine.")
    restore_command = models.ForeignKey("agents.AgentCommand", on_delete=models.SET_NULL, null=True,
                                        blank=True, related_name="+")
    fell_back_to_race_at = models.DateTimeField(null=True, blank=True)
    machine_ready_at = models.DateTimeField(null=True, blank=True, help_text="SSH handshake done.")
    restore_started_at = models.DateTimeField(null=True, blank=True)
    running_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        db_table = "instances_wake"
        ordering = ["-requested_at"]

    def __str__(self) -> str:
        return f"wake of {self.instance_id} ({self.source})"

    @property
    def needs_restore(self) -> bool:
        return self.snapshot_id is not None

    @property
    def restoring(self) -> bool:
        """Its restore command is out and the wake is not over: progress is worth showing."""
        return self.restore_command_id is not None and not (self.running_at or self.failed_at)

    def seconds(self, start, end) -> float | None:
        return (end - start).total_seconds() if start and end else None

    @property
    def parts(self) -> dict:
        """Seconds spent getting a machine, installing the agent, restoring; and in all."""
        restore_end = self.running_at if self.needs_restore else None
        return {
            "machine": self.seconds(self.requested_at, self.machine_ready_at),
            "agent": self.seconds(self.machine_ready_at, self.restore_started_at),
            "restore": self.seconds(self.restore_started_at, restore_end),
            "total": self.seconds(self.requested_at, self.running_at),
        }
