"""The agents' endpoint: heartbeats in, pending commands out. Authenticated by agent token."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from agent import wire
from dumont.errors import InvalidInput

from . import agent_services
from .serializers import ErrorSerializer

SCHEME = "Agent"


class AgentPrincipal:
    """Who claims to speak: the holder of an agent token (checked with the heartbeat itself)."""

    is_authenticated = True

    def __init__(self, token: str):
        self.token = token


class AgentTokenAuthentication(BaseAuthentication):
    """`Authorization: Agent <token>`; JWTs and sessions do not open this endpoint.

    The token is verified by the same statement that stores the heartbeat (one round trip);
    here it is only read.
    """

    def authenticate(self, request):
        scheme, _, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme != SCHEME:
            return None
        if not token.strip():
            raise AuthenticationFailed("empty agent token")
        return AgentPrincipal(token.strip()), token.strip()

    def authenticate_header(self, request):
        return SCHEME


class AgentTokenScheme(OpenApiAuthenticationExtension):
    target_class = AgentTokenAuthentication
    name = "agentToken"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": "Authorization",
                "description": "`Agent <token>`: the per-instance token handed to the machine at install"}


HEARTBEAT_DOC = inline_serializer("Heartbeat", {
    "instance_id": serializers.CharField(), "agent_version": serializers.CharField(),
    "seq": serializers.IntegerField(), "samples": serializers.ListField(child=serializers.DictField()),
    "updates": serializers.ListField(child=serializers.DictField()),
})
REPLY_DOC = inline_serializer("HeartbeatReply", {
    "commands": serializers.ListField(child=serializers.DictField()), "interval_s": serializers.FloatField(),
})


class AgentStatusView(APIView):
    authentication_classes = [AgentTokenAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="agent_status",
        request=HEARTBEAT_DOC,
        responses={200: REPLY_DOC, 400: ErrorSerializer, 401: ErrorSerializer, 404: ErrorSerializer},
        description="An agent's heartbeat: samples since the last one (many after an outage) and "
        "command progress. The reply carries commands not yet acknowledged. Wire format: agent/wire.py.",
    )
    def post(self, request):
        try:
            heartbeat = wire.Heartbeat.from_dict(request.data)
        except wire.WireError as exc:
            raise InvalidInput(f"malformed heartbeat: {exc}", code="bad_heartbeat") from None
        reply = agent_services.agent_heartbeat_record(token=request.auth, heartbeat=heartbeat)
        return Response(reply.to_dict())
