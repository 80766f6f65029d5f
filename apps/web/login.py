"""Logins, throttled: the API's (JWT) and the page's, by the same counters.

Failed attempts are counted per account (the username as typed, whether or not it exists, so the
answer never tells which accounts exist) and per client address, in the cache (Redis: shared by
every web worker), for DUMONT_LOGIN_FAILURE_WINDOW. Past DUMONT_LOGIN_FAILURES_PER_ACCOUNT for
an account, or DUMONT_LOGIN_FAILURES_PER_ADDRESS from one address, attempts are refused with
429 and how long to wait, before the password is even checked. A successful login clears its
account's count.
"""

from __future__ import annotations

import hashlib
import time

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.core.cache import cache
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import AuthenticationFailed, Throttled
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from dumont.api import ErrorSerializer


def _keys(username: str, address: str) -> list[tuple[str, int]]:
    account = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
    return [(f"login-failures:account:{account}", settings.DUMONT_LOGIN_FAILURES_PER_ACCOUNT),
            (f"login-failures:address:{address}", settings.DUMONT_LOGIN_FAILURES_PER_ADDRESS)]


def refused_for(username: str, address: str) -> int | None:
    """Seconds to wait when attempts for this account or from this address are refused now."""
    for key, limit in _keys(username, address):
        entry = cache.get(key)
        if entry and entry["count"] >= limit:
            return max(1, int(entry["until"] - time.time()))
    return None


def record_failure(username: str, address: str) -> None:
    window = settings.DUMONT_LOGIN_FAILURE_WINDOW
    for key, _ in _keys(username, address):
        entry = cache.get(key) or {"count": 0, "until": time.time() + window}
        entry["count"] += 1
        cache.set(key, entry, timeout=max(1, int(entry["until"] - time.time())))


def record_success(username: str) -> None:
    account_key, _ = _keys(username, "-")[0]
    cache.delete(account_key)


def client_address(request) -> str:
    return request.META.get("REMOTE_ADDR") or "unknown"


def _message(wait_s: int) -> str:
    return f"too many failed logins; try again in {wait_s} s"


@extend_schema_field({"type": "string", "pattern": r"\S", "description": "blanks around it are ignored"})
class TextField(serializers.CharField):
    """Text with something in it besides blanks (DRF trims them), as the schema says."""


class LoginRequestSerializer(serializers.Serializer):
    """What POST /api/v1/auth/login reads (simplejwt's serializer, documented)."""

    username = TextField()
    password = TextField(style={"input_type": "password"})  # simplejwt trims it too


class RefreshRequestSerializer(serializers.Serializer):
    refresh = TextField()


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField(help_text="Bearer token for the API, short-lived")
    refresh = serializers.CharField(help_text="For POST /api/v1/auth/refresh")


class AccessTokenSerializer(serializers.Serializer):
    access = serializers.CharField(help_text="Bearer token for the API, short-lived")


class ThrottledTokenObtainPairView(TokenObtainPairView):
    """POST /api/v1/auth/login: username and password for JWTs, refused with 429 once throttled."""

    @extend_schema(operation_id="auth_login", request=LoginRequestSerializer, responses={
        200: TokenPairSerializer, 400: ErrorSerializer, 401: ErrorSerializer, 429: ErrorSerializer})
    def post(self, request, *args, **kwargs):
        data = request.data if isinstance(request.data, dict) else {}  # a JSON array is for the serializer to refuse
        username, address = str(data.get("username") or ""), client_address(request)
        wait_s = refused_for(username, address)
        if wait_s is not None:
            raise Throttled(wait=wait_s, detail=_message(wait_s))
        try:
            response = super().post(request, *args, **kwargs)
        except AuthenticationFailed:
            record_failure(username, address)
            raise
        if response.status_code == status.HTTP_200_OK:
            record_success(username)
        return response


class TokenRefresh(TokenRefreshView):
    """POST /api/v1/auth/refresh: a refresh token for a new access token."""

    @extend_schema(operation_id="auth_refresh", request=RefreshRequestSerializer, responses={
        200: AccessTokenSerializer, 400: ErrorSerializer, 401: ErrorSerializer})
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)


class ThrottledLoginView(auth_views.LoginView):
    """/login/: the page, counted with the API's attempts; a refused attempt shows why, with 429."""

    def post(self, request, *args, **kwargs):
        username, address = request.POST.get("username", ""), client_address(request)
        wait_s = refused_for(username, address)
        if wait_s is not None:  # the form is not even validated: no password is checked
            form = self.get_form_class()(request, initial={"username": username})
            context = self.get_context_data(form=form, refused=_message(wait_s))
            response = self.render_to_response(context, status=429)
            response["Retry-After"] = str(wait_s)
            return response
        return super().post(request, *args, **kwargs)

    def form_valid(self, form):
        record_success(form.get_user().get_username())
        return super().form_valid(form)

    def form_invalid(self, form):
        record_failure(self.request.POST.get("username", ""), client_address(self.request))
        return super().form_invalid(form)
