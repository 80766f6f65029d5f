"""How hibernation follows the layers below it (imported by HibernationConfig.ready()): a wake
race's winner gets the snapshot restored, the agent's restore command moves the wake on, and a
paused machine that runs again ends its wake."""

from __future__ import annotations

from django.dispatch import receiver

from apps.agents.models import COMMAND_FINAL
from apps.agents.signals import command_updated
from apps.instances.models import InstanceStatus
from apps.instances.signals import instance_transitioned
from apps.races.models import RacePurpose
from apps.races.signals import race_won

from . import services


@receiver(race_won, dispatch_uid="hibernation.restore_onto_the_winner")
def restore_onto_the_winner(*, race, instance, **kwargs) -> None:
    if race.purpose == RacePurpose.WAKE:
        services.wake_machine_ready(instance=instance)


@receiver(command_updated, dispatch_uid="hibernation.follow_the_restore")
def follow_the_restore(*, command, **kwargs) -> None:
    if command.kind != "restore":
        return
    if command.status in COMMAND_FINAL:
        services.wake_restore_finished(command)
    else:
        services.wake_restore_started(command)


@receiver(instance_transitioned, dispatch_uid="hibernation.end_a_wake_without_restore")
def end_a_wake_without_restore(*, instance, to_status, **kwargs) -> None:
    if to_status == InstanceStatus.RUNNING:
        services.wake_record_running(instance=instance)
