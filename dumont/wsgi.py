"""WSGI entry point. Agents' heartbeats take a lean handler; everything else the full stack."""

import os

from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dumont.settings")

AGENT_STATUS_PATH = "/api/v1/agent/status"

# Sessions, CSRF, auth, messages and htmx do nothing for an agent's heartbeat (token-
# authenticated, JSON in and out) yet cost a good part of its CPU, on the hottest path of the
# control plane.
AGENT_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "apps.instances.middleware.NoProviderCallsInRequests",
]


class AgentHandler(WSGIHandler):
    def load_middleware(self, is_async=False):
        from django.conf import settings

        # BaseHandler reads settings.MIDDLEWARE once, here, at start-up.
        full, settings.MIDDLEWARE = settings.MIDDLEWARE, AGENT_MIDDLEWARE
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = full


def _route(site, agents):
    def application(environ, start_response):
        handler = agents if environ.get("PATH_INFO") == AGENT_STATUS_PATH else site
        return handler(environ, start_response)

    return application


application = _route(get_wsgi_application(), AgentHandler())
