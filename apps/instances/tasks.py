"""Celery tasks: thin wrappers around orchestration steps.

Tasks take ids, and the steps reload the row and return early when the work is done. Transient
provider errors retry with exponential backoff up to DUMONT_PROVIDER_MAX_ATTEMPTS; past that, or
on a permanent error, the instance fails with a readable reason.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from dumont.errors import IllegalTransition

from . import agent_install as installer
from . import agent_services, orchestration
from .providers.base import ProviderError
from .hibernation import orchestration as hibernation
from .hibernation import tick as hibernation_beat
from .race import engine as race_engine
from .race import reconciler

log = logging.getLogger(__name__)


def _run_step(task, step: str, instance_id: str, module=orchestration):
    try:
        return getattr(module, step)(instance_id)
    except IllegalTransition as exc:
        log.info("instance %s: %s skipped, state moved on (%s)", instance_id, step, exc)
    except ProviderError as exc:
        attempt = task.request.retries
        if exc.retryable and attempt + 1 < settings.DUMONT_PROVIDER_MAX_ATTEMPTS:
            delay = settings.DUMONT_PROVIDER_RETRY_DELAY * 2**attempt
            log.warning("instance %s: %s failed (%s); retry in %.1fs", instance_id, step, exc, delay)
            raise task.retry(countdown=delay, exc=exc) from None
        log.error("instance %s: %s gave up: %s", instance_id, step, exc)
        orchestration.give_up(instance_id, step=step.replace("_", " "), error=exc)
    return None


_task = shared_task(bind=True, max_retries=None, acks_late=True)


@_task
def instance_provision(self, instance_id: str) -> None:
    _run_step(self, "provision", instance_id)


@_task
def instance_watch(self, instance_id: str) -> None:
    delay = _run_step(self, "watch", instance_id)
    if delay is not None:
        instance_watch.apply_async((instance_id,), countdown=delay)


@_task
def instance_stop_machine(self, instance_id: str) -> None:
    _run_step(self, "stop_machine", instance_id)


@_task
def instance_start_machine(self, instance_id: str) -> None:
    _run_step(self, "start_machine", instance_id)


@_task
def instance_destroy_machine(self, instance_id: str) -> None:
    _run_step(self, "destroy_machine", instance_id)


@_task
def agent_install(self, instance_id: str) -> None:
    _run_step(self, "install", instance_id, module=installer)


@_task
def agent_expect_heartbeat(self, instance_id: str) -> None:
    _run_step(self, "expect_heartbeat", instance_id, module=installer)


@shared_task
def agents_mark_silent() -> int:
    return agent_services.agents_mark_silent()


@shared_task
def agent_samples_purge() -> int:
    return agent_services.agent_samples_purge()


@_task
def race_run(self, race_id: str) -> None:
    """Drive one race to its end; a second copy of the task finds the lease taken and returns."""
    race_engine.run_race(race_id)


@shared_task
def machines_reconcile() -> dict:
    return vars(reconciler.reconcile())


@shared_task
def hibernation_tick() -> dict:
    return {name: [str(pk) for pk in pks] for name, pks in vars(hibernation_beat.tick()).items()}


@_task
def hibernation_release_machine(self, instance_id: str) -> None:
    _run_step(self, "release_machine", instance_id, module=hibernation)


@_task
def hibernation_wake_fallback(self, instance_id: str) -> None:
    _run_step(self, "wake_fallback", instance_id, module=hibernation)


@_task
def hibernation_abandon_wake(self, instance_id: str) -> None:
    _run_step(self, "abandon_wake", instance_id, module=hibernation)
