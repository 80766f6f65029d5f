"""Celery tasks of hibernation and wake, sent by name through dumont.dispatch."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from apps.instances.steps import STEP_TASK, run_step
from dumont.locks import single_flight

from . import orchestration, tick


@shared_task(name="hibernation.tick")
def hibernation_tick() -> dict:
    """One tick at a time: two side by side would both see the first snapshot verified, and the
    second, finding the confirming snapshot already asked for, would call the hibernation off.
    The lock outlives a worker killed during a tick by two periods at most."""
    with single_flight("hibernation.tick", ttl=max(2 * settings.DUMONT_HIBERNATION_TICK, 5)) as mine:
        if not mine:
            return {"skipped": "another tick is running"}
        return {name: [str(pk) for pk in pks] for name, pks in vars(tick.tick()).items()}


@shared_task(name="hibernation.release_machine", **STEP_TASK)
def release_machine(self, instance_id: str) -> None:
    run_step(self, orchestration.release_machine, instance_id)


@shared_task(name="hibernation.wake_fallback", **STEP_TASK)
def wake_fallback(self, instance_id: str) -> None:
    run_step(self, orchestration.wake_fallback, instance_id)


@shared_task(name="hibernation.abandon_wake", **STEP_TASK)
def abandon_wake(self, instance_id: str) -> None:
    run_step(self, orchestration.abandon_wake, instance_id)
