"""Boot delay specs: how long a simulated machine takes from create (or start) to running.

A spec is one of
    fixed:SECONDS
    uniform:LO,HI
    lognormal:median=M,p90=P
and every sample is multiplied by the time scale, so tests can keep realistic shapes
(`lognormal:median=60,p90=180`) and still run in milliseconds (`--time-scale 0.005`).
"""

from __future__ import annotations

import math
import random
import threading
from dataclasses import dataclass

DEFAULT_SPEC = "lognormal:median=60,p90=180"

# z-score of the 90th percentile of a standard normal distribution.
_Z90 = 1.2815515655446004


@dataclass(frozen=True)
class BootDelay:
    spec: str
    kind: str
    params: tuple[float, ...]

    def sample(self, rng: random.Random) -> float:
        """Unscaled seconds."""
        if self.kind == "fixed":
            return self.params[0]
        if self.kind == "uniform":
            low, high = self.params
            return rng.uniform(low, high)
        median, p90 = self.params
        sigma = math.log(p90 / median) / _Z90
        return rng.lognormvariate(math.log(median), sigma)


def parse_boot_delay(spec: str) -> BootDelay:
    """Parse a spec; raises ValueError with a readable message on anything malformed."""
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(
            f"boot delay must look like 'fixed:S', 'uniform:LO,HI' or 'lognormal:median=M,p90=P', got {spec!r}"
        )
    kind, _, args = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "fixed":
        params = (_non_negative(args, spec),)
    elif kind == "uniform":
        parts = args.split(",")
        if len(parts) != 2:
            raise ValueError(f"uniform needs LO,HI: {spec!r}")
        params = (_non_negative(parts[0], spec), _non_negative(parts[1], spec))
        if params[0] > params[1]:
            raise ValueError(f"uniform needs LO <= HI: {spec!r}")
    elif kind == "lognormal":
        params = _lognormal_params(args, spec)
    else:
        raise ValueError(f"unknown boot delay kind {kind!r} in {spec!r}")
    return BootDelay(spec=spec, kind=kind, params=params)


def parse_time_scale(value: object) -> float:
    try:
        scale = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"time scale must be a number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(scale) or scale < 0:
        raise ValueError(f"time scale must be a finite number >= 0, got {value!r}")
    return scale


class BootClock:
    """The boot delay and time scale in force; both can change at runtime (admin API)."""

    def __init__(self, spec: str, time_scale: float, seed: int):
        self._lock = threading.Lock()
        self._rng = random.Random(f"boot-{seed}")
        self.initial = (parse_boot_delay(spec), parse_time_scale(time_scale))
        self.delay, self.time_scale = self.initial

    def set(self, *, spec: str | None = None, time_scale: float | None = None) -> None:
        delay = parse_boot_delay(spec) if spec is not None else None
        scale = parse_time_scale(time_scale) if time_scale is not None else None
        with self._lock:
            self.delay = delay or self.delay
            self.time_scale = self.time_scale if scale is None else scale

    def reset(self) -> None:
        with self._lock:
            self.delay, self.time_scale = self.initial

    def sample_seconds(self) -> float:
        """One boot's delay in real (scaled) seconds."""
        with self._lock:
            return self.delay.sample(self._rng) * self.time_scale

    def describe(self) -> dict:
        with self._lock:
            return {"boot_delay": self.delay.spec, "time_scale": self.time_scale}


def _non_negative(text: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"not a number: {text!r} in {spec!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"seconds must be finite and >= 0: {text!r} in {spec!r}")
    return value


def _lognormal_params(args: str, spec: str) -> tuple[float, float]:
    values: dict[str, float] = {}
    for part in args.split(","):
        name, _, text = part.partition("=")
        values[name.strip().lower()] = _non_negative(text, spec)
    if set(values) != {"median", "p90"}:
        raise ValueError(f"lognormal needs median=M,p90=P: {spec!r}")
    median, p90 = values["median"], values["p90"]
    if median <= 0 or p90 < median:
        raise ValueError(f"lognormal needs 0 < median <= p90: {spec!r}")
    if p90 == median:
        return median, median * (1 + 1e-9)  # degenerate: effectively fixed
    return median, p90
