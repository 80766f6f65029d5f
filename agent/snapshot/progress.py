"""Progress of a long snapshot or restore: bytes, files, rate and ETA, reported at most a few
times a second to a callback (the agent forwards it through the command channel)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

Callback = Callable[[dict], None]
MIN_INTERVAL_S = 0.5


class Progress:
    def __init__(self, callback: Callback | None, *, total_bytes: int, total_files: int, phase: str):
        self._callback = callback
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._last_report = 0.0
        self.phase = phase
        self.total_bytes = total_bytes
        self.total_files = total_files
        self.bytes = 0
        self.files = 0

    def advance(self, *, nbytes: int = 0, files: int = 0) -> None:
        with self._lock:
            self.bytes += nbytes
            self.files += files
            now = time.monotonic()
            if self._callback is None or now - self._last_report < MIN_INTERVAL_S:
                return
            self._last_report = now
            report = self._report(now)
        self._callback(report)

    def set_totals(self, *, total_bytes: int, total_files: int) -> None:
        """The real totals, once known (a snapshot stores files while it is still scanning)."""
        with self._lock:
            self.total_bytes, self.total_files = total_bytes, total_files

    def finish(self) -> None:
        if self._callback is not None:
            with self._lock:
                report = self._report(time.monotonic())
            self._callback(report)

    def _report(self, now: float) -> dict:
        elapsed = max(now - self._started, 1e-6)
        rate = self.bytes / elapsed
        remaining = max(self.total_bytes - self.bytes, 0)
        return {
            "phase": self.phase,
            "bytes": self.bytes,
            "total_bytes": self.total_bytes,
            "files": self.files,
            "total_files": self.total_files,
            "bytes_per_s": round(rate),
            "eta_s": round(remaining / rate, 1) if rate > 0 and remaining > 0 else None,
        }
