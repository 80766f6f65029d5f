"""Test doubles for the agent: a fake control plane over real HTTP, and a fake clock."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from agent import wire
from tests.polling import wait_for  # noqa: F401  (re-exported for the agent tests)

TOKEN = "secret-agent-token"


class FakeControlPlane:
    """The heartbeat endpoint as the agent sees it. Each heartbeat is parsed with the wire
    format's strict parser (what the real control plane does) and recorded; the reply carries
    the commands still to deliver and an interval. It can refuse connections (`refuse`/`accept`)
    or answer with another HTTP status (`status = 503`)."""

    def __init__(self, *, interval_s: float = 0.05):
        self.interval_s = interval_s
        self.status = 200
        self.heartbeats: list[wire.Heartbeat] = []
        self.rejected: list[str] = []  # bodies the wire format refused
        self.on_heartbeat: Callable[[], None] | None = None  # e.g. to stamp a fake time
        self.port = 0
        self._deliveries: list[list] = []  # [command dict, replies left or None: until acknowledged]
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler_for(self))
        self.port = self._server.server_address[1]  # kept: accept() listens on the same port again
        threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    refuse = stop
    accept = start

    def deliver(self, kind: str, args: dict | None = None, *, id: str, times: int | None = None) -> None:
        """Puts a command in the next `times` replies, or in every reply until acknowledged."""
        with self._lock:
            self._deliveries.append([{"id": id, "kind": kind, "args": args or {}}, times])

    def samples(self) -> list[wire.Sample]:
        return [sample for heartbeat in self.heartbeats for sample in heartbeat.samples]

    def updates(self, command_id: str) -> list[wire.CommandUpdate]:
        return [u for heartbeat in self.heartbeats for u in heartbeat.updates if u.id == command_id]

    def statuses(self, command_id: str) -> list[str]:
        return [update.status for update in self.updates(command_id)]

    def answer(self, authorization: str | None, body: bytes) -> tuple[int, dict]:
        if self.status != 200:
            return self.status, {"error": "unavailable" if self.status >= 500 else "refused"}
        if authorization != f"Agent {TOKEN}":
            return 401, {"error": "not_authenticated"}
        try:
            heartbeat = wire.Heartbeat.from_dict(json.loads(body))
        except ValueError as exc:
            self.rejected.append(str(exc))
            return 400, {"error": "invalid", "detail": str(exc)}
        with self._lock:
            self.heartbeats.append(heartbeat)
            if self.on_heartbeat:
                self.on_heartbeat()
            acknowledged = {update.id for update in heartbeat.updates}
            self._deliveries = [d for d in self._deliveries if not (d[1] is None and d[0]["id"] in acknowledged)]
            commands = [command for command, _ in self._deliveries]
            for delivery in self._deliveries:
                if delivery[1] is not None:
                    delivery[1] -= 1
            self._deliveries = [d for d in self._deliveries if d[1] != 0]
        reply = wire.HeartbeatReply(commands=[wire.Command.from_dict(c) for c in commands], interval_s=self.interval_s)
        return 200, reply.to_dict()


def _handler_for(plane: FakeControlPlane) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path != "/api/v1/agent/status":
                status, reply = 404, {"error": "not_found"}
            else:
                status, reply = plane.answer(self.headers.get("Authorization"), body)
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format, *args):
            pass  # the tests read the recorded heartbeats, not an access log

    return Handler


class ScenarioOver(Exception):
    """Raised by FakeTime.sleep once the scenario's end is reached, to stop the runner."""


class FakeTime:
    """A clock that moves only when the agent sleeps, with events scheduled on it."""

    def __init__(self, *, start: float = 1000.0, end: float = 10_000.0):
        self.start = self.now = start
        self.end = start + end
        self.sleeps: list[float] = []
        self._events: list[tuple[float, Callable[[], None]]] = []

    def clock(self) -> float:
        return self.now

    def elapsed(self) -> float:
        return self.now - self.start

    def at(self, elapsed: float, event: Callable[[], None]) -> None:
        self._events.append((self.start + elapsed, event))

    def stop_at(self, elapsed: float) -> None:
        self.end = self.start + elapsed

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        for event in [e for e in self._events if e[0] <= self.now]:
            self._events.remove(event)
            event[1]()
        if self.now >= self.end:
            raise ScenarioOver


def sleep_until_deadline(seconds: float) -> Callable[[float], None]:
    """time.sleep that fails the test instead of letting a stuck agent hang it."""
    deadline = time.monotonic() + seconds

    def sleep(duration: float) -> None:
        if time.monotonic() > deadline:
            raise AssertionError(f"the agent was still running after {seconds} s")
        time.sleep(duration)

    return sleep
