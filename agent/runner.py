"""The agent's main loop: a sample every interval, a heartbeat with everything not yet delivered.

Sampling and sending keep separate schedules. While the control plane answers, each sample
goes out at once. While it does not, samples still come every interval into a bounded buffer,
and sending is retried on an exponential backoff; when it answers again, the buffer is replayed
oldest first. After `protect_after_s` without an answer the agent protects the workspace and
stops, and a token the control plane rejects (the instance is gone) stops it at once.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from . import __version__, wire
from .activity import ActivityMonitor
from .client import ControlPlane, TokenRejected, Unreachable
from .commands import MAX_UPDATES_PER_HEARTBEAT, CommandRunner
from .gpu import GpuMonitor

log = logging.getLogger("dumont.agent")

EXIT_STOPPED = 0  # a stop_agent command, done and reported
EXIT_CONFIG = 2
EXIT_TOKEN_REJECTED = 3
EXIT_PROTECTED = 4
BACKOFF_CAP_S = 60.0


class Sampler:
    """One wire.Sample covering the time since the previous one."""

    def __init__(self, gpu: GpuMonitor, activity: ActivityMonitor, *, wall_clock: Callable[[], float] = time.time):
        self.gpu = gpu
        self.activity = activity
        self._wall_clock = wall_clock

    def __call__(self) -> wire.Sample:
        reading = self.gpu.read()
        activity = self.activity.read()
        return wire.Sample(
            at=round(self._wall_clock(), 3), gpus=reading.gpus, gpu_error=reading.error, activity=activity
        )


class Backoff:
    """Exponential backoff with full jitter: the n-th failure in a row waits a random time up to
    min(cap, base * 2**n), so agents cut off together do not all come back at the same instant."""

    def __init__(self, *, base_s: float, cap_s: float = BACKOFF_CAP_S, jitter: Callable[[], float] = random.random):
        self.base_s = base_s
        self.cap_s = cap_s
        self._jitter = jitter
        self.failures = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap_s, self.base_s * 2**self.failures)
        self.failures += 1
        return ceiling * self._jitter()

    def reset(self) -> None:
        self.failures = 0


class SampleBuffer:
    """Samples not yet delivered, oldest first; when full, the oldest gives way."""

    def __init__(self, capacity: int):
        self._samples: deque[wire.Sample] = deque()
        self.capacity = capacity
        self.dropped = 0  # since the last delivery

    def add(self, sample: wire.Sample) -> wire.Sample | None:
        """Adds `sample`; returns the sample dropped to make room, if any."""
        self._samples.append(sample)
        if len(self._samples) <= self.capacity:
            return None
        self.dropped += 1
        return self._samples.popleft()

    def oldest(self, count: int) -> list[wire.Sample]:
        return [self._samples[position] for position in range(min(count, len(self._samples)))]

    def remove_oldest(self, count: int) -> None:
        for _ in range(count):
            self._samples.popleft()

    def __len__(self) -> int:
        return len(self._samples)


@dataclass
class Timing:
    interval_s: float
    protect_after_s: float
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    jitter: Callable[[], float] = random.random  # a number in [0, 1) for the backoff


class Runner:
    def __init__(
        self,
        *,
        instance_id: str,
        control_plane: ControlPlane,
        sampler: Callable[[], wire.Sample],
        commands: CommandRunner,
        timing: Timing,
        protect: Callable[[], None],
        buffer_size: int = wire.Heartbeat.MAX_SAMPLES,
        samples_per_heartbeat: int = wire.Heartbeat.MAX_SAMPLES,
    ):
        self.instance_id = instance_id
        self.control_plane = control_plane
        self.sampler = sampler
        self.commands = commands
        self.timing = timing
        self.interval_s = timing.interval_s
        self.protect = protect
        self.buffer = SampleBuffer(buffer_size)
        self.samples_per_heartbeat = samples_per_heartbeat
        self.backoff = Backoff(base_s=timing.interval_s, jitter=timing.jitter)
        self.seq = 0

    def run(self) -> int:
        """Runs until there is a reason to stop; returns the process exit status."""
        clock = self.timing.clock
        self._last_contact = clock()
        self._next_sample_at = self._last_contact + self.interval_s
        self._next_send_at = self._last_contact  # at once: the control plane learns the agent is up
        while True:
            if clock() >= self._next_sample_at:
                self._collect()
            if clock() >= self._next_send_at:
                status = self._send()
                if status is not None:
                    return status
            self.timing.sleep(max(0.0, min(self._next_sample_at, self._next_send_at) - clock()))

    def _collect(self) -> None:
        now = self.timing.clock()
        self._next_sample_at += self.interval_s
        if self._next_sample_at <= now:  # late (a slow heartbeat): no burst of catch-up samples
            self._next_sample_at = now + self.interval_s
        try:
            sample = self.sampler()
        except Exception:  # a reading this agent cannot parse must not stop its heartbeats
            log.exception("taking a sample failed; skipping it")
            return
        dropped = self.buffer.add(sample)
        if dropped is not None:
            log.warning(
                "sample buffer full (%d samples): dropped the oldest (taken at %.0f); %d dropped so far",
                self.buffer.capacity,
                dropped.at,
                self.buffer.dropped,
            )

    def _send(self) -> int | None:
        """Delivers what waits; returns an exit status when the agent must stop."""
        failures = self.backoff.failures
        try:
            delivered = self._deliver()
        except TokenRejected as exc:
            log.error("control plane rejected this agent's token (%s): the instance is gone; exiting", exc)
            return EXIT_TOKEN_REJECTED
        except Unreachable as exc:
            return self._retry_later(str(exc))
        if failures:
            log.info(
                "control plane reachable again after %d failed attempts; delivered %d buffered samples",
                failures,
                delivered,
            )
        self._on_contact()
        if self.commands.stop_requested.is_set() and not self.commands.outbox:
            log.info("stop_agent done and reported; exiting")
            return EXIT_STOPPED
        return None

    def _deliver(self) -> int:
        """Sends buffered samples and command updates, in as many heartbeats as they need;
        returns how many samples went. Raises on the first failure, keeping what did not go."""
        delivered = 0
        while True:
            samples = self.buffer.oldest(self.samples_per_heartbeat)
            updates = self.commands.outbox.take(MAX_UPDATES_PER_HEARTBEAT)
            self.seq += 1
            heartbeat = wire.Heartbeat(
                instance_id=self.instance_id, agent_version=__version__, seq=self.seq, samples=samples, updates=updates
            )
            try:
                reply = self.control_plane.post_heartbeat(heartbeat)
            except Exception:
                self.commands.outbox.undelivered()
                raise
            self.buffer.remove_oldest(len(samples))
            self.commands.outbox.delivered()
            delivered += len(samples)
            self._obey(reply)
            if not self.buffer and len(updates) < MAX_UPDATES_PER_HEARTBEAT:
                return delivered

    def _obey(self, reply: wire.HeartbeatReply) -> None:
        if reply.interval_s > 0 and reply.interval_s != self.interval_s:
            log.info("control plane set the interval to %g s (was %g s)", reply.interval_s, self.interval_s)
            self.interval_s = self.backoff.base_s = reply.interval_s
            self._next_sample_at = min(self._next_sample_at, self.timing.clock() + self.interval_s)
        self.commands.receive(reply.commands)

    def _on_contact(self) -> None:
        self.backoff.reset()
        self.buffer.dropped = 0
        self._last_contact = self.timing.clock()
        self._next_send_at = self._next_sample_at  # the next heartbeat carries the next sample

    def _retry_later(self, reason: str) -> int | None:
        unreachable_for = self.timing.clock() - self._last_contact
        if unreachable_for >= self.timing.protect_after_s:
            log.critical(
                "control plane unreachable for %.1f s (%s), the limit is %g s: protecting the workspace, then stopping",
                unreachable_for,
                reason,
                self.timing.protect_after_s,
            )
            self.protect()
            return EXIT_PROTECTED
        # Never sleep past the protection deadline: protection must not wait on a long backoff.
        delay = min(self.backoff.next_delay(), self.timing.protect_after_s - unreachable_for)
        log.warning(
            "control plane unreachable (%s); retrying in %.1f s; %d samples buffered", reason, delay, len(self.buffer)
        )
        self._next_send_at = self.timing.clock() + delay
        return None
