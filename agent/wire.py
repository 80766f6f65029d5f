"""What the agent and the control plane say to each other: the heartbeat and its reply.

Plain dataclasses with to_dict/from_dict; the control plane imports this module (never the
other way round). `from_dict` is strict about types, so a malformed heartbeat is rejected with
a message instead of being stored half-read.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

PROTOCOL_VERSION = 1
# Where the agent posts its heartbeats, on the control plane's URL.
STATUS_PATH = "/api/v1/agent/status"

COMMAND_KINDS = ("snapshot", "restore", "stop_agent", "echo")
UPDATE_STATUSES = ("acknowledged", "running", "succeeded", "failed")


class WireError(ValueError):
    """A message does not follow the wire format; the text says where."""


def _get(data: dict, name: str, kinds: type | tuple[type, ...], *, optional: bool = False) -> Any:
    if not isinstance(data, dict):
        raise WireError(f"expected an object, got {type(data).__name__}")
    if name not in data or data[name] is None:
        if optional:
            return None
        raise WireError(f"{name} is required")
    value = data[name]
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise WireError(f"{name} must be {_names(kinds)}, got a boolean")
    if not isinstance(value, kinds):
        raise WireError(f"{name} must be {_names(kinds)}, got {type(value).__name__}")
    return value


def _names(kinds) -> str:
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    return " or ".join(k.__name__ for k in kinds)


def _list(data: dict, name: str, parse, *, limit: int) -> list:
    items = _get(data, name, list, optional=True) or []
    if len(items) > limit:
        raise WireError(f"{name} has {len(items)} items, at most {limit} allowed")
    out = []
    for position, item in enumerate(items):
        try:
            out.append(parse(item))
        except WireError as exc:
            raise WireError(f"{name}[{position}]: {exc}") from None
    return out


NUMBER = (int, float)


@dataclass
class GpuSample:
    index: int
    utilization: float  # percent, averaged over the interval from NVML's samples buffer
    memory_used_mb: int = 0
    memory_total_mb: int = 0
    power_w: float | None = None
    temperature_c: float | None = None
    processes: list[int] = field(default_factory=list)  # pids holding GPU memory
    # "samples": averaged from NVML's samples buffer; "instant": one read, the buffer was empty
    # or unsupported; "devcloud": averaged polls of devcloud's simulated GPU.
    utilization_source: str | None = None

    @classmethod
    def from_dict(cls, data: dict) -> GpuSample:
        utilization = float(_get(data, "utilization", NUMBER))
        if not 0 <= utilization <= 100:
            raise WireError(f"utilization {utilization} is outside 0-100")
        return cls(
            index=_get(data, "index", int),
            utilization=utilization,
            memory_used_mb=_get(data, "memory_used_mb", int, optional=True) or 0,
            memory_total_mb=_get(data, "memory_total_mb", int, optional=True) or 0,
            power_w=_get(data, "power_w", NUMBER, optional=True),
            temperature_c=_get(data, "temperature_c", NUMBER, optional=True),
            processes=[int(p) for p in (_get(data, "processes", list, optional=True) or [])],
            utilization_source=_get(data, "utilization_source", str, optional=True),
        )


@dataclass
class Activity:
    ssh_sessions: int = 0  # logged-in SSH/terminal sessions
    last_input_age_s: float | None = None  # since the latest keystroke on any of them
    jupyter_busy_kernels: int | None = None  # None: no Jupyter server found
    cpu_load_1m: float = 0.0
    cpu_percent: float = 0.0  # over the interval, all cores
    net_rx_bytes_per_s: float = 0.0
    net_tx_bytes_per_s: float = 0.0

    @classmethod
    def from_dict(cls, data: dict) -> Activity:
        return cls(
            ssh_sessions=_get(data, "ssh_sessions", int, optional=True) or 0,
            last_input_age_s=_get(data, "last_input_age_s", NUMBER, optional=True),
            jupyter_busy_kernels=_get(data, "jupyter_busy_kernels", int, optional=True),
            cpu_load_1m=float(_get(data, "cpu_load_1m", NUMBER, optional=True) or 0),
            cpu_percent=float(_get(data, "cpu_percent", NUMBER, optional=True) or 0),
            net_rx_bytes_per_s=float(_get(data, "net_rx_bytes_per_s", NUMBER, optional=True) or 0),
            net_tx_bytes_per_s=float(_get(data, "net_tx_bytes_per_s", NUMBER, optional=True) or 0),
        )


@dataclass
class Sample:
    at: float  # unix time at the end of the interval
    gpus: list[GpuSample] = field(default_factory=list)
    gpu_error: str | None = None  # NVML failed: reported as such, never as 0%
    activity: Activity = field(default_factory=Activity)

    @classmethod
    def from_dict(cls, data: dict) -> Sample:
        activity = _get(data, "activity", dict, optional=True)
        return cls(
            at=float(_get(data, "at", NUMBER)),
            gpus=_list(data, "gpus", GpuSample.from_dict, limit=16),
            gpu_error=_get(data, "gpu_error", str, optional=True),
            activity=Activity.from_dict(activity) if activity else Activity(),
        )

    @property
    def max_gpu_utilization(self) -> float | None:
        return max((g.utilization for g in self.gpus), default=None)


@dataclass
class CommandUpdate:
    id: str
    status: str  # acknowledged | running | succeeded | failed
    progress: dict | None = None  # e.g. {"bytes": .., "total_bytes": .., "files": ..}
    result: dict | None = None
    error: str | None = None

    @classmethod
    def from_dict(cls, data: dict) -> CommandUpdate:
        status = _get(data, "status", str)
        if status not in UPDATE_STATUSES:
            raise WireError(f"status {status!r} is not one of {', '.join(UPDATE_STATUSES)}")
        return cls(
            id=_get(data, "id", str),
            status=status,
            progress=_get(data, "progress", dict, optional=True),
            result=_get(data, "result", dict, optional=True),
            error=_get(data, "error", str, optional=True),
        )


@dataclass
class Heartbeat:
    instance_id: str
    agent_version: str
    seq: int  # increases by one per heartbeat sent, replays included
    samples: list[Sample] = field(default_factory=list)  # oldest first; many after an outage
    updates: list[CommandUpdate] = field(default_factory=list)
    protocol: int = PROTOCOL_VERSION

    MAX_SAMPLES = 720  # two hours of 10 s samples kept for replay

    @classmethod
    def from_dict(cls, data: dict) -> Heartbeat:
        return cls(
            instance_id=_get(data, "instance_id", str),
            agent_version=_get(data, "agent_version", str),
            seq=_get(data, "seq", int),
            samples=_list(data, "samples", Sample.from_dict, limit=cls.MAX_SAMPLES),
            updates=_list(data, "updates", CommandUpdate.from_dict, limit=100),
            protocol=_get(data, "protocol", int, optional=True) or PROTOCOL_VERSION,
        )

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Command:
    id: str
    kind: str
    args: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict) -> Command:
        return cls(id=_get(data, "id", str), kind=_get(data, "kind", str),
                   args=_get(data, "args", dict, optional=True) or {})


@dataclass
class HeartbeatReply:
    commands: list[Command] = field(default_factory=list)  # pending, until acknowledged
    interval_s: float = 10.0

    @classmethod
    def from_dict(cls, data: dict) -> HeartbeatReply:
        return cls(
            commands=_list(data, "commands", Command.from_dict, limit=100),
            interval_s=float(_get(data, "interval_s", NUMBER, optional=True) or 10.0),
        )

    def to_dict(self) -> dict:
        return asdict(self)
