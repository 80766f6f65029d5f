"""Celery tasks of hibernation and wake, sent by name through dumont.dispatch."""

from __future__ import annotations

from celery import shared_task

from apps.instances.steps import STEP_TASK, run_step

from . import orchestration, tick


@shared_task(name="hibernation.tick")
def hibernation_tick() -> dict:
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
