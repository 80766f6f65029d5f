"""Celery tasks of the instance layer: thin wrappers around orchestration steps (steps.run_step
retries provider errors). Sent by name through dumont.dispatch."""

from __future__ import annotations

from celery import shared_task

from dumont.dispatch import send

from . import orchestration
from .idempotency import idempotency_records_purge
from .steps import STEP_TASK, run_step


@shared_task(name="instances.provision", **STEP_TASK)
def provision(self, instance_id: str) -> None:
    run_step(self, orchestration.provision, instance_id)


@shared_task(name="instances.watch", **STEP_TASK)
def watch(self, instance_id: str) -> None:
    delay = run_step(self, orchestration.watch, instance_id)
    if delay is not None:
        send("instances.watch", instance_id, countdown=delay)


@shared_task(name="instances.stop_machine", **STEP_TASK)
def stop_machine(self, instance_id: str) -> None:
    run_step(self, orchestration.stop_machine, instance_id)


@shared_task(name="instances.start_machine", **STEP_TASK)
def start_machine(self, instance_id: str) -> None:
    run_step(self, orchestration.start_machine, instance_id)


@shared_task(name="instances.destroy_machine", **STEP_TASK)
def destroy_machine(self, instance_id: str) -> None:
    run_step(self, orchestration.destroy_machine, instance_id)


@shared_task(name="instances.requeue_stalled")
def requeue_stalled() -> dict:
    return vars(orchestration.requeue_stalled())


@shared_task(name="instances.idempotency_purge")
def idempotency_purge() -> int:
    return idempotency_records_purge()
