"""The idle rule: is an instance's machine unused, judged from its agent's recent samples?

Idle means, over the whole window (default 3 minutes): every sample's busiest GPU under the
threshold (default 5%), and none of the activity signals the policy counts showing use:
- `ssh_input`: a terminal session with a keystroke inside the window (light interactive GPU
  work reads 0% in NVML, so a person typing counts as use);
- `jupyter`: a Jupyter kernel busy in any sample;
- `cpu`: CPU above `cpu_threshold` percent in any sample (off by default: data loaders and
  compiles count as use only when asked).
Never idle: a "keep awake until" in the future; an agent that is not healthy (silence is not
idleness); a GPU the agent could not read; samples that do not cover the whole window (a gap
of more than two intervals, or an agent younger than the window).

`evaluate` is pure: the beat task feeds it the samples and the time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from apps.instances.models import IDLE_SIGNALS as SIGNALS

DEFAULT_SIGNALS = ("ssh_input", "jupyter")


@dataclass(frozen=True)
class IdlePolicy:
    gpu_threshold: float = 5.0  # percent, busiest GPU
    window_s: float = 180.0
    signals: tuple = DEFAULT_SIGNALS
    cpu_threshold: float = 50.0  # percent of all cores, for the `cpu` signal
    keep_awake_until: datetime | None = None

    def __post_init__(self):
        unknown = set(self.signals) - set(SIGNALS)
        if unknown:
            raise ValueError(f"unknown idle signals {sorted(unknown)}; known: {', '.join(SIGNALS)}")


@dataclass(frozen=True)
class Verdict:
    idle: bool
    reason: str  # why it is idle, or what keeps it awake
    last_activity_at: datetime | None = None  # the newest moment a counted use was seen
    busy_signals: list = field(default_factory=list)


def evaluate(samples: list, policy: IdlePolicy, *, now: datetime, agent_healthy: bool,
             interval_s: float) -> Verdict:
    """`samples`: objects with at, gpu_util_max, gpu_error, ssh_sessions, last_input_age_s,
    jupyter_busy_kernels, cpu_percent (AgentSample rows), any order."""
    ordered = sorted(samples, key=lambda sample: sample.at)
    last_activity = last_activity_in(ordered, policy)
    if policy.keep_awake_until is not None and policy.keep_awake_until > now:
        return Verdict(False, f"kept awake until {policy.keep_awake_until:%Y-%m-%d %H:%M} UTC", last_activity)
    if not agent_healthy:
        return Verdict(False, "the agent is not reporting; an instance is never idle on silence", last_activity)
    start = now - timedelta(seconds=policy.window_s)
    window = [sample for sample in ordered if sample.at > start]
    gap = _coverage_gap(ordered, start, now, interval_s)
    if gap:
        return Verdict(False, gap, last_activity)
    unreadable = [sample for sample in window if sample.gpu_util_max is None]
    if unreadable:
        error = unreadable[-1].gpu_error or "no GPU reading"
        return Verdict(False, f"the GPU could not be read ({error})", last_activity)
    busy = [name for name, check in _checks(policy, start) if any(check(sample) for sample in window)]
    if busy:
        return Verdict(False, "in use: " + ", ".join(busy), last_activity, busy)
    return Verdict(True, f"GPU under {policy.gpu_threshold:g}% and no activity for {_duration(policy.window_s)}",
                   last_activity)


def _duration(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 and seconds % 60 == 0 else f"{seconds:g} s"


def _checks(policy: IdlePolicy, start: datetime) -> list:
    checks = [(f"GPU at or above {policy.gpu_threshold:g}%",
               lambda s: s.gpu_util_max is not None and s.gpu_util_max >= policy.gpu_threshold)]
    if "ssh_input" in policy.signals:
        checks.append(("terminal input", lambda s: _input_at(s) is not None and _input_at(s) > start))
    if "jupyter" in policy.signals:
        checks.append(("busy Jupyter kernel", lambda s: (s.jupyter_busy_kernels or 0) > 0))
    if "cpu" in policy.signals:
        checks.append((f"CPU above {policy.cpu_threshold:g}%", lambda s: s.cpu_percent > policy.cpu_threshold))
    return checks


def _input_at(sample) -> datetime | None:
    if not sample.ssh_sessions or sample.last_input_age_s is None:
        return None
    return sample.at - timedelta(seconds=sample.last_input_age_s)


def last_activity_in(ordered: list, policy: IdlePolicy) -> datetime | None:
    """The newest time a sample showed counted use (GPU, input, kernels, CPU)."""
    newest = None
    for sample in ordered:
        used = sample.gpu_util_max is None or sample.gpu_util_max >= policy.gpu_threshold
        used = used or ("jupyter" in policy.signals and (sample.jupyter_busy_kernels or 0) > 0)
        used = used or ("cpu" in policy.signals and sample.cpu_percent > policy.cpu_threshold)
        moment = sample.at if used else None
        if "ssh_input" in policy.signals and _input_at(sample) is not None:
            moment = max(filter(None, [moment, _input_at(sample)]))
        if moment is not None and (newest is None or moment > newest):
            newest = moment
    return newest


def _coverage_gap(ordered: list, start: datetime, now: datetime, interval_s: float) -> str:
    """'' when samples cover [start, now] with no hole longer than two intervals."""
    allowed = timedelta(seconds=2 * interval_s)
    covering = [sample.at for sample in ordered if sample.at >= start - allowed]
    if not covering or covering[0] > start + allowed:
        return "not enough samples yet to cover the idle window"
    for before, after in zip([*covering, now], [*covering[1:], now]):
        if after - before > allowed:
            return f"samples missing around {before:%H:%M:%S} UTC"
    return ""
