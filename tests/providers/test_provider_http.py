import socket

import pytest

from apps.providers.base import (
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
)
from apps.providers.http import BACKOFF_FACTOR, BACKOFF_FIRST_DELAY_S, HttpClient

from .stub import Reply


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _assert_backoff(sleeps: list[float]) -> None:
    for n, delay in enumerate(sleeps):
        base = BACKOFF_FIRST_DELAY_S * BACKOFF_FACTOR**n
        assert base <= delay <= base * 1.25


def test_sends_auth_json_and_query_and_returns_decoded_json(stub, stub_http):
    stub.reply("POST", "/thing/", Reply(200, {"ok": 1}))

    body = stub_http.request("POST", "/thing/", retry=False, json={"a": [1]}, params={"limit": 25})

    assert body == {"ok": 1}
    (sent,) = stub.requests
    assert sent.headers["Authorization"] == "Bearer stub-key"
    assert sent.json == {"a": [1]}
    assert sent.query == {"limit": ["25"]}


def test_429_bursts_are_absorbed_with_growing_backoff(stub, stub_http, sleeps):
    stub.reply(
        "GET", "/x/", Reply(429, "Too Many Requests"), Reply(429, {"error": "rate_limited"}),
        Reply(429, "slow down"), Reply(200, {"ok": True}),
    )

    assert stub_http.request("GET", "/x/", retry=True) == {"ok": True}

    assert len(stub.requests) == 4
    assert len(sleeps) == 3
    _assert_backoff(sleeps)


def test_rate_limit_that_outlasts_the_attempts_raises_rate_limited(stub, stub_http, sleeps):
    stub.reply("GET", "/x/", Reply(429, "Too Many Requests"))

    with pytest.raises(ProviderRateLimited) as caught:
        stub_http.request("GET", "/x/", retry=True)

    assert caught.value.status == 429
    assert caught.value.body == "Too Many Requests"
    assert len(stub.requests) == stub_http.max_attempts == 6
    assert len(sleeps) == 5
    _assert_backoff(sleeps)


def test_5xx_is_retried_then_raises_unavailable(stub, stub_http, sleeps):
    stub.reply("DELETE", "/x/", Reply(502, "<html>Bad Gateway</html>"))

    with pytest.raises(ProviderUnavailable, match="502"):
        stub_http.request("DELETE", "/x/", retry=True)

    assert len(stub.requests) == 6


@pytest.mark.parametrize("reply", [Reply(503, "unavailable"), Reply(429, "Too Many Requests")])
def test_a_request_that_must_not_repeat_is_sent_once(stub, stub_http, sleeps, reply):
    stub.reply("PUT", "/create/", reply)

    with pytest.raises((ProviderUnavailable, ProviderRateLimited)):
        stub_http.request("PUT", "/create/", retry=False)

    assert len(stub.requests) == 1
    assert sleeps == []


def test_read_timeout_is_unavailable_and_retried(stub, sleeps):
    http = HttpClient(stub.url, read_timeout=0.2, sleep=sleeps.append)
    stub.reply("GET", "/slow/", Reply(200, {"late": True}, delay_s=1), Reply(200, {"late": False}))

    assert http.request("GET", "/slow/", retry=True) == {"late": False}
    assert len(sleeps) == 1


def test_read_timeout_of_a_create_raises_unavailable_at_once(stub, sleeps):
    http = HttpClient(stub.url, read_timeout=0.2, sleep=sleeps.append)
    stub.reply("PUT", "/create/", Reply(200, {"late": True}, delay_s=1.0))

    with pytest.raises(ProviderUnavailable, match="Timeout"):
        http.request("PUT", "/create/", retry=False)
    assert sleeps == []


def test_connection_refused_is_unavailable_after_capped_attempts(sleeps):
    http = HttpClient(f"http://127.0.0.1:{_closed_port()}", max_attempts=3, sleep=sleeps.append)

    with pytest.raises(ProviderUnavailable, match="ConnectionError"):
        http.request("GET", "/x/", retry=True)
    assert len(sleeps) == 2


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (401, ProviderAuthError),
        (403, ProviderAuthError),
        (400, ProviderRejected),
        (422, ProviderRejected),
    ],
)
def test_client_errors_map_to_their_exception_and_are_not_retried(
    stub, stub_http, status, error_class
):
    stub.reply("GET", "/x/", Reply(status, {"error": "some_code", "msg": "Human text"}))

    with pytest.raises(error_class, match="some_code: Human text") as caught:
        stub_http.request("GET", "/x/", retry=True)

    assert caught.value.status == status
    assert len(stub.requests) == 1


@pytest.mark.parametrize("status", [404, 410])
def test_missing_or_retired_endpoints_are_plain_provider_errors(stub, stub_http, status):
    stub.reply("GET", "/x/", Reply(status, "Gone"))

    with pytest.raises(ProviderError) as caught:
        stub_http.request("GET", "/x/", retry=True)

    assert type(caught.value) is ProviderError
    assert caught.value.body == "Gone"
    assert not caught.value.retryable


def test_an_empty_2xx_body_is_none(stub, stub_http):
    stub.reply("DELETE", "/x/", Reply(204))

    assert stub_http.request("DELETE", "/x/", retry=True) is None
