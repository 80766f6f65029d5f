import pytest

from apps.providers.http import HttpClient
from apps.providers.vast import VastProvider

from .stub import running_stub

API_KEY = "stub-key"


@pytest.fixture
def stub():
    with running_stub() as server:
        yield server


@pytest.fixture
def sleeps() -> list[float]:
    """The backoff delays a client asked for, instead of waiting them."""
    return []


@pytest.fixture
def stub_http(stub, sleeps) -> HttpClient:
    auth = {"Authorization": f"Bearer {API_KEY}"}
    return HttpClient(stub.url, headers=auth, read_timeout=2.0, sleep=sleeps.append)


@pytest.fixture
def stub_vast(stub, stub_http) -> VastProvider:
    return VastProvider(API_KEY, base_url=stub.url, http=stub_http)
