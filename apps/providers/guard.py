"""Provider calls never run inside a DB transaction or while serving an HTTP request.

A provider call can take seconds and land or not; inside a transaction it would hold locks that
long and leave the DB claiming something the provider never did (or the reverse), and inside a
request it would tie a web worker to a marketplace's latency. Record intent, commit, then call
from a task.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

from django.db import connections

from .base import ProviderCallNotAllowed

_serving_request: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "dumont_serving_request", default=False
)


@contextlib.contextmanager
def request_scope() -> Iterator[None]:
    """Mark the code inside as serving an HTTP request (the request middleware wraps each one)."""
    token = _serving_request.set(True)
    try:
        yield
    finally:
        _serving_request.reset(token)


def assert_provider_call_allowed() -> None:
    if _serving_request.get():
        raise ProviderCallNotAllowed(
            "provider call while serving an HTTP request: record the intent and enqueue a task"
        )
    # A connection never opened in this thread cannot be inside an atomic block.
    for connection in connections.all(initialized_only=True):
        if connection.in_atomic_block:
            raise ProviderCallNotAllowed(
                f"provider call inside a transaction on database {connection.alias!r}: "
                "commit first, then call the provider"
            )
