"""The API's shapes of an instance and everything shown with it (agent, race, wake)."""

from __future__ import annotations

from decimal import Decimal

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.agents.models import Agent, AgentCommand, AgentSample
from apps.agents.selectors import instance_recent_commands, instance_recent_samples
from apps.hibernation.models import Wake
from apps.instances import services
from apps.instances.models import IDLE_SIGNALS as SIGNALS
from apps.instances.models import Instance, InstanceEvent, StartStrategy
from apps.races.models import Race, RaceCandidate
from apps.races.selectors import instance_latest_race

DEFAULT_IMAGE = "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime"


# 0.01 to 9999.9999, as a string: what the field below accepts, said so the schema tells clients.
PRICE_PATTERN = r"^(0\.(0[1-9]\d{0,2}|[1-9]\d{0,3})|[1-9]\d{0,3}(\.\d{1,4})?)$"


@extend_schema_field({"type": "string", "format": "decimal", "pattern": PRICE_PATTERN,
                      "description": "USD per hour, 0.01 to 9999.9999"})
class PriceField(serializers.DecimalField):
    pass


class InstanceCreateSerializer(serializers.Serializer):
    label = serializers.CharField(max_length=100)
    image = serializers.CharField(max_length=300, default=DEFAULT_IMAGE)
    disk_gb = serializers.IntegerField(min_value=8, max_value=10_000, default=32)
    offer_id = serializers.RegexField(r"^[0-9A-Za-z_-]{1,50}$", required=False, default="")
    gpu_name = serializers.CharField(max_length=50, required=False, default="")
    num_gpus = serializers.IntegerField(min_value=1, max_value=16, default=1)
    min_gpu_ram_gb = serializers.IntegerField(min_value=1, max_value=2048, required=False)
    max_price_per_hour = PriceField(max_digits=8, decimal_places=4, min_value=Decimal("0.01"), required=False)
    strategy = serializers.ChoiceField(
        choices=StartStrategy.choices, required=False,
        help_text="race: start several machines at once and keep the first ready (the default for "
        "a GPU spec); single: one machine (always, for a chosen offer_id).",
    )

    def validate(self, attrs):
        if not attrs.get("offer_id") and not attrs.get("gpu_name"):
            raise serializers.ValidationError("give either offer_id or gpu_name")
        if attrs.get("offer_id") and attrs.get("gpu_name"):
            raise serializers.ValidationError("give offer_id or a GPU spec, not both")
        if attrs.get("offer_id") and attrs.get("strategy") == StartStrategy.RACE:
            raise serializers.ValidationError("a race needs a GPU spec, not one chosen offer_id")
        attrs.setdefault("strategy", services.default_start_strategy(offer_id=attrs.get("offer_id", "")))
        return attrs


class InstanceEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = InstanceEvent
        fields = ["actor", "from_status", "to_status", "reason", "created_at"]


class InstanceSerializer(serializers.ModelSerializer):
    settled = serializers.BooleanField(source="is_settled", read_only=True)
    machine_label = serializers.CharField(read_only=True)

    class Meta:
        model = Instance
        fields = [
            "id", "label", "status", "status_reason", "status_changed_at", "settled",
            "provider", "gpu_name", "num_gpus", "min_gpu_ram_gb", "max_price_per_hour",
            "requested_offer_id", "image", "disk_gb", "start_strategy",
            "offer_id", "machine_id", "machine_label", "machine_gpu_name", "price_per_hour",
            "location", "ssh_host", "ssh_port", "auto_hibernate", "idle_gpu_threshold", "idle_window_s",
            "idle_signals", "keep_awake_until", "last_activity_at", "release_at", "wake_requested_at",
            "created_at", "updated_at",
        ]
        read_only_fields = fields


class IdlePolicySerializer(serializers.Serializer):
    """PATCH an instance's idle policy; null puts a field back to the global setting."""

    auto_hibernate = serializers.BooleanField(required=False)
    idle_gpu_threshold = serializers.FloatField(min_value=0.1, max_value=100, required=False, allow_null=True)
    idle_window_s = serializers.IntegerField(min_value=10, max_value=7 * 24 * 3600, required=False, allow_null=True)
    idle_signals = serializers.ListField(child=serializers.ChoiceField(choices=SIGNALS), required=False,
                                         allow_null=True, allow_empty=True, max_length=len(SIGNALS))
    keep_awake_until = serializers.DateTimeField(required=False, allow_null=True)

    def validate(self, attrs):
        if not attrs:
            raise serializers.ValidationError(f"give at least one of: {', '.join(self.fields)}")
        if attrs.get("idle_signals") is not None:
            attrs["idle_signals"] = sorted(set(attrs["idle_signals"]))
        return attrs


