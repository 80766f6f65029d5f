"""What every DRF endpoint shares: the error body, the Idempotency-Key header, the actor."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination


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


class StrictLimitOffsetPagination(LimitOffsetPagination):
    """`limit` and `offset` as DRF reads them, but a value that is not a whole number (or a negative
    one) is a 400 naming the parameter instead of being silently replaced by the default."""

    max_limit = 1000

    def get_limit(self, request):
        self._check(request, self.limit_query_param, minimum=1, maximum=self.max_limit)
        return super().get_limit(request)

    def get_offset(self, request):
        self._check(request, self.offset_query_param, minimum=0)
        return super().get_offset(request)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        bounds = {self.limit_query_param: {"minimum": 1, "maximum": self.max_limit},
                  self.offset_query_param: {"minimum": 0}}
        for parameter in parameters:
            parameter["schema"].update(bounds.get(parameter["name"], {}))
        return parameters

    @staticmethod
    def _check(request, name: str, *, minimum: int, maximum: int | None = None) -> None:
        values = request.query_params.getlist(name)
        if len(values) > 1:
            raise ValidationError({name: f"give {name} once"})
        if not values:
            return
        within = values[0].isascii() and values[0].isdigit() and int(values[0]) >= minimum
        if not within or (maximum is not None and int(values[0]) > maximum):
            allowed = f"from {minimum} to {maximum}" if maximum is not None else f"of at least {minimum}"
            raise ValidationError({name: f"{name} must be a whole number {allowed}, got {values[0]!r}"})
