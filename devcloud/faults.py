"""Fault knobs that tests turn on through `/_devcloud/faults`.

Counters say how many of the next events misbehave; each event takes one. Values stay in force
until changed or reset. See the package docstring for what each knob does exactly.
"""

from __future__ import annotations

import math
import random
import threading
from dataclasses import dataclass, replace

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
MACHINE_FLAGS = ("stuck_loading", "exit_after_running", "oci_error")
PROFILE_SECONDS = ("boot_delay_s", "ssh_delay_s", "exit_delay_s", "create_delay_s")
# Share of new machines that never become ready or die, as on a real marketplace.
DEFAULT_FAIL_RATE = 0.1


@dataclass(frozen=True)
class MachineFaults:
    """What goes wrong with one machine, decided when it is created; applies to each boot."""

    stuck_loading: bool = False
    exit_after_running: bool = False
    oci_error: bool = False
    ssh_delay_s: float = 0.0
    exit_delay_s: float = 0.5
    boot_delay_s: float | None = None  # real seconds for every boot; None: from the boot clock
    create_delay_s: float = 0.0  # real seconds the create request takes before the machine exists

    def flags(self) -> list[str]:
        return [name for name in MACHINE_FLAGS if getattr(self, name)]


class Faults:
    def __init__(self, clock: BootClock, *, fail_rate: float = 0.0, seed: int = 1):
        self._lock = threading.Lock()
        self.clock = clock
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._seconds = dict(DEFAULT_SECONDS)
        self._served = {"rate_limit": 0, "lose_create_reply": 0}
        self._initial_fail_rate = self._fail_rate = parse_fail_rate(fail_rate)
        self._profiles: list[MachineFaults] = []
        self._rng = random.Random(f"faults-{seed}")

    def update(self, changes: object) -> None:
        """Merge knobs; raises ValueError (and changes nothing) on any bad key or value."""
        if not isinstance(changes, dict):
            raise ValueError("expected a JSON object of fault knobs")
        counters, seconds, clock, rest = {}, {}, {}, {}
        for name, value in changes.items():
            if name in COUNTERS:
                counters[name] = _count(name, value)
            elif name in SECONDS:
                seconds[name] = _seconds(name, value)
            elif name == "fail_rate":
                rest["fail_rate"] = parse_fail_rate(value)
            elif name == "machine_profiles":
                rest["profiles"] = _profiles(value)
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
            self._fail_rate = rest.get("fail_rate", self._fail_rate)
            self._profiles = rest.get("profiles", self._profiles)

    def reset(self) -> None:
        self.clock.reset()
        with self._lock:
            self._counters = dict.fromkeys(COUNTERS, 0)
            self._seconds = dict(DEFAULT_SECONDS)
            self._fail_rate = self._initial_fail_rate
            self._profiles = []

    def describe(self) -> dict:
        with self._lock:
            state = {**self._counters, **self._seconds, "fail_rate": self._fail_rate}
            state["machine_profiles"] = [_describe_profile(profile) for profile in self._profiles]
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

    def take_profile(self) -> MachineFaults | None:
        """The next queued machine profile (machine_profiles knob), if any."""
        with self._lock:
            return self._profiles.pop(0) if self._profiles else None

    def for_new_machine(self, profile: MachineFaults | None = None) -> MachineFaults:
        """A queued profile wins; else the counters; else, at fail_rate, one random fault."""
        if profile is not None:
            return profile
        with self._lock:
            seconds = dict(self._seconds)
        faults = MachineFaults(
            stuck_loading=self.take("stuck_loading"),
            exit_after_running=self.take("exit_after_running"),
            oci_error=self.take("oci_error"),
            **seconds,
        )
        if not faults.flags():
            with self._lock:
                unlucky = self._rng.random() < self._fail_rate
                flag = self._rng.choice(MACHINE_FLAGS)
            if unlucky:
                faults = replace(faults, **{flag: True})
        return faults


def parse_fail_rate(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"fail_rate must be a number from 0 to 1, got {value!r}")
    return float(value)


def _profiles(value: object) -> list[MachineFaults]:
    """machine_profiles: a list of objects, each the faults of one of the next machines created."""
    if not isinstance(value, list):
        raise ValueError("machine_profiles must be a list of objects")
    profiles = []
    for item in value:
        if not isinstance(item, dict):
            raise ValueError(f"a machine profile must be an object, got {item!r}")
        fields: dict[str, object] = dict(DEFAULT_SECONDS)
        for name, knob in item.items():
            if name in MACHINE_FLAGS:
                if not isinstance(knob, bool):
                    raise ValueError(f"{name} must be true or false, got {knob!r}")
                fields[name] = knob
            elif name in PROFILE_SECONDS:
                fields[name] = _seconds(name, knob)
            else:
                raise ValueError(f"unknown machine profile key {name!r}")
        profiles.append(MachineFaults(**fields))
    return profiles


def _describe_profile(profile: MachineFaults) -> dict:
    return {
        **{name: True for name in profile.flags()},
        **{name: getattr(profile, name) for name in PROFILE_SECONDS if getattr(profile, name) is not None},
    }


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return value


def _seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")
    return float(value)
