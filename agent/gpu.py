"""GPU readings: NVML on real machines, devcloud's simulated GPU on devcloud machines.

Each monitor's `read()` covers the time since its previous read. A monitor that cannot read
says why in `GpuReading.error` and leaves the GPU out: an unreadable GPU is never reported
as 0%, which the control plane would take for idle.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from statistics import mean
from typing import Protocol

from . import wire
from .config import devcloud_settings

MIB = 1024 * 1024
DEVCLOUD_POLLS_PER_INTERVAL = 5
DEVCLOUD_TIMEOUT_S = 5.0

# pynvml's sample value types -> the field of c_nvmlValue_t that holds the value
_NVML_VALUE_FIELDS = {
    "NVML_VALUE_TYPE_DOUBLE": "dVal",
    "NVML_VALUE_TYPE_UNSIGNED_INT": "uiVal",
    "NVML_VALUE_TYPE_UNSIGNED_LONG": "ulVal",
    "NVML_VALUE_TYPE_UNSIGNED_LONG_LONG": "ullVal",
    "NVML_VALUE_TYPE_SIGNED_LONG_LONG": "sllVal",
    "NVML_VALUE_TYPE_SIGNED_INT": "siVal",
    "NVML_VALUE_TYPE_UNSIGNED_SHORT": "usVal",
}


@dataclass
class GpuReading:
    gpus: list[wire.GpuSample]
    error: str | None = None


class GpuMonitor(Protocol):
    name: str

    def read(self) -> GpuReading: ...

    def close(self) -> None: ...


def open_gpu_monitor(
    backend: str,
    env: dict[str, str],
    interval_s: float,
    *,
    device_present: Callable[[], bool] | None = None,
) -> GpuMonitor:
    """The monitor for `backend`; `auto` picks NVML, else none. devcloud's simulated GPU is read
    only when asked for (`--gpu-backend devcloud`, which devcloud's machines set with
    DUMONT_GPU_BACKEND): a real machine that happens to have DEVCLOUD_URL set reads its GPU.

    Raises ConfigError when devcloud is wanted but its variables are missing.
    """
    if backend == "devcloud":
        url, machine_id, token = devcloud_settings(env)
        fetch = devcloud_fetcher(url, machine_id, token)
        return DevcloudMonitor(fetch, poll_every_s=interval_s / DEVCLOUD_POLLS_PER_INTERVAL)
    if backend == "none":
        return NoGpuMonitor("GPU monitoring is off (--gpu-backend none)")
    nvml = NvmlMonitor(_import_pynvml)
    # A machine with an NVIDIA device whose NVML fails must report the failure, not "no GPU".
    if backend == "nvml" or nvml.open() is None or (device_present or nvidia_device_present)():
        return nvml
    return NoGpuMonitor("no GPU found")


def nvidia_device_present() -> bool:
    return os.path.exists("/dev/nvidia0") or shutil.which("nvidia-smi") is not None


def _import_pynvml():
    import pynvml  # nvidia-ml-py: optional, only GPU machines install it

    return pynvml


class NoGpuMonitor:
    name = "none"

    def __init__(self, reason: str):
        self.reason = reason

    def read(self) -> GpuReading:
        return GpuReading([], self.reason)

    def close(self) -> None:
        pass


class GpuReadError(Exception):
    """One GPU could not be read; the text names the NVML call and its error."""


class NvmlMonitor:
    """Every GPU through NVML. Loading NVML is retried at each read until it works, so a
    driver that comes up after the agent is still found."""

    name = "nvml"

    def __init__(self, load: Callable[[], object]):
        self._load = load
        self._nvml = None
        self._handles: list[object] = []
        self._last_timestamp: dict[int, int] = {}  # GPU index -> newest sample already read
        self._value_fields: dict[int, str] = {}

    def open(self) -> str | None:
        """None when NVML is ready, otherwise why it is not."""
        if self._nvml is not None:
            return None
        try:
            nvml = self._load()
            nvml.nvmlInit()
            count = nvml.nvmlDeviceGetCount()
            self._handles = [nvml.nvmlDeviceGetHandleByIndex(index) for index in range(count)]
        except ImportError as exc:
            return f"NVML unavailable: nvidia-ml-py is not installed ({exc})"
        except Exception as exc:  # OSError or NVMLError (no library, no driver): each means "no NVML"
            return f"NVML unavailable: {type(exc).__name__}: {exc}"
        self._nvml = nvml
        self._value_fields = {
            getattr(nvml, constant): name for constant, name in _NVML_VALUE_FIELDS.items() if hasattr(nvml, constant)
        }
        return None

    def read(self) -> GpuReading:
        error = self.open()
        if error:
            return GpuReading([], error)
        if not self._handles:
            return GpuReading([], "NVML found no GPU")
        gpus, errors = [], []
        for index, handle in enumerate(self._handles):
            try:
                gpus.append(self._read_gpu(index, handle))
            except GpuReadError as exc:
                errors.append(f"GPU {index}: {exc}")
        return GpuReading(gpus, "; ".join(errors) or None)

    def close(self) -> None:
        if self._nvml is not None:
            with contextlib.suppress(self._nvml.NVMLError):  # the agent is stopping anyway
                self._nvml.nvmlShutdown()
            self._nvml = None

    def _read_gpu(self, index: int, handle: object) -> wire.GpuSample:
        utilization, source = self._utilization(index, handle)
        memory = self._call("nvmlDeviceGetMemoryInfo", handle)
        power_mw = self._optional("nvmlDeviceGetPowerUsage", handle)
        temperature = self._optional("nvmlDeviceGetTemperature", handle, self._nvml.NVML_TEMPERATURE_GPU)
        return wire.GpuSample(
            index=index,
            utilization=round(min(100.0, max(0.0, utilization)), 1),
            memory_used_mb=int(memory.used) // MIB,
            memory_total_mb=int(memory.total) // MIB,
            power_w=None if power_mw is None else power_mw / 1000,
            temperature_c=None if temperature is None else float(temperature),
            processes=self._pids(handle),
            utilization_source=source,
        )

    def _utilization(self, index: int, handle: object) -> tuple[float, str]:
        """The mean of the samples NVML took since the previous read, or one instant read when
        the buffer has none (NVML answers NOT_FOUND) or the GPU does not keep one."""
        nvml = self._nvml
        since = self._last_timestamp.get(index, 0)
        try:
            value_type, samples = nvml.nvmlDeviceGetSamples(handle, nvml.NVML_GPU_UTILIZATION_SAMPLES, since)
        except nvml.NVMLError as exc:
            if _code(exc) not in (nvml.NVML_ERROR_NOT_FOUND, nvml.NVML_ERROR_NOT_SUPPORTED):
                raise GpuReadError(f"nvmlDeviceGetSamples: {exc}") from exc
            samples = []
        # The buffer may still hold samples at or before `since`; only newer ones are this interval's.
        samples = [sample for sample in samples if sample.timeStamp > since]
        if samples:
            field = self._value_fields.get(value_type)
            if field is None:
                raise GpuReadError(f"nvmlDeviceGetSamples: unknown value type {value_type}")
            self._last_timestamp[index] = max(sample.timeStamp for sample in samples)
            return float(mean(getattr(sample.sampleValue, field) for sample in samples)), "samples"
        return float(self._call("nvmlDeviceGetUtilizationRates", handle).gpu), "instant"

    def _pids(self, handle: object) -> list[int]:
        pids = set()
        for call in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
            pids.update(process.pid for process in self._optional(call, handle) or [])
        return sorted(pids)

    def _call(self, name: str, *args):
        try:
            return getattr(self._nvml, name)(*args)
        except self._nvml.NVMLError as exc:
            raise GpuReadError(f"{name}: {exc}") from exc

    def _optional(self, name: str, *args):
        """None where this GPU does not support the call (many lack power readings)."""
        try:
            return self._call(name, *args)
        except GpuReadError as exc:
            if _code(exc.__cause__) == self._nvml.NVML_ERROR_NOT_SUPPORTED:
                return None
            raise


def _code(error: BaseException | None) -> int | None:
    return getattr(error, "value", None)


class DevcloudMonitor:
    """devcloud's simulated GPU, polled several times per interval in a thread and averaged at
    each read, as NVML's samples buffer is on a real machine."""

    name = "devcloud"

    def __init__(self, fetch: Callable[[], list[dict]], *, poll_every_s: float):
        self._fetch = fetch
        self._poll_every_s = poll_every_s
        self._lock = threading.Lock()
        self._polls: list[list[dict]] = []
        self._last_error: str | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._poll_until_closed, name="devcloud-gpu", daemon=True)
        self._thread.start()

    def read(self) -> GpuReading:
        with self._lock:
            polls, self._polls = self._polls, []
            error, self._last_error = self._last_error, None
        if not polls:
            return GpuReading([], error or "devcloud GPU: no reading yet")
        return GpuReading(average_devcloud_polls(polls))

    def close(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=DEVCLOUD_TIMEOUT_S + 1)

    def _poll_until_closed(self) -> None:
        while not self._stopped.is_set():
            self._poll_once()
            self._stopped.wait(self._poll_every_s)

    def _poll_once(self) -> None:
        try:
            gpus = self._fetch()
        except (OSError, ValueError) as exc:  # urllib errors are OSErrors; bad JSON is a ValueError
            with self._lock:
                self._last_error = f"devcloud GPU read failed: {exc}"
            return
        with self._lock:
            self._polls.append(gpus)


