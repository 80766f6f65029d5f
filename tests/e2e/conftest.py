"""End-to-end fixtures: a real Celery worker process against the test database and devcloud."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from django.conf import settings as django_settings
from django.db import connection

from tests.polling import wait_for  # noqa: F401  (re-exported for the e2e tests)

ROOT = Path(__file__).resolve().parents[2]


def _database_url() -> str:
    db = connection.settings_dict  # the test database pytest-django created
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def worker_env() -> dict[str, str]:
    """Extra settings for the worker process; a test overrides this fixture to change them."""
    return {"DUMONT_AGENT_ENABLED": "false"}


@pytest.fixture
def celery_worker(transactional_db, devcloud, tmp_path, worker_env):
    """A `celery worker` subprocess that shares this test's database, broker and devcloud."""
    redis.Redis.from_url(django_settings.CELERY_BROKER_URL).flushdb()  # no tasks from earlier runs
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "REDIS_URL": django_settings.CELERY_BROKER_URL,
        "VAST_API_URL": devcloud.url,
        "VAST_API_KEY": devcloud.api_key,
        "DUMONT_POLL_INTERVAL": "0.1",
        "DUMONT_PROVIDER_RETRY_DELAY": "0.1",
        "DUMONT_SSH_KEY_FILE": str(django_settings.DUMONT_SSH_KEY_FILE),
        "DUMONT_VAR_DIR": str(django_settings.VAR_DIR),
        **worker_env,
    }
    log = open(tmp_path / "worker.log", "w")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "dumont", "worker", "--pool", "threads",
         "--concurrency", "4", "--loglevel", "INFO", "--without-heartbeat", "--without-gossip",
         "--without-mingle"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        _wait_for_line(tmp_path / "worker.log", "ready.", worker, timeout=30)
        yield worker
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
        log.close()


def _wait_for_line(path: Path, needle: str, process, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in path.read_text():
            return
        if process.poll() is not None:
            raise RuntimeError(f"worker exited early:\n{path.read_text()[-3000:]}")
        time.sleep(0.1)
    raise RuntimeError(f"worker not ready after {timeout}s:\n{path.read_text()[-3000:]}")
