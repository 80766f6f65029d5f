"""The control plane's heartbeat endpoint, through the standard library's urllib."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

from . import __version__, wire

# The control plane answers these when the token no longer speaks for an instance: it was
# destroyed, or the token was never its own. Retrying cannot help.
TOKEN_REJECTED_CODES = (401, 403, 404)


class TokenRejected(Exception):
    """The control plane refuses this agent's token; the text says how it answered."""


class Unreachable(Exception):
    """A heartbeat did not get through but may later; the text is the short reason."""


class ControlPlane:
    def __init__(self, url: str, token: str, *, timeout_s: float = 10.0):
        self.url = url.rstrip("/")
        self._token = token
        self.timeout_s = timeout_s

    def post_heartbeat(self, heartbeat: wire.Heartbeat) -> wire.HeartbeatReply:
        request = urllib.request.Request(
            self.url + wire.STATUS_PATH,
            data=json.dumps(heartbeat.to_dict()).encode(),
            method="POST",
            headers={
                "Authorization": f"Agent {self._token}",
                "Content-Type": "application/json",
                "User-Agent": f"dumont-agent/{__version__}",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as reply:
                body = reply.read()
        except urllib.error.HTTPError as exc:
            raise _http_failure(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            raise Unreachable(_network_reason(exc)) from None
        try:
            return wire.HeartbeatReply.from_dict(json.loads(body))
        except ValueError as exc:  # bad JSON, or a WireError
            raise Unreachable(f"unreadable reply: {exc}") from None


def _http_failure(error: urllib.error.HTTPError) -> Exception:
    detail = " ".join(error.read(300).decode(errors="replace").split())  # one log line
    message = f"HTTP {error.code}" + (f": {detail}" if detail else "")
    if error.code in TOKEN_REJECTED_CODES:
        return TokenRejected(message)
    return Unreachable(message)


def _network_reason(error: OSError) -> str:
    """ConnectionRefused, timeout, Name resolution failed...: short enough for one log line."""
    reason = getattr(error, "reason", error)  # URLError wraps the socket error
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return "timeout"
    if isinstance(reason, ConnectionError):  # refused, reset, aborted: the name says it all
        return type(reason).__name__.removesuffix("Error")
    if isinstance(reason, OSError) and not isinstance(reason, urllib.error.URLError):
        return f"{type(reason).__name__}: {reason.strerror or reason}"
    return str(reason)