class WakeSerializer(serializers.ModelSerializer):
    parts = serializers.DictField(child=serializers.FloatField(allow_null=True), read_only=True,
                                  help_text="Seconds: machine, agent, restore, total (null until done)")
    race = serializers.UUIDField(source="race_id", read_only=True, allow_null=True)

    class Meta:
        model = Wake
        fields = ["source", "requested_at", "race", "machine_ready_at", "restore_started_at", "running_at",
                  "failed_at", "error", "fell_back_to_race_at", "parts"]
        read_only_fields = fields


class AgentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Agent
        fields = ["status", "error", "version", "installed_at", "first_heartbeat_at", "last_heartbeat_at", "latest"]
        read_only_fields = fields


class AgentSampleSerializer(serializers.ModelSerializer):
    class Meta:
        model = AgentSample
        fields = ["at", "gpu_util_max", "gpu_error", "ssh_sessions", "last_input_age_s",
                  "jupyter_busy_kernels", "cpu_percent"]
        read_only_fields = fields


class AgentCommandSerializer(serializers.ModelSerializer):
    class Meta:
        model = AgentCommand
        fields = ["id", "kind", "args", "status", "attempts", "progress", "result", "error", "actor",
                  "created_at", "delivered_at", "acknowledged_at", "finished_at"]
        read_only_fields = fields


class RaceCandidateSerializer(serializers.ModelSerializer):
    phase = serializers.CharField(read_only=True)

    class Meta:
        model = RaceCandidate
        fields = ["round", "slot", "label", "offer_id", "host_id", "gpu_name", "price_per_hour", "location",
                  "machine_id", "phase", "outcome", "error", "create_requested_at", "created_at", "running_at",
                  "ssh_ready_at", "destroy_requested_at", "destroyed_at", "billed_seconds", "cost"]
        read_only_fields = fields


class RaceSerializer(serializers.ModelSerializer):
    candidates = RaceCandidateSerializer(many=True, read_only=True)
    time_to_ready_s = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = Race
        fields = ["id", "purpose", "status", "result", "batch_size", "max_rounds", "round_timeout_s", "round",
                  "round_deadline_at", "started_at", "ready_at", "finished_at", "cleaned_up_at",
                  "time_to_ready_s", "loser_seconds", "loser_cost", "candidates"]
        read_only_fields = fields


class InstanceDetailSerializer(InstanceSerializer):
    events = InstanceEventSerializer(many=True, read_only=True)
    agent = AgentSerializer(read_only=True, allow_null=True, default=None)
    recent_samples = serializers.SerializerMethodField()
    commands = serializers.SerializerMethodField()
    race = serializers.SerializerMethodField()
    wake = serializers.SerializerMethodField()
    restore_progress = serializers.SerializerMethodField()

    class Meta(InstanceSerializer.Meta):
        fields = InstanceSerializer.Meta.fields + ["events", "agent", "recent_samples", "commands", "race", "wake",
                                                   "restore_progress"]
        read_only_fields = fields

    @extend_schema_field(WakeSerializer(allow_null=True))
    def get_wake(self, instance) -> dict | None:
        wake = instance.wakes.first()
        return WakeSerializer(wake).data if wake else None

    @extend_schema_field(serializers.DictField(allow_null=True))
    def get_restore_progress(self, instance) -> dict | None:
        """The agent's latest report while a wake restores the workspace."""
        wake = instance.wakes.select_related("restore_command").first()
        return wake.restore_command.progress if wake and wake.restoring else None

    @extend_schema_field(RaceSerializer(allow_null=True))
    def get_race(self, instance) -> dict | None:
        race = instance_latest_race(instance=instance)
        return RaceSerializer(race).data if race else None

    def get_recent_samples(self, instance) -> list[dict]:
        return AgentSampleSerializer(instance_recent_samples(instance=instance), many=True).data

    def get_commands(self, instance) -> list[dict]:
        return AgentCommandSerializer(instance_recent_commands(instance=instance), many=True).data
