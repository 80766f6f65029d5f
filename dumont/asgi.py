"""ASGI entry point: the same middleware stack as WSGI, heartbeats' fast path included."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dumont.settings")

application = get_asgi_application()
