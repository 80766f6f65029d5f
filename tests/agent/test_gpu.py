"""The NVML backend against a fake pynvml module, backend selection, and devcloud averaging."""

from __future__ import annotations

import sys
import time
import types
from dataclasses import dataclass, field

import pytest

from agent.config import ConfigError
from agent.gpu import (
    DevcloudMonitor,
    NoGpuMonitor,
    NvmlMonitor,
    average_devcloud_polls,
    open_gpu_monitor,
    parse_devcloud_gpus,
)

MIB = 1024 * 1024
NOT_SUPPORTED, NOT_FOUND, DRIVER_NOT_LOADED, GPU_IS_LOST = 3, 6, 9, 15
ERROR_TEXT = {NOT_SUPPORTED: "Not Supported", NOT_FOUND: "Not Found", DRIVER_NOT_LOADED: "Driver Not Loaded",
              GPU_IS_LOST: "GPU is lost"}


class NVMLError(Exception):
    def __init__(self, value):
        self.value = value

    def __str__(self):
        return ERROR_TEXT[self.value]


@dataclass
class FakeGpu:
    samples: list[tuple[int, int]] = field(default_factory=list)  # (timestamp µs, utilization %)
    instant: int = 0
    used: int = 1024 * MIB
    total: int = 81559 * MIB
    power_mw: int | None = 72_500
    temperature: int = 41
    compute_pids: list[int] = field(default_factory=list)
    graphics_pids: list[int] = field(default_factory=list)
    failing: dict[str, int] = field(default_factory=dict)  # NVML function -> error code
    samples_asked_since: list[int] = field(default_factory=list)


def fake_pynvml(gpus: list[FakeGpu], *, init_error: int | None = None) -> types.ModuleType:
    """The slice of pynvml the agent uses, answering as NVML does (NOT_FOUND: no new samples)."""
    nvml = types.ModuleType("pynvml")
    nvml.NVMLError = NVMLError
    nvml.NVML_ERROR_NOT_SUPPORTED, nvml.NVML_ERROR_NOT_FOUND = NOT_SUPPORTED, NOT_FOUND
    nvml.NVML_GPU_UTILIZATION_SAMPLES, nvml.NVML_TEMPERATURE_GPU = 1, 0
    nvml.NVML_VALUE_TYPE_DOUBLE, nvml.NVML_VALUE_TYPE_UNSIGNED_INT = 0, 1
    nvml.shutdowns = 0

    def init():
        if init_error is not None:
            raise NVMLError(init_error)

    def call(name):
        def decorate(function):
            def checked(gpu, *args):
                if name in gpu.failing:
                    raise NVMLError(gpu.failing[name])
                return function(gpu, *args)

            setattr(nvml, name, checked)

        return decorate

    @call("nvmlDeviceGetSamples")
    def samples(gpu, kind, since):
        assert kind == nvml.NVML_GPU_UTILIZATION_SAMPLES
        gpu.samples_asked_since.append(since)
        newer = [
            types.SimpleNamespace(timeStamp=at, sampleValue=types.SimpleNamespace(uiVal=value))
            for at, value in gpu.samples if at > since
        ]
        if not newer:
            raise NVMLError(NOT_FOUND)
        return nvml.NVML_VALUE_TYPE_UNSIGNED_INT, newer

    @call("nvmlDeviceGetUtilizationRates")
    def rates(gpu):
        return types.SimpleNamespace(gpu=gpu.instant, memory=0)

    @call("nvmlDeviceGetMemoryInfo")
    def memory(gpu):
        return types.SimpleNamespace(used=gpu.used, total=gpu.total, free=gpu.total - gpu.used)

    @call("nvmlDeviceGetPowerUsage")
    def power(gpu):
        if gpu.power_mw is None:
            raise NVMLError(NOT_SUPPORTED)
        return gpu.power_mw

    @call("nvmlDeviceGetTemperature")
    def temperature(gpu, sensor):
        return gpu.temperature

    @call("nvmlDeviceGetComputeRunningProcesses")
    def compute(gpu):
        return [types.SimpleNamespace(pid=pid, usedGpuMemory=MIB) for pid in gpu.compute_pids]

    @call("nvmlDeviceGetGraphicsRunningProcesses")
    def graphics(gpu):
        return [types.SimpleNamespace(pid=pid, usedGpuMemory=MIB) for pid in gpu.graphics_pids]

    def shutdown():
        nvml.shutdowns += 1

    nvml.nvmlInit = init
    nvml.nvmlShutdown = shutdown
    nvml.nvmlDeviceGetCount = lambda: len(gpus)
    nvml.nvmlDeviceGetHandleByIndex = lambda index: gpus[index]
    return nvml


