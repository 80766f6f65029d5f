"""Celery tasks for snapshots: thin wrappers around jobs.py and services.py, sent by name through
dumont.dispatch.

Storage errors (S3 down, throttled) retry with backoff, and so does the database out of reach;
the checks are safe to repeat."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from agent.snapshot import StorageError
from agent.snapshot.errors import RepositoryLocked
from apps.instances.steps import DATABASE_DOWN, retry_while_database_down

from . import grants, jobs, services

log = logging.getLogger(__name__)

_STORAGE_TASK = {"bind": True, "max_retries": None, "acks_late": True}


def _with_retries(task, job, snapshot_id: str) -> None:
    try:
        job(snapshot_id)
    except StorageError as exc:
        _retry_storage(task, f"snapshot {snapshot_id}: {job.__name__}", exc)
    except DATABASE_DOWN as exc:
        retry_while_database_down(task, f"snapshot {snapshot_id}: {job.__name__}", exc)


def _retry_storage(task, what: str, exc: StorageError) -> None:
    attempt = task.request.retries
    if attempt + 1 >= settings.DUMONT_PROVIDER_MAX_ATTEMPTS:
        log.error("%s gave up: %s", what, exc)
        raise exc
    delay = settings.DUMONT_PROVIDER_RETRY_DELAY * 2**attempt
    log.warning("%s failed (%s); retry in %.1fs", what, exc, delay)
    raise task.retry(countdown=delay, exc=exc) from None


@shared_task(name="snapshots.verify", **_STORAGE_TASK)
def snapshot_verify(self, snapshot_id: str) -> None:
    _with_retries(self, jobs.verify, snapshot_id)


@shared_task(name="snapshots.forget", **_STORAGE_TASK)
def snapshot_forget(self, snapshot_id: str) -> None:
    _with_retries(self, jobs.forget, snapshot_id)


@shared_task(name="snapshots.gc", **_STORAGE_TASK)
def workspace_gc(self, instance_id: str) -> None:
    """After snapshots were deleted. A snapshot being written holds the repository: try later."""
    try:
        jobs.collect_garbage(instance_id)
    except RepositoryLocked as exc:
        log.info("instance %s: gc postponed: %s", instance_id, exc)
        raise self.retry(countdown=settings.DUMONT_SNAPSHOT_GC_RETRY, exc=exc, max_retries=20) from None
    except StorageError as exc:
        _retry_storage(self, f"instance {instance_id}: gc", exc)
    except DATABASE_DOWN as exc:
        retry_while_database_down(self, f"instance {instance_id}: gc", exc)


@shared_task(name="snapshots.fail_stale")
def snapshots_fail_stale() -> int:
    return services.snapshots_fail_stale()


@shared_task(name="snapshots.requeue_stalled")
def snapshots_requeue_stalled() -> int:
    return services.snapshots_requeue_unverified()


@shared_task(name="snapshots.expire")
def snapshots_expire() -> int:
    return services.snapshots_expire()


@shared_task(name="snapshots.grants_revoke")
def grants_revoke(instance_id: str, reason: str) -> int:
    """Revocations the store refuses now are retried by grants_maintain."""
    return grants.grants_revoke_for(instance_id=instance_id, reason=reason)


@shared_task(name="snapshots.grants_maintain")
def grants_maintain() -> dict:
    return grants.grants_maintain()
