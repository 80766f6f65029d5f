"""The agent layer's answers to the instance layer's signals (connected in AgentsConfig.ready())."""

from __future__ import annotations

from django.dispatch import receiver

from apps.instances.models import InstanceStatus
from apps.instances.signals import instance_transitioned, machine_ready

from . import services

S = InstanceStatus


@receiver(machine_ready, dispatch_uid="agents.install_on_machine_ready")
def install_on_machine_ready(*, instance, **kwargs) -> None:
    services.agent_install_queue(instance=instance)


@receiver(instance_transitioned, dispatch_uid="agents.follow_the_machine")
def follow_the_machine(*, instance, to_status, **kwargs) -> None:
    """A stopped or given-back machine's agent is gone with it; a destroyed instance's token dies."""
    if to_status in (S.PAUSED, S.HIBERNATED):
        services.agent_machine_stopped(instance_id=instance.pk)
    elif to_status == S.DESTROYED:
        services.agent_token_revoke(instance_id=instance.pk)
