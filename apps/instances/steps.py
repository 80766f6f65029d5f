"""How a Celery task runs an orchestration step that calls a provider, for every app's tasks.

Steps take an instance id, reload the row and return early when the work is done, so a step is
safe to repeat. Transient provider errors retry with exponential backoff up to
DUMONT_PROVIDER_MAX_ATTEMPTS; past that, or on a permanent error, the instance fails with a
readable reason. A step that finds the state moved on under it (IllegalTransition) is skipped.
The database out of reach (PostgreSQL restarting, a network cut) says nothing about the step:
it is tried again, backing off up to DATABASE_RETRY_CAP seconds between tries, for as long as
the outage lasts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from apps.providers.base import ProviderError
from dumont.errors import IllegalTransition

from .orchestration import give_up

log = logging.getLogger(__name__)

# The options of every task that runs a step: retried by hand (run_step), acknowledged only once
# done, so a worker that dies mid-step leaves the task to another.
STEP_TASK = {"bind": True, "max_retries": None, "acks_late": True}
DATABASE_DOWN = (OperationalError, InterfaceError)
DATABASE_RETRY_CAP = 30.0


def run_step(task, step: Callable, instance_id: str):
    """Run `step(instance_id)` for `task` (bound); what the step returns, or None."""
    name = step.__name__
    started = timezone.now()
    try:
        return step(instance_id)
    except IllegalTransition as exc:
        log.info("instance %s: %s skipped, state moved on (%s)", instance_id, name, exc)
    except DATABASE_DOWN as exc:
        retry_while_database_down(task, f"instance {instance_id}: {name}", exc)
    except ProviderError as exc:
        attempt = task.request.retries
        if exc.retryable and attempt + 1 < settings.DUMONT_PROVIDER_MAX_ATTEMPTS:
            delay = settings.DUMONT_PROVIDER_RETRY_DELAY * 2**attempt
            log.warning("instance %s: %s failed (%s); retry in %.1fs", instance_id, name, exc, delay)
            raise task.retry(countdown=delay, exc=exc) from None
        log.error("instance %s: %s gave up: %s", instance_id, name, exc)
        give_up(instance_id, step=name.replace("_", " "), error=exc, unless_moved_since=started)
    return None


def retry_while_database_down(task, what: str, exc: Exception):
    """Raise the task's retry, later each time, capped at DATABASE_RETRY_CAP seconds."""
    delay = min(settings.DUMONT_PROVIDER_RETRY_DELAY * 2**task.request.retries, DATABASE_RETRY_CAP)
    log.warning("%s: database out of reach (%s); retry in %.1fs", what, str(exc).strip().splitlines()[0], delay)
    raise task.retry(countdown=delay, exc=exc) from None
