"""The agents' endpoint: heartbeats in, pending commands out. Authenticated by agent token.

A plain Django view rather than DRF: it is the hottest path of the control plane (every machine,
every interval), and DRF's request wrapping, negotiation and rendering cost about as much again
as the work itself; and it is reached before the page middleware runs (middleware.py). It
answers in the API's error format all the same, and its OpenAPI entry is added by
`dumont.openapi.add_agent_status`.
"""

from __future__ import annotations

import json

from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from agent import wire
from dumont.errors import DomainError

from .heartbeats import agent_heartbeat_record

SCHEME = "Agent"


def _error(status: int, code: str, detail: str) -> JsonResponse:
    response = JsonResponse({"error": code, "detail": detail}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = SCHEME
    if status == 405:
        response["Allow"] = "POST"
    return response


@csrf_exempt  # agents authenticate with their token, never with cookies
def agent_status(request):
    if request.method != "POST":
        return _error(405, "method_not_allowed", f"method {request.method} not allowed; POST a heartbeat")
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme != SCHEME or not token.strip():
        return _error(401, "not_authenticated", f"send the agent's token as 'Authorization: {SCHEME} <token>'")
    try:
        sent = json.loads(request.body)
        heartbeat = wire.Heartbeat.from_dict(sent)
    except ValueError as exc:  # WireError is a ValueError, and so is bad JSON
        code = "bad_heartbeat" if isinstance(exc, wire.WireError) else "parse_error"
        return _error(400, code, f"malformed heartbeat: {exc}")
    try:
        reply = agent_heartbeat_record(token=token.strip(), heartbeat=heartbeat, sent=sent)
    except DomainError as exc:
        return JsonResponse(exc.as_body(), status=exc.http_status)
    return JsonResponse(reply.to_dict())
