"""WSGI entry point. Agents' heartbeats take a fast path inside the one middleware stack
(apps.agents.middleware.HeartbeatFastPath), the same under ASGI."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dumont.settings")

application = get_wsgi_application()
