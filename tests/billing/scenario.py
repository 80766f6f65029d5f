"""The scripted usage scenario the savings tests price by hand, written through the services."""

from __future__ import annotations

from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from decimal import Decimal

from apps.billing import services
from apps.instances.models import Instance, InstanceStatus

S = InstanceStatus
T0 = datetime(2025, 3, 3, 0, 0, tzinfo=dt_timezone.utc)
GB = 10**9


def at(hours: int = 0, minutes: int = 0, seconds: int = 0, *, start: datetime = T0) -> datetime:
    return start + timedelta(hours=hours, minutes=minutes, seconds=seconds)


def make_instance(user, *, label: str = "train", price: str | None = "0.40", disk_gb: int = 36) -> Instance:
    return Instance.objects.create(
        user=user, label=label, image="pytorch/pytorch", disk_gb=disk_gb,
        price_per_hour=Decimal(price) if price is not None else None, status=S.RUNNING,
    )


def hibernate_and_wake(user, *, start: datetime = T0, label: str = "train") -> Instance:
    """$0.40/h GPU, 36 GB disk: runs 2 h, snapshots for 6 min (7 GB stored), paused 30 min,
    hibernated 5 h 30 min, wakes in 72 s while a race loser bills 144 s at $0.35/h, runs 1 h.
    Ends at start + 9 h 07 min 12 s."""
    instance = make_instance(user, label=label)

    def state(status, *when):
        services.record_state(instance=instance, status=status, at=at(*when, start=start))

    state(S.RUNNING, 0)
    state(S.HIBERNATING, 2)
    services.record_storage(instance=instance, stored_bytes=7 * GB, at=at(2, 6, start=start))
    state(S.PAUSED, 2, 6)
    state(S.HIBERNATED, 2, 36)
    state(S.WAKING, 8, 6)
    services.record_race_loss(instance=instance, seconds=144, price_per_hour=Decimal("0.35"), at=at(8, 6, start=start))
    state(S.RUNNING, 8, 7, 12)
    return instance


SCENARIO_END = at(9, 7, 12)
