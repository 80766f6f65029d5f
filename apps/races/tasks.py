"""Celery tasks of the race layer, sent by name through dumont.dispatch."""

from __future__ import annotations

from celery import shared_task

from apps.instances.steps import STEP_TASK, run_step

from . import engine, reconciler


@shared_task(name="races.run", **STEP_TASK)
def run(self, race_id: str) -> None:
    """Drive one race to its end; a second copy of the task finds the lease taken and returns."""
    engine.run_race(race_id)


@shared_task(name="races.reconcile")
def reconcile() -> dict:
    return vars(reconciler.reconcile())


@shared_task(name="races.destroy_leftovers", **STEP_TASK)
def destroy_leftovers(self, instance_id: str) -> None:
    run_step(self, reconciler.destroy_leftovers, instance_id)
