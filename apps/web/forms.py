"""Forms of the HTML pages. They check input shape only; the rules of what may happen live in services."""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.conf import settings

from apps.instances.models import InstanceStatus, StartStrategy

from .serializers import DEFAULT_IMAGE

# Offered as suggestions; any name the marketplace knows is accepted.
COMMON_GPU_NAMES = ("RTX 4090", "RTX 3090", "RTX A6000", "A100 SXM4", "H100 SXM", "L40S")


class InstanceCreateForm(forms.Form):
    """The page twin of serializers.InstanceCreateSerializer (same limits), for a GPU by name."""

    label = forms.CharField(max_length=100, help_text="Your name for this machine.")
    gpu_name = forms.CharField(
        label="GPU",
        max_length=50,
        widget=forms.TextInput(attrs={"list": "gpu-names", "autocomplete": "off"}),
        help_text="Pick a common model or type any name the marketplace uses.",
    )
    num_gpus = forms.IntegerField(label="Number of GPUs", min_value=1, max_value=16, initial=1)
    max_price_per_hour = forms.DecimalField(
        label="Max price per hour (USD)",
        max_digits=8,
        decimal_places=4,
        min_value=Decimal("0.01"),
        required=False,
        help_text="Leave empty to take the cheapest matching offer.",
    )
    image = forms.CharField(max_length=300, initial=DEFAULT_IMAGE, help_text="Docker image to run.")
    disk_gb = forms.IntegerField(label="Disk (GB)", min_value=8, max_value=10_000, initial=32)
    strategy = forms.ChoiceField(
        label="Start", choices=StartStrategy.choices, widget=forms.RadioSelect, required=False,
        help_text="A race starts up to 5 machines at once and keeps the first that is really ready; "
                  "the others are destroyed at once.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["strategy"].initial = settings.DUMONT_START_STRATEGY

    def clean_strategy(self) -> str:
        return self.cleaned_data.get("strategy") or settings.DUMONT_START_STRATEGY


class InstanceFilterForm(forms.Form):
    status = forms.ChoiceField(
        choices=[("", "All statuses"), *InstanceStatus.choices], required=False
    )
    show_destroyed = forms.BooleanField(required=False)


class IdlePolicyForm(forms.Form):
    """The page twin of serializers.IdlePolicySerializer: empty fields take the global settings."""

    auto_hibernate = forms.BooleanField(label="Hibernate when idle", required=False)
    idle_gpu_threshold = forms.FloatField(label="GPU under (%)", min_value=0.1, max_value=100, required=False)
    idle_window_s = forms.IntegerField(label="for (seconds)", min_value=10, max_value=7 * 24 * 3600, required=False)
    idle_signals = forms.MultipleChoiceField(
        label="Counts as use", required=False, widget=forms.CheckboxSelectMultiple,
        choices=[("ssh_input", "typing in a terminal"), ("jupyter", "a busy Jupyter kernel"), ("cpu", "CPU above 50%")],
    )
    default_signals = forms.BooleanField(label="Use the default signals", required=False)
    keep_awake_until = forms.DateTimeField(label="Keep awake until (UTC)", required=False,
                                           widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))

    @classmethod
    def for_instance(cls, instance) -> IdlePolicyForm:
        return cls(initial={
            "auto_hibernate": instance.auto_hibernate, "idle_gpu_threshold": instance.idle_gpu_threshold,
            "idle_window_s": instance.idle_window_s, "idle_signals": instance.idle_signals or [],
            "default_signals": instance.idle_signals is None,
            "keep_awake_until": instance.keep_awake_until.strftime("%Y-%m-%dT%H:%M") if instance.keep_awake_until else None,
        })

    def clean(self):
        data = super().clean()
        signals = None if data.pop("default_signals", False) else sorted(data.get("idle_signals") or [])
        data["idle_signals"] = signals
        return data
