"""The domain's exception family and the one DRF handler that turns it into JSON.

Every API error body is `{"error": code, "detail": human text}` (plus fields that help, such as
the current `status` on a 409).
"""

from __future__ import annotations

from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler


class DomainError(Exception):
    http_status = status.HTTP_400_BAD_REQUEST
    code = "invalid"

    def __init__(self, detail: str, *, code: str | None = None, **extra):
        super().__init__(detail)
        self.detail = detail
        if code:
            self.code = code
        self.extra = extra

    def as_body(self) -> dict:
        return {"error": self.code, "detail": self.detail, **self.extra}


class InvalidInput(DomainError):
    http_status = status.HTTP_400_BAD_REQUEST
    code = "invalid"


class Unauthenticated(DomainError):
    http_status = status.HTTP_401_UNAUTHORIZED
    code = "authentication_failed"


class NotFound(DomainError):
    http_status = status.HTTP_404_NOT_FOUND
    code = "not_found"


class Conflict(DomainError):
    http_status = status.HTTP_409_CONFLICT
    code = "conflict"


class IllegalTransition(Conflict):
    """The object's current state does not allow the action; `status` tells which state it is in."""

    code = "illegal_state"


_DRF_CODES = {
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.ParseError: "parse_error",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
}


def api_exception_handler(exc, context):
    if isinstance(exc, DomainError):
        return Response(exc.as_body(), status=exc.http_status)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        response.data = {"error": "invalid", "detail": _flatten(exc.detail), "fields": exc.detail}
        return response
    code = _DRF_CODES.get(type(exc), getattr(exc, "default_code", "error"))
    detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
    if isinstance(detail, dict):  # simplejwt's: {"detail": ..., "code": ..., "messages": [...]}
        code = str(detail.get("code") or code)
        detail = detail.get("detail", detail)
    response.data = {"error": code, "detail": str(detail)}
    return response


def _flatten(detail) -> str:
    """One readable sentence from DRF's nested validation errors."""
    if isinstance(detail, dict):
        parts = []
        for field, value in detail.items():
            text = _flatten(value)
            parts.append(text if field == "non_field_errors" else f"{field}: {text}")
        return "; ".join(parts)
    if isinstance(detail, list):
        return " ".join(_flatten(item) for item in detail)
    return str(detail)
