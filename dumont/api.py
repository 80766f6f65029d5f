"""What every DRF endpoint shares: the error body, the Idempotency-Key header, the actor."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    """Every API error: `{"error": code, "detail": text}` (dumont.errors)."""

    error = serializers.CharField(help_text="Machine-readable code")
    detail = serializers.CharField(help_text="What went wrong, for humans")
    status = serializers.CharField(required=False, help_text="The object's current state (409 only)")


IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
    description="Repeat a request safely: the first response is replayed for the same key.",
)
ERRORS = {
    400: ErrorSerializer, 401: ErrorSerializer, 404: ErrorSerializer, 409: ErrorSerializer,
}


def actor_of(request) -> str:
    """Who acts, as the audit trail names them."""
    return f"user:{request.user.get_username()}"
