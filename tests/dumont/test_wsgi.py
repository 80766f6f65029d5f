import io
import json

from dumont.wsgi import AGENT_STATUS_PATH, application


def _call(path: str, method: str = "GET", body: bytes = b"") -> tuple[str, dict, bytes]:
    environ = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80",
        "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)), "CONTENT_TYPE": "application/json",
        "wsgi.url_scheme": "http",
    }
    seen = {}

    def start_response(status, headers):
        seen.update(status=status, headers=dict(headers))

    content = b"".join(application(environ, start_response))
    return seen["status"], seen["headers"], content


def test_heartbeats_take_the_lean_handler_and_still_answer_api_errors(db):
    status, headers, content = _call(AGENT_STATUS_PATH, "POST", b"{}")
    assert status.startswith("401")
    assert json.loads(content)["error"] == "not_authenticated"
    assert "X-Frame-Options" not in headers  # the page middleware did not run


def test_pages_keep_the_full_middleware_stack(db):
    status, headers, _ = _call("/")
    assert status.startswith("302") and headers["Location"].startswith("/login/")
    assert headers["X-Frame-Options"] == "DENY"
