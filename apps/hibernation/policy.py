"""An instance's idle policy: its own settings where it has them, the global ones otherwise."""

from __future__ import annotations

from django.conf import settings

from .idle import IdlePolicy


def policy_for(instance) -> IdlePolicy:
    return IdlePolicy(
        gpu_threshold=_first(instance.idle_gpu_threshold, settings.DUMONT_IDLE_GPU_THRESHOLD),
        window_s=_first(instance.idle_window_s, settings.DUMONT_IDLE_WINDOW),
        signals=tuple(_first(instance.idle_signals, settings.DUMONT_IDLE_SIGNALS)),
        keep_awake_until=instance.keep_awake_until,
    )


def _first(own, default):
    return default if own is None else own