def nvml_monitor(*gpus: FakeGpu) -> NvmlMonitor:
    module = fake_pynvml(list(gpus))
    return NvmlMonitor(lambda: module)


def test_utilization_is_the_mean_of_the_samples_taken_since_the_previous_read():
    gpu = FakeGpu(samples=[(1_000_000, 10), (1_200_000, 30), (1_400_000, 80)])
    monitor = nvml_monitor(gpu)

    first = monitor.read()
    gpu.samples += [(1_600_000, 0), (1_800_000, 4)]
    second = monitor.read()

    assert (first.gpus[0].utilization, first.gpus[0].utilization_source) == (40.0, "samples")
    assert (second.gpus[0].utilization, second.gpus[0].utilization_source) == (2.0, "samples")
    assert gpu.samples_asked_since == [0, 1_400_000]  # each read covers exactly the new samples


def test_an_empty_or_unsupported_samples_buffer_falls_back_to_one_instant_read():
    quiet = FakeGpu(samples=[], instant=7)
    old_gpu = FakeGpu(instant=55, failing={"nvmlDeviceGetSamples": NOT_SUPPORTED})

    reading = nvml_monitor(quiet, old_gpu).read()

    assert [(g.index, g.utilization, g.utilization_source) for g in reading.gpus] == [
        (0, 7.0, "instant"), (1, 55.0, "instant")
    ]
    assert reading.error is None


def test_memory_power_temperature_and_processes_are_reported():
    gpu = FakeGpu(samples=[(1, 99)], compute_pids=[300, 100], graphics_pids=[100, 200])

    [sample] = nvml_monitor(gpu).read().gpus

    assert (sample.memory_used_mb, sample.memory_total_mb) == (1024, 81559)
    assert (sample.power_w, sample.temperature_c) == (72.5, 41.0)
    assert sample.processes == [100, 200, 300]


def test_readings_a_gpu_does_not_support_are_left_empty_not_failed():
    gpu = FakeGpu(samples=[(1, 5)], power_mw=None, failing={"nvmlDeviceGetGraphicsRunningProcesses": NOT_SUPPORTED})

    reading = nvml_monitor(gpu).read()

    assert reading.error is None
    assert (reading.gpus[0].power_w, reading.gpus[0].processes) == (None, [])


def test_an_nvml_error_is_reported_and_the_gpu_left_out_never_read_as_zero():
    healthy = FakeGpu(samples=[(1, 12)])
    lost = FakeGpu(samples=[(1, 0)], failing={"nvmlDeviceGetMemoryInfo": GPU_IS_LOST})
    broken_buffer = FakeGpu(failing={"nvmlDeviceGetSamples": GPU_IS_LOST})

    reading = nvml_monitor(healthy, lost, broken_buffer).read()

    assert [g.index for g in reading.gpus] == [0]
    assert reading.error == "GPU 1: nvmlDeviceGetMemoryInfo: GPU is lost; GPU 2: nvmlDeviceGetSamples: GPU is lost"


def test_nvml_that_will_not_start_is_an_error_and_is_tried_again_at_the_next_read():
    gpu = FakeGpu(samples=[(1, 50)])
    modules = [fake_pynvml([gpu], init_error=DRIVER_NOT_LOADED), fake_pynvml([gpu])]
    monitor = NvmlMonitor(lambda: modules.pop(0))

    assert monitor.read().error == "NVML unavailable: NVMLError: Driver Not Loaded"
    assert monitor.read().gpus[0].utilization == 50.0


def test_close_shuts_nvml_down():
    module = fake_pynvml([FakeGpu()])
    monitor = NvmlMonitor(lambda: module)
    monitor.read()
    monitor.close()
    assert module.shutdowns == 1


