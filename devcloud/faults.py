"""Fault knobs that tests turn on through `/_devcloud/faults`.

Counters say how many of the next events misbehave; each event takes one. Values stay in force
until changed or reset. See the package docstring for what each knob does exactly.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

from .delays import BootClock

COUNTERS = (
    "vanish_offers",
    "stuck_loading",
    "exit_after_running",
    "oci_error",
    "rate_limit",
    "lose_create_reply",
)
SECONDS = ("ssh_delay_s", "exit_delay_s")
DEFAULT_SECONDS = {"ssh_delay_s": 0.0, "exit_delay_s": 0.5}


@dataclass(frozen=True)
class MachineFaults:
    """What goes wrong with one machine, decided when it is created; applies to each boot."""

    stuck_loading: bool = False
    exit_after_running: bool = False
    oci_error: bool = False
    ssh_delay_s: float = 0.0
    exit_delay_s: float = 0.5

    def flags(self) -> list[str]:
        return [name for name in ("stuck_loading", "exit_after_running", "oci_error") if getattr(self, name)]


class Faults:
    def __init__(self, clock: BootClock):
        self._lock = threading.Lock()
        self.clock = clock
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._seconds = dict(DEFAULT_SECONDS)
        self._served = {"rate_limit": 0, "lose_create_reply": 0}

    def update(self, changes: object) -> None:
        """Merge knobs; raises ValueError (and changes nothing) on any bad key or value."""
        if not isinstance(changes, dict):
            raise ValueError("expected a JSON object of fault knobs")
        counters, seconds, clock = {}, {}, {}
        for name, value in changes.items():
            if name in COUNTERS:
                counters[name] = _count(name, value)
            elif name in SECONDS:
                seconds[name] = _seconds(name, value)
            elif name == "boot_delay":
                clock["spec"] = value
            elif name == "time_scale":
                clock["time_scale"] = value
            else:
                raise ValueError(f"unknown fault knob {name!r}")
        self.clock.set(**clock)  # validates before anything else changes
        with self._lock:
            self._counters.update(counters)
            self._seconds.update(seconds)

    def reset(self) -> None:
        self.clock.reset()
        with self._lock:
            self._counters = dict.fromkeys(COUNTERS, 0)
            self._seconds = dict(DEFAULT_SECONDS)

    def describe(self) -> dict:
        with self._lock:
            state = {**self._counters, **self._seconds}
        return {**state, **self.clock.describe()}

    def take(self, name: str) -> bool:
        """Consume one from a counter; True when this event must misbehave."""
        with self._lock:
            if self._counters[name] <= 0:
                return False
            self._counters[name] -= 1
            return True

    def take_numbered(self, name: str) -> int | None:
        """Like take, but also says how many of this kind were served before (0, 1, 2, ...), so
        replies can alternate between their forms."""
        with self._lock:
            if self._counters[name] <= 0:
                return None
            self._counters[name] -= 1
            number = self._served[name]
            self._served[name] += 1
            return number

    def for_new_machine(self) -> MachineFaults:
        with self._lock:
            seconds = dict(self._seconds)
        return MachineFaults(
            stuck_loading=self.take("stuck_loading"),
            exit_after_running=self.take("exit_after_running"),
            oci_error=self.take("oci_error"),
            **seconds,
        )


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return value


def _seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")
    return float(value)
