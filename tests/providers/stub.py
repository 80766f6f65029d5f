"""A scripted HTTP server on loopback for what devcloud cannot be made to say.

The provider code runs unchanged against it (real sockets, real requests.Session); only the
remote end is scripted. Everything devcloud can produce is tested against devcloud instead.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: object = None  # dict/list → JSON, str → plain text, None → empty
    delay_s: float = 0.0


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    json: object


@dataclass
class StubServer:
    """Replies are queued per (method, path); the last one queued keeps answering."""

    url: str
    requests: list[Received] = field(default_factory=list)
    _replies: dict[tuple[str, str], deque] = field(default_factory=lambda: defaultdict(deque))

    def reply(self, method: str, path: str, *replies: Reply) -> None:
        self._replies[(method, path)].extend(replies)

    def received(self, method: str, path: str) -> list[Received]:
        return [r for r in self.requests if (r.method, r.path) == (method, path)]

    def next_reply(self, method: str, path: str) -> Reply:
        queue = self._replies.get((method, path))
        if not queue:
            return Reply(418, f"stub: nothing scripted for {method} {path}")
        return queue.popleft() if len(queue) > 1 else queue[0]


class _Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def _answer(self) -> None:
        stub: StubServer = self.server.stub
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        stub.requests.append(
            Received(
                method=self.command,
                path=url.path,
                query=parse_qs(url.query),
                headers=dict(self.headers),
                json=json.loads(raw) if raw else None,
            )
        )
        reply = stub.next_reply(self.command, url.path)
        time.sleep(reply.delay_s)
        try:
            self._send(reply)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped waiting: what a delayed reply is for

    def _send(self, reply: Reply) -> None:
        if isinstance(reply.body, str):
            payload, content_type = reply.body.encode(), "text/plain"
        elif reply.body is None:
            payload, content_type = b"", "text/plain"
        else:
            payload, content_type = json.dumps(reply.body).encode(), "application/json"
        self.send_response(reply.status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, format, *args) -> None:
        pass


@contextlib.contextmanager
def running_stub() -> Iterator[StubServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.stub = StubServer(url=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield server.stub
    finally:
        server.shutdown()
        server.server_close()