def test_auto_uses_nvml_when_it_loads(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([FakeGpu(samples=[(1, 64)])]))

    monitor = open_gpu_monitor("auto", {}, 10, device_present=lambda: False)

    assert monitor.name == "nvml"
    assert monitor.read().gpus[0].utilization == 64.0


def test_a_gpu_machine_whose_nvml_cannot_load_reports_the_failure_not_no_gpu(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` raises ImportError

    monitor = open_gpu_monitor("auto", {}, 10, device_present=lambda: True)
    reading = monitor.read()

    assert monitor.name == "nvml"
    assert reading.gpus == []
    assert reading.error.startswith("NVML unavailable: nvidia-ml-py is not installed (")


def test_auto_never_reads_a_simulated_gpu_because_devcloud_variables_are_set(monkeypatch):
    """Only `--gpu-backend devcloud` (DUMONT_GPU_BACKEND) reads devcloud: a real machine that
    happens to carry DEVCLOUD_URL reads its own GPU, and reports NVML's failure, never 0%."""
    monkeypatch.setitem(sys.modules, "pynvml", None)
    env = {"DEVCLOUD_URL": "http://127.0.0.1:9", "DEVCLOUD_MACHINE_ID": "1", "DEVCLOUD_MACHINE_TOKEN": "t"}

    monitor = open_gpu_monitor("auto", env, 10, device_present=lambda: True)

    assert monitor.name == "nvml" and monitor.read().error.startswith("NVML unavailable")


def test_a_machine_without_gpu_or_nvml_says_no_gpu_found(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)

    monitor = open_gpu_monitor("auto", {}, 10, device_present=lambda: False)

    assert isinstance(monitor, NoGpuMonitor)
    assert (monitor.read().gpus, monitor.read().error) == ([], "no GPU found")
    assert open_gpu_monitor("none", {}, 10).read().error == "GPU monitoring is off (--gpu-backend none)"


def test_nvml_with_no_device_is_an_error():
    assert nvml_monitor().read().error == "NVML found no GPU"


def test_the_devcloud_backend_needs_its_variables():
    with pytest.raises(ConfigError, match="DEVCLOUD_MACHINE_ID, DEVCLOUD_MACHINE_TOKEN"):
        open_gpu_monitor("devcloud", {"DEVCLOUD_URL": "http://127.0.0.1:9"}, 10)
    with pytest.raises(ConfigError, match="DEVCLOUD_URL"):
        open_gpu_monitor("devcloud", {}, 10)


def test_devcloud_polls_are_averaged_per_gpu():
    polls = [
        [{"index": 0, "utilization": 40, "memory_used_mb": 100, "memory_total_mb": 800},
         {"index": 1, "utilization": 0, "memory_used_mb": 0, "memory_total_mb": 800}],
        [{"index": 0, "utilization": 80, "memory_used_mb": 300, "memory_total_mb": 800},
         {"index": 1, "utilization": 0, "memory_used_mb": 0, "memory_total_mb": 800}],
    ]

    gpus = average_devcloud_polls(polls)

    assert [(g.index, g.utilization, g.memory_used_mb, g.memory_total_mb) for g in gpus] == [
        (0, 60.0, 200, 800), (1, 0.0, 0, 800)
    ]


@pytest.mark.parametrize(
    "body", [{}, [], {"gpus": "x"}, {"gpus": [{"index": 0}]}, {"gpus": [{"index": "0", "utilization": 1}]}]
)
def test_an_unexpected_devcloud_reply_is_refused(body):
    with pytest.raises(ValueError, match="unexpected devcloud GPU reply"):
        parse_devcloud_gpus(body)


def test_the_devcloud_monitor_averages_its_polls_and_reports_failures():
    values = iter([20, 40, 60] + [0] * 1000)
    monitor = DevcloudMonitor(lambda: [{"index": 0, "utilization": next(values)}], poll_every_s=0.001)
    time.sleep(0.05)
    monitor.close()
    assert 0 < monitor.read().gpus[0].utilization < 40  # 20, 40, 60 and then many zeros

    def unreachable():
        raise ConnectionRefusedError(111, "Connection refused")

    failing = DevcloudMonitor(unreachable, poll_every_s=0.001)
    time.sleep(0.02)
    failing.close()
    assert failing.read().error == "devcloud GPU read failed: [Errno 111] Connection refused"