def devcloud_fetcher(url: str, machine_id: str, token: str) -> Callable[[], list[dict]]:
    def fetch() -> list[dict]:
        request = urllib.request.Request(
            f"{url}/_devcloud/machines/{machine_id}/gpu", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=DEVCLOUD_TIMEOUT_S) as reply:
            return parse_devcloud_gpus(json.load(reply))

    return fetch


def parse_devcloud_gpus(body: object) -> list[dict]:
    gpus = body.get("gpus") if isinstance(body, dict) else None
    if not isinstance(gpus, list) or not all(map(_is_devcloud_gpu, gpus)):
        raise ValueError(f"unexpected devcloud GPU reply: {str(body)[:200]}")
    return gpus


def _is_devcloud_gpu(gpu: object) -> bool:
    return (
        isinstance(gpu, dict)
        and isinstance(gpu.get("index"), int)
        and isinstance(gpu.get("utilization"), (int, float))
        and isinstance(gpu.get("memory_used_mb", 0), int)
        and isinstance(gpu.get("memory_total_mb", 0), int)
    )


def average_devcloud_polls(polls: list[list[dict]]) -> list[wire.GpuSample]:
    by_index: dict[int, list[dict]] = {}
    for poll in polls:
        for gpu in poll:
            by_index.setdefault(int(gpu["index"]), []).append(gpu)
    return [
        wire.GpuSample(
            index=index,
            utilization=round(mean(float(gpu["utilization"]) for gpu in readings), 1),
            memory_used_mb=round(mean(int(gpu.get("memory_used_mb", 0)) for gpu in readings)),
            memory_total_mb=int(readings[-1].get("memory_total_mb", 0)),
            utilization_source="devcloud",
        )
        for index, readings in sorted(by_index.items())
    ]
