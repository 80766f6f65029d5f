from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

# Race rows live in race/models.py; imported here so Django registers them with this app.
from .race.models import Race, RaceCandidate, StartStrategy, StrayMachine  # noqa: F401
from .hibernation.models import Wake  # noqa: F401  (same: registered with this app)


def _validate_idle_signals(value) -> None:
    from .idle import SIGNALS

    if value is None:
        return
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValidationError("a list of signal names")
    unknown = sorted(set(value) - set(SIGNALS))
    if unknown:
        raise ValidationError(f"unknown signals {', '.join(unknown)}; known: {', '.join(SIGNALS)}")


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


# --- the agent on the machine ---------------------------------------------------------------


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

    instance = models.OneToOneField(Instance, on_delete=models.CASCADE, primary_key=True, related_name="agent")
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

    def __str__(self) -> str:
        return f"agent of {self.instance_id} ({self.status})"


class AgentSample(models.Model):
    """A bounded ring of recent samples per instance: slot = sample number mod ring size.

    Enough for the idle rule and a sparkline; writing over old slots keeps the table from
    growing by a row per heartbeat forever, without a pruning job.
    """

    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="samples")
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
    instance = models.ForeignKey(Instance, on_delete=models.CASCADE, related_name="commands")
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
        ordering = ["created_at"]
        indexes = [models.Index(fields=["instance", "status"])]

    def __str__(self) -> str:
        return f"{self.kind} ({self.status})"
