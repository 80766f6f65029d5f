"""The chaos stack: web and worker+beat processes that reach PostgreSQL, Redis, the S3 store and
devcloud's API through fault proxies; the test process watches the database directly."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from urllib.parse import urlparse

import pytest
import redis
import requests
from django.conf import settings as django_settings
from django.db import connection
from rest_framework_simplejwt.tokens import RefreshToken

from apps.instances.models import Instance
from tests.e2e.test_snapshot_e2e import INTERVAL, snapshot_settings  # noqa: F401  (a fixture)

from .harness import FaultProxy, Stack

# Windows of the real product, shrunk so that a journey takes about a minute. Provider and
# storage retries back off 1 + 2 + 4 + 8 s before giving up: longer than any fault held here.
WINDOWS = {
    "DUMONT_IDLE_WINDOW": "3",
    "DUMONT_HIBERNATE_RELEASE_AFTER": "1",
    "DUMONT_HIBERNATION_TICK": "1",
    "DUMONT_RECONCILE_INTERVAL": "1",
    "DUMONT_RECONCILE_GRACE": "4",
    "DUMONT_SNAPSHOT_GRANTS_INTERVAL": "2",
    "DUMONT_POLL_INTERVAL": "0.2",
    "DUMONT_PROVIDER_RETRY_DELAY": "1",
    "DUMONT_RACE_POLL_INTERVAL": "0.2",
    "DUMONT_RACE_ROUND_TIMEOUT": "30",
    "DUMONT_RACE_LEASE": "4",
    "DUMONT_WAKE_START_TIMEOUT": "20",
    "DUMONT_AGENT_INTERVAL": str(INTERVAL),
    "DUMONT_AGENT_SILENT_AFTER": "20",
    "DUMONT_AGENT_FIRST_HEARTBEAT_TIMEOUT": "90",
    "DUMONT_AGENT_INSTALL_TIMEOUT": "30",
    "DUMONT_SSH_TIMEOUT": "3",
}


@dataclass
class Chaos:
    stack: Stack
    proxies: dict[str, FaultProxy]
    devcloud: object
    user: object
    injected: list[tuple[str, str, float]] = field(default_factory=list)
    instance_ids: list = field(default_factory=list)

    def story(self) -> str:
        """What happened to the instances, and what the worker said, for a failing test's output."""
        lines = [f"faults: {self.injected}",
                 f"worker exits the supervisor restarted: {self.stack.crashes}"]
        for instance in Instance.objects.filter(pk__in=self.instance_ids):
            lines.append(f"instance {instance.pk}: {instance.status} ({instance.status_reason}) "
                         f"machine={instance.machine_id!r}")
            for event in instance.events.order_by("created_at"):
                lines.append(f"  {event.created_at:%H:%M:%S.%f} {event.actor} {event.from_status}->"
                             f"{event.to_status} {event.reason[:160]}")
            for snapshot in instance.snapshots.order_by("created_at"):
                lines.append(f"  snapshot {snapshot.id} {snapshot.trigger} {snapshot.status} created "
                             f"{snapshot.created_at:%H:%M:%S.%f} finished {snapshot.finished_at and f'{snapshot.finished_at:%H:%M:%S.%f}'} "
                             f"verified {snapshot.verified_at and f'{snapshot.verified_at:%H:%M:%S.%f}'} "
                             f"new {snapshot.new_bytes} {snapshot.error[:80]}{snapshot.verify_error[:80]}")
        return "\n".join(lines)

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        token = RefreshToken.for_user(self.user).access_token
        return requests.request(method, self.stack.url + path, headers={"Authorization": f"Bearer {token}"},
                                timeout=30, **kwargs)


def _url_via(url: str, proxy: FaultProxy) -> str:
    parsed = urlparse(url)
    netloc = parsed.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{proxy.port}"
    return parsed._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host).geturl()


def _hostport(url: str) -> tuple[str, int]:
    parsed = urlparse(url)
    return parsed.hostname, parsed.port


@pytest.fixture
def chaos(transactional_db, devcloud, scoped_s3, snapshot_settings, tmp_path, django_user_model):  # noqa: F811
    db = connection.settings_dict
    broker = django_settings.CELERY_BROKER_URL
    redis.Redis.from_url(broker).flushdb()  # no tasks from earlier runs
    proxies = {
        "postgres": FaultProxy("postgres", db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432)),
        "redis": FaultProxy("redis", *_hostport(broker)),
        "s3": FaultProxy("s3", *_hostport(scoped_s3.endpoint)),
        "devcloud": FaultProxy("devcloud", *_hostport(devcloud.url)),
    }
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    s3_via_proxy = _url_via(scoped_s3.endpoint, proxies["s3"])
    env = {
        **snapshot_settings,
        **WINDOWS,
        "DEBUG": "true",
        "DATABASE_URL": f"postgres://{auth}@127.0.0.1:{proxies['postgres'].port}/{db['NAME']}",
        "REDIS_URL": _url_via(broker, proxies["redis"]),
        "CACHE_URL": _url_via(broker, proxies["redis"]),
        "DUMONT_SNAPSHOT_S3_ENDPOINT": s3_via_proxy,
        "DUMONT_SNAPSHOT_IAM_ENDPOINT": s3_via_proxy,
        "VAST_API_URL": _url_via(devcloud.url, proxies["devcloud"]),
        "VAST_API_KEY": devcloud.api_key,
        "DUMONT_AGENT_ENABLED": "true",
        "DUMONT_AGENT_UPLOAD_DEPENDENCIES": "true",
        "DUMONT_SSH_KEY_FILE": str(django_settings.DUMONT_SSH_KEY_FILE),
        "DUMONT_VAR_DIR": str(django_settings.VAR_DIR),
        "DUMONT_START_STRATEGY": "race",
        "DUMONT_RACE_BATCH_SIZE": "3",
    }
    # Boots slow enough that a race lasts a few seconds: a fault can land in the middle of one.
    devcloud.faults(boot_delay="fixed:2")
    stack = Stack(env, tmp_path).start()
    user = django_user_model.objects.create_user("chaos", password="chaos monkey at work")
    handle = Chaos(stack=stack, proxies=proxies, devcloud=devcloud, user=user)
    try:
        yield handle
        print(handle.story())
    finally:
        for proxy in proxies.values():
            proxy.up()
        stack.stop()
        for proxy in proxies.values():
            proxy.close()
        time.sleep(0.2)
