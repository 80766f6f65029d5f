"""The idle rule, on its own: samples in, verdict out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest

from apps.hibernation.idle import IdlePolicy, evaluate

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
INTERVAL = 10.0


@dataclass
class S:
    at: datetime
    gpu_util_max: float | None = 0.0
    gpu_error: str = ""
    ssh_sessions: int = 0
    last_input_age_s: float | None = None
    jupyter_busy_kernels: int | None = None
    cpu_percent: float = 1.0


def quiet(seconds=240, **fields) -> list[S]:
    """One sample per interval over the last `seconds`, all quiet unless fields say otherwise."""
    return [S(at=NOW - timedelta(seconds=age), **fields) for age in range(0, seconds + 1, int(INTERVAL))]


def judge(samples, policy=IdlePolicy(), healthy=True):
    return evaluate(samples, policy, now=NOW, agent_healthy=healthy, interval_s=INTERVAL)


def test_a_quiet_gpu_for_the_whole_window_is_idle():
    verdict = judge(quiet())
    assert verdict.idle and verdict.reason == "GPU under 5% and no activity for 3 min"
    assert verdict.last_activity_at is None
    assert judge(quiet(), IdlePolicy(window_s=20)).reason.endswith("for 20 s")


def test_one_busy_sample_in_the_window_keeps_it_awake_and_is_the_last_activity():
    samples = quiet()
    samples[3].gpu_util_max = 40.0  # 30 s ago
    verdict = judge(samples)
    assert not verdict.idle and "GPU at or above 5%" in verdict.reason
    assert verdict.last_activity_at == NOW - timedelta(seconds=30)


def test_busy_before_the_window_does_not_count():
    samples = quiet(400)
    samples[-1].gpu_util_max = 99.0  # 400 s ago, outside the 180 s window
    assert judge(samples).idle


def test_terminal_input_in_the_window_counts_as_use_even_at_zero_percent_gpu():
    samples = quiet(ssh_sessions=1, last_input_age_s=600)
    assert judge(samples).idle  # logged in but nobody typed for 10 minutes
    samples[0].last_input_age_s = 20  # a keystroke 20 s ago
    verdict = judge(samples)
    assert not verdict.idle and verdict.busy_signals == ["terminal input"]
    assert verdict.last_activity_at == NOW - timedelta(seconds=20)


def test_signals_are_chosen_by_the_policy():
    samples = quiet(ssh_sessions=1, last_input_age_s=5, jupyter_busy_kernels=1, cpu_percent=90)
    assert not judge(samples).idle
    assert judge(samples, IdlePolicy(signals=())).idle
    cpu_only = judge(samples, IdlePolicy(signals=("cpu",)))
    assert not cpu_only.idle and cpu_only.busy_signals == ["CPU above 50%"]
    with pytest.raises(ValueError, match="unknown idle signals"):
        IdlePolicy(signals=("mouse",))


def test_thresholds_and_window_are_the_policys():
    samples = quiet(gpu_util_max=7.0)
    assert not judge(samples).idle
    assert judge(samples, IdlePolicy(gpu_threshold=10)).idle
    assert not judge(quiet(100), IdlePolicy(window_s=180)).idle  # too young for the window
    assert judge(quiet(100), IdlePolicy(window_s=60)).idle


def test_a_silent_agent_is_never_idle():
    verdict = judge(quiet(), healthy=False)
    assert not verdict.idle and "never idle on silence" in verdict.reason


def test_a_hole_in_the_samples_is_not_idleness():
    samples = [s for s in quiet() if not (60 <= (NOW - s.at).total_seconds() <= 120)]
    verdict = judge(samples)
    assert not verdict.idle and "samples missing" in verdict.reason
    stale = quiet(240)[6:]  # the newest sample is 60 s old: the agent went quiet
    assert "samples missing" in judge(stale).reason


def test_an_unreadable_gpu_is_not_idle():
    samples = quiet()
    samples[2].gpu_util_max, samples[2].gpu_error = None, "NVML: GPU is lost"
    verdict = judge(samples)
    assert not verdict.idle and "NVML: GPU is lost" in verdict.reason


def test_keep_awake_until_wins():
    verdict = judge(quiet(), IdlePolicy(keep_awake_until=NOW + timedelta(hours=1)))
    assert not verdict.idle and "kept awake until" in verdict.reason
    assert judge(quiet(), IdlePolicy(keep_awake_until=NOW - timedelta(seconds=1))).idle
