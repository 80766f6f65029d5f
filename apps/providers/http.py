"""The one HTTP client all provider traffic goes through, and so the one seam tests may fake.

It owns what every marketplace call needs: connection reuse, timeouts, JSON in and out, the
transaction/request guard, backoff for requests that are safe to repeat, and mapping failures
onto the ProviderError family. What an error *means* for one marketplace (vast's
`no_such_ask`) is the provider module's business.
"""

from __future__ import annotations

import itertools
import logging
import random
import time
from collections.abc import Callable, Mapping

import requests

from .base import (
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
)
from .guard import assert_provider_call_allowed

logger = logging.getLogger(__name__)

DEFAULT_MAX_ATTEMPTS = 6
BACKOFF_FIRST_DELAY_S = 0.15
BACKOFF_FACTOR = 1.5

# Failures where the request may or may not have reached the provider.
_TRANSPORT_ERRORS = (
    requests.Timeout,
    requests.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
)


def backoff_delay(retry_number: int) -> float:
    """Seconds to wait before retry `retry_number` (0-based); jitter spreads out a burst of
    workers that were all refused at the same moment."""
    delay = BACKOFF_FIRST_DELAY_S * BACKOFF_FACTOR**retry_number
    return delay + random.uniform(0, delay / 4)


class HttpClient:
    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.base_url = base_url.rstrip("/")
        self.timeout = (connect_timeout, read_timeout)
        self.max_attempts = max_attempts
        self.sleep = sleep
        self.session = requests.Session()
        self.session.headers.update({"Accept": "application/json", **(headers or {})})

    def request(
        self,
        method: str,
        path: str,
        *,
        retry: bool,
        json: object = None,
        params: Mapping[str, object] | None = None,
    ) -> object:
        """Send `method path` and return the decoded body of its 2xx reply.

        `retry=True` only for requests that are safe to repeat (reads, setting a state, deletes):
        429, 5xx and transport failures are then retried with backoff up to `max_attempts`.
        A create must pass `retry=False`: it may have landed even when its reply was lost.
        """
        assert_provider_call_allowed()
        for attempt in itertools.count(1):
            try:
                return self._send(method, path, json=json, params=params)
            except (ProviderRateLimited, ProviderUnavailable) as exc:
                if not retry or attempt >= self.max_attempts:
                    raise
                delay = backoff_delay(attempt - 1)
                logger.info("%s; retry %d in %.2fs", exc, attempt, delay)
                self.sleep(delay)

    def _send(self, method: str, path: str, *, json: object, params: object) -> object:
        what = f"{method} {path}"
        try:
            response = self.session.request(
                method, self.base_url + path, json=json, params=params, timeout=self.timeout
            )
        except _TRANSPORT_ERRORS as exc:
            raise ProviderUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc
        body = decode_body(response)
        if 200 <= response.status_code < 300:
            return body
        raise error_for_status(response.status_code, body, what)


def decode_body(response: requests.Response) -> object:
    """JSON when it parses, else the text: some errors (429s among them) come as plain text."""
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return response.text


def error_for_status(status: int, body: object, what: str) -> ProviderError:
    if status in (401, 403):
        error_class = ProviderAuthError
    elif status == 429:
        error_class = ProviderRateLimited
    elif status >= 500:
        error_class = ProviderUnavailable
    elif status in (400, 422):
        error_class = ProviderRejected
    else:
        error_class = ProviderError
    return error_class(f"{what} -> {status}: {describe(body)}", status=status, body=body)


def describe(body: object) -> str:
    """A short human text for an error body, JSON or plain."""
    if isinstance(body, dict):
        parts = [str(body[key]) for key in ("error", "msg", "detail") if body.get(key)]
        if parts:
            return ": ".join(parts)
    text = str(body).strip() if body is not None else ""
    return text[:300] or "(empty body)"
