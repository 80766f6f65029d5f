"""The agent of each instance: its token and health, a ring of recent samples, and its commands.

Layer 3. The tables keep the names they had when these models lived in apps.instances
(`instances_agent`, ...): the move changed no row (migrations/0001_initial.py).
"""

from __future__ import annotations

import uuid

from django.db import models


class AgentStatus(models.TextChoices):
    NOT_INSTALLED = "not_installed"
    INSTALLING = "installing"
    WAITING = "waiting", "waiting for first heartbeat"
    HEALTHY = "healthy"
    SILENT = "silent", "stopped reporting"
    FAILED = "failed"


class Agent(models.Model):
    """The agent of one instance: its token, health and the latest it reported.

    The token is stored as a sha256 digest: it is 32 random bytes, so a slow hash adds nothing.
    """

    instance = models.OneToOneField("instances.Instance", on_delete=models.CASCADE, primary_key=True,
                                    related_name="agent")
    token_hash = models.CharField(max_length=64, unique=True, null=True, blank=True)
    status = models.CharField(max_length=20, choices=AgentStatus.choices, default=AgentStatus.NOT_INSTALLED)
    error = models.TextField(blank=True, help_text="Why the install failed, naming the step.")
    version = models.CharField(max_length=30, blank=True)
    install_started_at = models.DateTimeField(null=True, blank=True)
    installed_at = models.DateTimeField(null=True, blank=True)
    first_heartbeat_at = models.DateTimeField(null=True, blank=True)
    last_heartbeat_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_seq = models.BigIntegerField(default=0)
    samples_received = models.BigIntegerField(default=0, help_text="Also the next ring slot to write.")
    latest = models.JSONField(null=True, blank=True, help_text="The newest sample, as sent.")

    class Meta:
        db_table = "instances_agent"

    def __str__(self) -> str:
        return f"agent of {self.instance_id} ({self.status})"


class AgentSample(models.Model):
    """A bounded ring of recent samples per instance: slot = sample number mod ring size.

    Enough for the idle rule and a sparkline; writing over old slots keeps the table from
    growing by a row per heartbeat forever, without a pruning job.
    """

    instance = models.ForeignKey("instances.Instance", on_delete=models.CASCADE, related_name="samples")
    slot = models.PositiveIntegerField()
    at = models.DateTimeField()
    gpu_util_max = models.FloatField(null=True, help_text="Busiest GPU, % over the interval; null on error")
    gpu_error = models.TextField(blank=True)
    ssh_sessions = models.PositiveIntegerField(default=0)
    last_input_age_s = models.FloatField(null=True)
    jupyter_busy_kernels = models.PositiveIntegerField(null=True)
    cpu_percent = models.FloatField(default=0)
    data = models.JSONField(help_text="The whole sample, as sent")

    class Meta:
        db_table = "instances_agentsample"
        constraints = [models.UniqueConstraint(fields=["instance", "slot"], name="agent_sample_ring_slot")]
        indexes = [models.Index(fields=["instance", "at"])]


class CommandStatus(models.TextChoices):
    PENDING = "pending"
    DELIVERED = "delivered", "delivered, not yet acknowledged"
    ACKNOWLEDGED = "acknowledged"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


# Progress only moves forward; a late or repeated update never undoes a later one.
COMMAND_ORDER = {status: rank for rank, status in enumerate(CommandStatus.values)}
COMMAND_FINAL = frozenset({CommandStatus.SUCCEEDED, CommandStatus.FAILED})


class AgentCommand(models.Model):
    """Work for the agent, delivered with heartbeat replies until the agent acknowledges it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    instance = models.ForeignKey("instances.Instance", on_delete=models.CASCADE, related_name="commands")
    kind = models.CharField(max_length=30)
    args = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=20, choices=CommandStatus.choices, default=CommandStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0, help_text="Times delivered")
    progress = models.JSONField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    actor = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "instances_agentcommand"
        ordering = ["created_at"]
        indexes = [models.Index(fields=["instance", "status"])]

    def __str__(self) -> str:
        return f"{self.kind} ({self.status})"
