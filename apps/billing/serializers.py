"""Response shapes of the metrics API. Money is a string of dollars and cents (USD), rounded
half-up from the exact figure; hours are rounded to 4 places."""

from __future__ import annotations

from decimal import ROUND_HALF_UP

from rest_framework import serializers

from apps.instances.models import InstanceStatus


def _money(help_text: str) -> serializers.DecimalField:
    return serializers.DecimalField(max_digits=14, decimal_places=2, rounding=ROUND_HALF_UP, help_text=help_text)


def _hours(help_text: str) -> serializers.FloatField:
    return serializers.FloatField(help_text=help_text)


class PeriodSerializer(serializers.Serializer):
    start = serializers.DateTimeField(source="period.start", help_text="Start of the period (included).")
    end = serializers.DateTimeField(source="period.end", help_text="End of the period (excluded).")
    counted_until = serializers.DateTimeField(
        help_text="Figures stop here: the end, or now when the period reaches into the future."
    )
    currency = serializers.SerializerMethodField()

    def get_currency(self, obj) -> str:
        return "USD"


class UsageHoursSerializer(serializers.Serializer):
    running = _hours("Hours in `running`.")
    paused = _hours("Hours stopped with the disk kept (`paused`).")
    hibernated = _hours("Hours with the machine given back, only the snapshot kept (`hibernated`).")
    transitioning = _hours("Hours starting, stopping, snapshotting, waking or destroying.")

    def to_representation(self, figures):
        return {
            "running": _round_hours(figures.hours_running),
            "paused": _round_hours(figures.hours_paused),
            "hibernated": _round_hours(figures.hours_hibernated),
            "transitioning": _round_hours(figures.hours_transitioning),
        }


class UsageSpendSerializer(serializers.Serializer):
    gpu = _money("GPU time: running, and starting, snapshotting, stopping or waking a machine.")
    stopped_disk = _money("The disk of stopped (paused) machines.")
    storage = _money("Snapshots in object storage.")
    race_losses = _money("Seconds billed for race candidates that did not win.")
    total = _money("All of the above.")

    def to_representation(self, figures):
        return super().to_representation({
            "gpu": figures.gpu,
            "stopped_disk": figures.stopped_disk,
            "storage": figures.storage,
            "race_losses": figures.race_losses,
            "total": figures.actual_spend,
        })


class WakeTimeSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="Wakes that reached `running` in the period.")
    p50 = serializers.FloatField(allow_null=True, help_text="Median seconds from `waking` to `running`.")
    p90 = serializers.FloatField(allow_null=True, help_text="90th percentile, seconds (linear interpolation).")

    def to_representation(self, metrics):
        return {
            "count": len(metrics.total.wake_seconds),
            "p50": _round(metrics.wake_p50_s),
            "p90": _round(metrics.wake_p90_s),
        }


class UsageMetricsSerializer(PeriodSerializer):
    hours = UsageHoursSerializer(source="total")
    hibernations = serializers.IntegerField(source="total.hibernations", help_text="Entries into `hibernating`.")
    wakes = serializers.IntegerField(source="total.wakes", help_text="Entries into `waking`.")
    wake_seconds = WakeTimeSerializer(source="*")
    spend = UsageSpendSerializer(source="total")


class SavingsFiguresSerializer(serializers.Serializer):
    always_on_cost = _money("What leaving the machine on from its first start would have cost.")
    actual_spend = _money("What was spent (spend.total).")
    savings = _money("always_on_cost − actual_spend.")
    hours = UsageHoursSerializer(source="*")
    spend = UsageSpendSerializer(source="*")


class InstanceSavingsSerializer(SavingsFiguresSerializer):
    instance = serializers.UUIDField(source="instance.id")
    label = serializers.CharField(source="instance.label")
    status = serializers.ChoiceField(source="instance.status", choices=InstanceStatus.choices,
                                     help_text="Its state now.")


class SavingsReportSerializer(PeriodSerializer):
    total = SavingsFiguresSerializer()
    instances = InstanceSavingsSerializer(many=True)


def _round_hours(hours) -> float:
    return round(float(hours), 4)


def _round(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)
