"""The ledger listens to every layer below it (imported by BillingConfig.ready()); nothing below
knows it exists. Each receiver runs inside the transaction of the change it records, so a state
and its ledger row commit together."""

from __future__ import annotations

from django.dispatch import receiver

from apps.instances.signals import instance_transitioned
from apps.races.signals import loser_billed
from apps.snapshots.signals import workspace_stored

from . import services


@receiver(instance_transitioned, dispatch_uid="billing.record_state")
def record_state(*, instance, to_status, at, **kwargs) -> None:
    services.record_state(instance=instance, status=to_status, at=at)


@receiver(loser_billed, dispatch_uid="billing.record_race_loss")
def record_race_loss(*, instance, seconds, price_per_hour, at, **kwargs) -> None:
    services.record_race_loss(instance=instance, seconds=seconds, price_per_hour=price_per_hour, at=at)


@receiver(workspace_stored, dispatch_uid="billing.record_storage")
def record_storage(*, instance, stored_bytes, **kwargs) -> None:
    services.record_storage(instance=instance, stored_bytes=stored_bytes)
