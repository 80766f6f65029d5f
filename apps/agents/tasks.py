"""Celery tasks of the agent layer, sent by name through dumont.dispatch."""

from __future__ import annotations

from celery import shared_task

from apps.instances.steps import STEP_TASK, run_step

from . import install as installer
from . import services


@shared_task(name="agents.install", **STEP_TASK)
def install(self, instance_id: str) -> None:
    run_step(self, installer.install, instance_id)


@shared_task(name="agents.expect_heartbeat", **STEP_TASK)
def expect_heartbeat(self, instance_id: str) -> None:
    run_step(self, installer.expect_heartbeat, instance_id)


@shared_task(name="agents.requeue_stalled")
def requeue_stalled() -> dict:
    return vars(installer.requeue_stalled())


@shared_task(name="agents.mark_silent")
def mark_silent() -> int:
    return services.agents_mark_silent()


@shared_task(name="agents.samples_purge")
def samples_purge() -> int:
    return services.agent_samples_purge()
