"""One copy at a time of a periodic job across every worker: a lock in the cache (Redis).

    with single_flight("hibernation.tick", ttl=300) as mine:
        if mine:
            ...

The lock lapses after `ttl` seconds, so a worker that dies holding it blocks the job that long
at most; the job must take much less than `ttl`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from django.core.cache import cache


@contextmanager
def single_flight(name: str, *, ttl: float) -> Iterator[bool]:
    """True inside when this caller holds the lock, False when another copy runs."""
    key, token = f"single-flight:{name}", uuid.uuid4().hex
    mine = cache.add(key, token, timeout=ttl)
    try:
        yield mine
    finally:
        if mine and cache.get(key) == token:
            cache.delete(key)
