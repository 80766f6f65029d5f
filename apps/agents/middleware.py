"""The heartbeat's fast path: a middleware that answers POST /api/v1/agent/status itself.

Sessions, CSRF, auth, messages and htmx do nothing for an agent's heartbeat (token-authenticated,
JSON in and out) yet cost a good part of its CPU, on the hottest path of the control plane. So
settings.MIDDLEWARE lists this right after SecurityMiddleware and the provider guard: those two
see heartbeats, and every middleware listed below it does not, nor does URL resolution. The
same stack serves WSGI and ASGI. Place a middleware above this one if heartbeats need it too.
"""

from __future__ import annotations

from agent.wire import STATUS_PATH

from .api import agent_status


class HeartbeatFastPath:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path_info != STATUS_PATH:
            return self.get_response(request)
        response = agent_status(request)
        # What CommonMiddleware would add: with a length the agent's connection can be kept alive.
        response["Content-Length"] = str(len(response.content))
        return response
