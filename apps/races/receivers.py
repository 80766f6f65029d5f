"""How the race layer hooks into the instance layer (imported by RacesConfig.ready()): instances
created with the "race" strategy start a race, and a destroyed instance's races are called off."""

from __future__ import annotations

from django.dispatch import receiver

from apps.instances.models import InstanceStatus, StartStrategy
from apps.instances.services import register_start_strategy
from apps.instances.signals import instance_transitioned

from . import services
from .models import RacePurpose

S = InstanceStatus

register_start_strategy(StartStrategy.RACE,
                        lambda instance: services.race_start(instance=instance, purpose=RacePurpose.CREATE))


@receiver(instance_transitioned, dispatch_uid="races.follow_the_instance")
def follow_the_instance(*, instance, to_status, **kwargs) -> None:
    """A destroyed instance's races are called off; its winner's row learns the machine is gone."""
    if to_status == S.DESTROYING:
        services.races_call_off(instance_id=instance.pk)
    elif to_status == S.DESTROYED and instance.machine_id:
        services.candidate_machine_gone(instance_id=instance.pk, machine_id=instance.machine_id)
