"""The request side of the provider guard (guard.py)."""

from .guard import request_scope


class NoProviderCallsInRequests:
    """Marks every request so that a provider call made while serving it fails loudly.

    Provider calls are slow and can hang; they belong in Celery tasks (DESIGN.md).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with request_scope():
            return self.get_response(request)
