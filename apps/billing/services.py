"""Writes to the usage ledger. Only inserts: a row, once written, is the record.

How a state is billed (`billed_as`), decided when the state is entered and kept on its row, so
a later change of these rules never rewrites the past:

- running → the GPU price of the rented offer. vast.ai bills `dph_total` while the machine
  runs, its disk included.
- provisioning, booting, stopping, hibernating, waking → also the GPU price: a machine is being
  created, started, snapshotted or stopped, and the provider bills it all along. While a race
  decides the machine (create or wake from hibernated) the winner bills from its creation and
  its price is not known yet, so the instance's last price stands in; with no price at all yet
  (a first race) the state costs nothing and the row says so in `note`. The losers are billed
  separately, as race_loss rows.
- paused (machine stopped, disk kept) → the stopped-disk price: vast.ai bills the disk while the
  instance exists, stopped included. Per hour: disk_gb × DUMONT_STOPPED_DISK_PRICE_PER_GB_MONTH
  ÷ 720 (see prices.py).
- destroying → what the state it came from cost (the machine bills as it was until the provider
  confirms it gone; from hibernated there is no machine left to bill).
- requested (nothing asked of the provider yet), hibernated (machine destroyed; only its
  snapshot is kept, billed by storage rows), destroyed, failed → nothing.

Snapshot storage is billed by storage rows for whatever state the instance is in.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.utils import timezone

from apps.instances.models import Instance, InstanceStatus

from . import prices
from .models import BilledAs, LedgerEntry, LedgerKind

S = InstanceStatus

MACHINE_ON = frozenset({S.PROVISIONING, S.BOOTING, S.RUNNING, S.STOPPING, S.HIBERNATING, S.WAKING})
NOTHING = frozenset({S.REQUESTED, S.HIBERNATED, S.DESTROYED, S.FAILED})


def record_state(*, instance: Instance, status: str, at: datetime | None = None) -> LedgerEntry:
    """The instance entered `status` at `at` (now by default), with its prices in force now."""
    status = S(status)
    gpu_price = instance.price_per_hour
    billed_as, note = _billed_as(instance=instance, status=status, gpu_price=gpu_price)
    return LedgerEntry.objects.create(
        instance=instance,
        kind=LedgerKind.STATE,
        at=at or timezone.now(),
        status=status,
        billed_as=billed_as,
        gpu_price_per_hour=gpu_price,
        disk_price_per_hour=prices.stopped_disk_price_per_hour(instance.disk_gb),
        note=note,
    )


def record_storage(*, instance: Instance, stored_bytes: int, at: datetime | None = None) -> LedgerEntry:
    """From `at`, the instance's snapshots take `stored_bytes` in storage (0 once all are gone)."""
    if stored_bytes < 0:
        raise ValueError(f"stored_bytes must not be negative, got {stored_bytes}")
    return LedgerEntry.objects.create(
        instance=instance,
        kind=LedgerKind.STORAGE,
        at=at or timezone.now(),
        stored_bytes=stored_bytes,
        storage_price_per_gb_month=prices.storage_price_per_gb_month(),
    )


def record_race_loss(*, instance: Instance, seconds: float | Decimal, price_per_hour: Decimal,
                     at: datetime | None = None) -> LedgerEntry:
    """A candidate that lost a race for this instance was billed `seconds` at `price_per_hour`."""
    seconds = Decimal(str(seconds)).quantize(Decimal("0.001"))
    price = Decimal(str(price_per_hour))
    if seconds < 0 or price < 0:
        raise ValueError(f"seconds and price must not be negative, got {seconds} s at {price}/h")
    return LedgerEntry.objects.create(
        instance=instance,
        kind=LedgerKind.RACE_LOSS,
        at=at or timezone.now(),
        gpu_price_per_hour=price,
        seconds=seconds,
        amount=prices.hourly_cost(price, seconds).quantize(Decimal("1e-10")),
    )


def _billed_as(*, instance: Instance, status: S, gpu_price: Decimal | None) -> tuple[str, str]:
    if status in NOTHING:
        return BilledAs.NOTHING, ""
    if status == S.PAUSED:
        return BilledAs.DISK, ""
    if status == S.DESTROYING:
        return _billed_as_before(instance), ""
    if gpu_price is None:
        return BilledAs.NOTHING, "no GPU price known yet: counted as 0"
    return BilledAs.GPU, ""


def _billed_as_before(instance: Instance) -> str:
    before = (
        LedgerEntry.objects.filter(instance=instance, kind=LedgerKind.STATE)
        .exclude(status=S.DESTROYING)
        .order_by("-at", "-id")
        .values_list("billed_as", flat=True)
        .first()
    )
    return before or BilledAs.NOTHING
