"""The WSGI and ASGI entry points serve the same stack: heartbeats take the fast path
(apps.agents.middleware) past the page middleware, pages keep all of it."""

import asyncio
import io
import json

from asgiref.testing import ApplicationCommunicator
from django.urls import reverse

from agent.wire import STATUS_PATH
from dumont.asgi import application as asgi_application
from dumont.wsgi import application as wsgi_application


def _wsgi(path: str, method: str = "GET", body: bytes = b"") -> tuple[str, dict, bytes]:
    environ = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80",
        "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)), "CONTENT_TYPE": "application/json",
        "wsgi.url_scheme": "http",
    }
    seen = {}

    def start_response(status, headers):
        seen.update(status=status, headers=dict(headers))

    content = b"".join(wsgi_application(environ, start_response))
    return seen["status"].split()[0], seen["headers"], content


def _asgi(path: str, method: str = "GET", body: bytes = b"") -> tuple[str, dict, bytes]:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")],
        "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 50000),
    }

    async def call():
        communicator = ApplicationCommunicator(asgi_application, scope)
        await communicator.send_input({"type": "http.request", "body": body, "more_body": False})
        start = await communicator.receive_output(10)
        content = b""
        while True:
            message = await communicator.receive_output(10)
            content += message.get("body", b"")
            if not message.get("more_body"):
                return start, content

    start, content = asyncio.run(call())
    headers = {name.decode(): value.decode() for name, value in start["headers"]}
    return str(start["status"]), headers, content


def test_the_agents_endpoint_is_where_the_fast_path_looks():
    assert reverse("agents:status") == STATUS_PATH


def test_heartbeats_take_the_fast_path_under_wsgi_and_asgi_and_still_answer_api_errors(db):
    for call in (_wsgi, _asgi):
        status, headers, content = call(STATUS_PATH, "POST", b"{}")
        assert status == "401", call.__name__
        assert json.loads(content)["error"] == "not_authenticated"
        assert headers["Content-Length"] == str(len(content))  # so the agent's connection can be kept alive
        assert "X-Frame-Options" not in headers  # the page middleware did not run
        assert headers["X-Content-Type-Options"] == "nosniff"  # SecurityMiddleware, above the fast path, did


def test_pages_keep_the_full_middleware_stack_under_wsgi_and_asgi(db):
    for call in (_wsgi, _asgi):
        status, headers, _ = call("/")
        assert status == "302" and headers["Location"].startswith("/login/"), call.__name__
        assert headers["X-Frame-Options"] == "DENY"
