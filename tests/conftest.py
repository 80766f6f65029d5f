"""Shared fixtures: users and JWT clients, captured Celery tasks, devcloud, the S3 server."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from tests.s3 import s3_server, scoped_s3  # noqa: F401  (the session's S3 servers, for every test package)


def pytest_configure(config):
    from django.conf import settings

    engine = settings.DATABASES["default"]["ENGINE"]
    if "postgresql" not in engine:
        raise pytest.UsageError(
            "Dumont's tests run on PostgreSQL: set DATABASE_URL=postgres://... (make test does)"
        )
    # Real password hashing costs ~1 s a user; tests need users, not strong hashes.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # The cache is Redis and outlives a run: each run counts (failed logins, say) from zero.
    settings.CACHES["default"]["KEY_PREFIX"] = f"dumont-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def user(db):
    return get_user_model().objects.create_user("alice", password="correct horse battery")


@pytest.fixture
def other_user(db):
    return get_user_model().objects.create_user("mallory", password="another long secret")


def _jwt_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")
    return client


@pytest.fixture
def api(user) -> APIClient:
    return _jwt_client(user)


@pytest.fixture
def other_api(other_user) -> APIClient:
    return _jwt_client(other_user)


@pytest.fixture
def browser(user):
    """A logged-in browser session for the HTML pages."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def anon_api() -> APIClient:
    return APIClient()


# --- Celery tasks, captured and run by the test -------------------------------------------------


class TaskQueue:
    """Celery tasks sent during a test (dumont.dispatch sends them by name), run on demand in this
    process (outside any request)."""

    def __init__(self):
        self.sent: list[tuple[str, tuple, dict]] = []

    def names(self) -> list[str]:
        return [name for name, _, _ in self.sent]

    def drain(self, *, timeout: float = 30.0) -> list[str]:
        """Run queued tasks (and those they queue) in order, honouring countdowns, until empty."""
        import time

        from dumont.celery import app

        app.loader.import_default_modules()  # every app's tasks.py, as a worker imports them
        ran, deadline = [], time.monotonic() + timeout
        while self.sent:
            if time.monotonic() > deadline:
                raise AssertionError(f"tasks still queued after {timeout}s: {self.names()}")
            name, args, options = self.sent.pop(0)
            time.sleep(min(options.get("countdown") or 0, 1.0))
            app.tasks[name].apply(args=args).get()
            ran.append(name)
        return ran


@pytest.fixture
def tasks(monkeypatch) -> TaskQueue:
    from celery import Celery

    queue = TaskQueue()

    def capture(self, name, args=None, kwargs=None, **options):
        queue.sent.append((name, tuple(args or ()), options))

    monkeypatch.setattr(Celery, "send_task", capture)
    return queue


# --- devcloud: the vast.ai emulator with real machines -------------------------------------------


@pytest.fixture(scope="session")
def devcloud_server(tmp_path_factory):
    from devcloud.testing import run_devcloud

    with run_devcloud(tmp_path_factory.mktemp("devcloud"), boot_delay="fixed:0.3") as handle:
        yield handle


@pytest.fixture
def devcloud(devcloud_server, settings, tmp_path):
    """devcloud with faults reset, and Dumont's vast provider pointed at it with fast windows."""
    devcloud_server.reset_faults()
    settings.VAST_API_URL = devcloud_server.url
    settings.VAST_API_KEY = devcloud_server.api_key
    settings.DUMONT_POLL_INTERVAL = 0.05
    settings.DUMONT_PROVIDER_RETRY_DELAY = 0.01
    settings.DUMONT_SSH_TIMEOUT = 2
    settings.DUMONT_AGENT_ENABLED = False  # tests about the agent switch it on
    yield devcloud_server
    devcloud_server.reset_faults()
    for machine in devcloud_server.machines():  # rented offers would run out across tests
        devcloud_server.api("DELETE", f"/api/v0/instances/{machine['id']}/")
