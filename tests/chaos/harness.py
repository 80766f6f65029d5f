"""What the chaos suite and bench/chaos_soak.py break things with.

- `FaultProxy`: a TCP relay in front of one service (PostgreSQL, Redis, the S3 store, the
  provider's API). Every process of the stack reaches the service through it, so the test can
  make the service die for them (`down`: open connections reset, new ones refused, as when the
  process is killed) or hang (`pause`: connections stay open and nothing moves, as when the
  process is stopped or its host stops answering), then come back (`up`).
- `Stack`: Dumont's own processes as `make run` starts them, web and a Celery worker with its
  beat, pointed at the proxies; the worker can be killed with SIGKILL and started again.

The test process itself talks to the services directly: it watches the database and checks the
snapshots while the stack cannot.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UP, DOWN, PAUSED = "up", "down", "paused"


class FaultProxy:
    def __init__(self, name: str, host: str, port: int):
        self.name, self.target = name, (host, port)
        self.state = UP
        self._lock = threading.Condition()
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._closed = False
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._listener: socket.socket | None = None
        self._listen()

    def __repr__(self) -> str:
        return f"<FaultProxy {self.name} :{self.port} -> {self.target[1]} {self.state}>"

    # --- faults ----------------------------------------------------------------------------

    def down(self) -> None:
        """The service dies: every open connection is reset and new ones are refused."""
        with self._lock:
            self.state = DOWN
            pairs, self._pairs = self._pairs, set()
            listener, self._listener = self._listener, None
            self._lock.notify_all()
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            except OSError:
                pass
            listener.close()
        for pair in pairs:
            for sock in pair:
                _reset(sock)

    def pause(self) -> None:
        """The service hangs: connections are accepted and kept, but no byte moves either way."""
        with self._lock:
            if self.state == DOWN:
                self._listen()
            self.state = PAUSED

    def up(self) -> None:
        with self._lock:
            if self.state == DOWN:
                self._listen()
            self.state = UP
            self._lock.notify_all()

    def close(self) -> None:
        self._closed = True
        self.down()

    # --- relaying --------------------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for _ in range(50):  # the old socket's port can take a moment to be free again
            try:
                listener.bind(("127.0.0.1", self.port))
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError(f"{self.name} proxy cannot listen on port {self.port} again")
        listener.listen(256)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True, name=f"proxy-{self.name}").start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by down() or close()
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=10)
            upstream.settimeout(None)
        except OSError:
            _reset(client)
            return
        pair = (client, upstream)
        with self._lock:
            if self.state == DOWN:
                _reset(client), _reset(upstream)
                return
            self._pairs.add(pair)
        for src, dst in (pair, pair[::-1]):
            threading.Thread(target=self._pump, args=(src, dst, pair), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, pair) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self._lock:
                    while self.state == PAUSED:
                        self._lock.wait()
                    if pair not in self._pairs:
                        return
                dst.sendall(data)
        except OSError:
            pass
        with self._lock:
            if pair not in self._pairs:
                return
            self._pairs.discard(pair)
        for sock in pair:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


def _reset(sock: socket.socket) -> None:
    """Close with RST, as a dead peer's kernel answers. shutdown() first: it wakes the relay
    thread blocked reading the socket (close alone would leave the connection open)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, *, timeout: float, process: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode}:\n{_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing answers on port {port} after {timeout}s:\n{_tail(log)}")


def _tail(path: Path | None, size: int = 4000) -> str:
    return path.read_text(errors="replace")[-size:] if path and path.exists() else ""


class Stack:
    """Dumont's web server and a Celery worker with its beat, as separate processes. Like a
    process supervisor (systemd's Restart=always) it starts the worker again when it exits on
    its own, which it does when it loses Redis (kombu's Redis transport fails while closing the
    broken channel); `crashes` counts those."""

    def __init__(self, env: dict[str, str], logs: Path):
        self.env, self.logs = env, logs
        self.web_port = free_port()
        self.url = f"http://127.0.0.1:{self.web_port}"
        self.env["SITE_URL"] = self.env["DUMONT_AGENT_CONTROL_URL"] = self.url
        self.web: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []  # every one started: stop() ends them all
        self.worker_starts = 0
        self.crashes = 0
        self._lock = threading.Lock()
        self._worker_down = False  # killed on purpose: the supervisor leaves it down
        self._stopping = threading.Event()

    def start(self) -> Stack:
        log = self.logs / "web.log"
        self.web = self._spawn([sys.executable, "manage.py", "runserver", f"127.0.0.1:{self.web_port}",
                                "--noreload"], log)
        self.start_worker()
        wait_for_port(self.web_port, timeout=60, process=self.web, log=log)
        threading.Thread(target=self._supervise, daemon=True, name="supervisor").start()
        return self

    def start_worker(self, *, wait: bool = True) -> None:
        """Start the worker unless it runs (the supervisor may have been quicker)."""
        with self._lock:
            self._worker_down = False
            if self._stopping.is_set() or (self.worker is not None and self.worker.poll() is None):
                return
            self.worker_starts += 1
            log = self.logs / f"worker-{self.worker_starts}.log"
            self.worker = self._spawn(
                [sys.executable, "-m", "celery", "-A", "dumont", "worker", "--beat",  # beat as make run's
                 "--pool", "threads", "--concurrency", "6", "--loglevel", "INFO",
                 "--without-heartbeat", "--without-gossip", "--without-mingle"], log)
            self.workers.append(self.worker)
            worker = self.worker
        deadline = time.monotonic() + 60
        while wait and "ready." not in _tail(log, 100_000):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start:\n{_tail(log)}")
            time.sleep(0.1)

    def kill_worker(self) -> None:
        """SIGKILL to its process group: the worker and its beat (a child process) die with
        whatever they were doing, as when their machine or container goes."""
        with self._lock:
            self._worker_down = True
            _signal_group(self.worker, signal.SIGKILL)
            self.worker.wait()

    def _supervise(self) -> None:
        while not self._stopping.wait(0.5):
            with self._lock:
                exited = self.worker.poll() is not None and not self._worker_down
            if exited:
                self.crashes += 1
                self.start_worker(wait=False)

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:  # no start from the supervisor after this
            processes = [*self.workers, self.web]
        for process in processes:
            if process is None:
                continue
            _signal_group(process, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
            _signal_group(process, signal.SIGKILL)  # what is left of its group: an orphaned beat, say
            process.wait()

    def _spawn(self, argv: list[str], log: Path) -> subprocess.Popen:
        """In a process group of its own, so that a kill takes its children too."""
        return subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **self.env}, stdout=open(log, "a"),
                                stderr=subprocess.STDOUT, start_new_session=True)


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except ProcessLookupError:
        pass
