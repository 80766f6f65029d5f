"""The agents' endpoint, mounted under /api/v1/; requests reach it through middleware.py first.
It is in the URL conf so that it can be reversed and is described in the OpenAPI schema."""

from django.urls import path

from . import api

app_name = "agents"

urlpatterns = [
    path("agent/status", api.agent_status, name="status"),
]
