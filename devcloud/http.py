"""HTTP plumbing: a threading server, requests and replies, routing, auth and rate limiting.

No framework: the API is small and devcloud must run with the standard library and paramiko.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from .faults import Faults

logger = logging.getLogger(__name__)


class BadRequest(Exception):
    """Becomes a 400 `invalid_args` reply."""


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    params: tuple[str, ...] = ()  # the route's captured groups

    def json(self) -> object:
        if not self.body.strip():
            return {}
        try:
            return json.loads(self.body)
        except ValueError:
            raise BadRequest("invalid json") from None

    def json_object(self) -> dict:
        value = self.json()
        if not isinstance(value, dict):
            raise BadRequest("expected a JSON object")
        return value

    def credential(self) -> str | None:
        """The key from `Authorization: Bearer KEY`, else from `?api_key=KEY`."""
        scheme, _, token = self.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return self.query.get("api_key")


@dataclass
class Response:
    status: int = 200
    body: object = None  # dict/list: JSON, str: plain text, bytes: as is
    content_type: str | None = None
    drop_connection: bool = False  # close the socket without any reply

    def encoded(self) -> tuple[bytes, str]:
        if isinstance(self.body, bytes):
            return self.body, self.content_type or "application/octet-stream"
        if isinstance(self.body, str):
            return self.body.encode(), self.content_type or "text/plain; charset=utf-8"
        return json.dumps(self.body).encode(), self.content_type or "application/json"


def error(status: int, code: str, message: str) -> Response:
    return Response(status, {"success": False, "error": code, "msg": message})


Handler = Callable[[Request], Response]


@dataclass
class Route:
    method: str
    pattern: re.Pattern
    handler: Handler
    admin: bool = False
    # Extra check for requests without the account key (the machine token on its GPU).
    alt_auth: Callable[[Request, str], bool] | None = None


@dataclass
class App:
    api_key: str
    faults: Faults
    routes: list[Route] = field(default_factory=list)

    def route(self, method: str, path: str, handler: Handler, *, admin: bool = False, alt_auth=None) -> None:
        """`path` is a regex without anchors; a trailing slash is optional, as vast's is."""
        pattern = re.compile("^" + path.rstrip("/") + "/?$")
        self.routes.append(Route(method, pattern, handler, admin, alt_auth))

    def handle(self, request: Request) -> Response:
        route, params = self._match(request)
        is_admin = route.admin if route else request.path.startswith("/_devcloud/")
        if not is_admin:
            limited = self._rate_limited()
            if limited:
                return limited
        if route is None:
            return error(404, "not_found", f"no endpoint {request.method} {request.path}")
        request.params = params
        if not self._authorized(route, request):
            return error(401, "auth_error", "Invalid user key")
        try:
            return route.handler(request)
        except BadRequest as exc:
            return error(400, "invalid_args", str(exc))

    def _match(self, request: Request) -> tuple[Route | None, tuple[str, ...]]:
        for route in self.routes:
            if route.method == request.method and (found := route.pattern.match(request.path)):
                return route, found.groups()
        return None, ()

    def _authorized(self, route: Route, request: Request) -> bool:
        credential = request.credential()
        if credential is None:
            return False
        if secrets.compare_digest(credential.encode(), self.api_key.encode()):
            return True
        return route.alt_auth is not None and route.alt_auth(request, credential)

    def _rate_limited(self) -> Response | None:
        """vast answers 429 sometimes as plain text, sometimes as JSON, never with Retry-After."""
        number = self.faults.take_numbered("rate_limit")
        if number is None:
            return None
        if number % 2 == 0:
            return Response(429, "Too Many Requests")
        return Response(429, {"detail": "API requests too frequent endpoint threshold=1.0"})


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "devcloud"
    server: DevcloudHTTPServer

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        url = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=url.path,
            query=dict(parse_qsl(url.query)),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
        )
        try:
            response = self.server.app.handle(request)
        except Exception:
            logger.exception("%s %s failed", request.method, request.path)
            response = error(500, "server_error", "devcloud failed on this request; see its log")
        if response.drop_connection:
            self.close_connection = True
            return
        self._send(response)

    def _send(self, response: Response) -> None:
        payload, content_type = response.encoded()
        self.send_response(response.status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

    def log_message(self, format: str, *args) -> None:
        logger.debug("%s %s", self.address_string(), format % args)


class DevcloudHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: App):
        super().__init__(address, _RequestHandler)
        self.app = app
