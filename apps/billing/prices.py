"""Prices and the arithmetic of money: one place for the units, shared by services and selectors.

Units: money in USD as Decimal, never float. A month is 30 days (720 h) and a GB is 10^9 bytes,
as object storage and GPU marketplaces count them. Durations are exact Decimal seconds and figures
keep Decimal's full precision (exact whenever the division terminates); they are rounded to
cents only when shown.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.conf import settings

SECONDS_PER_HOUR = Decimal(3600)
HOURS_PER_MONTH = Decimal(720)
SECONDS_PER_MONTH = SECONDS_PER_HOUR * HOURS_PER_MONTH
BYTES_PER_GB = Decimal(10**9)
ZERO = Decimal(0)

# The rates are settings (dumont/settings.py): R2's $0.015/GB-month from shared/providers.md,
# and for a stopped machine's disk one rate per GB-month standing for the offer's `storage_cost`
# (not kept on the instance), which vast.ai keeps billing while the machine is stopped.


def storage_price_per_gb_month() -> Decimal:
    return Decimal(settings.DUMONT_STORAGE_PRICE_PER_GB_MONTH)


def stopped_disk_price_per_hour(disk_gb: int) -> Decimal:
    """USD/h for the disk of a stopped machine: its size × the per-GB-month rate ÷ 720 h."""
    rate = Decimal(settings.DUMONT_STOPPED_DISK_PRICE_PER_GB_MONTH)
    return (Decimal(disk_gb) * rate / HOURS_PER_MONTH).quantize(Decimal("1e-12"))


def seconds_of(span: timedelta) -> Decimal:
    """A duration as exact Decimal seconds (timedelta.total_seconds() is a float)."""
    whole = span.days * 86400 + span.seconds
    return Decimal(whole) + Decimal(span.microseconds) / Decimal(10**6)


def hourly_cost(price_per_hour: Decimal, seconds: Decimal) -> Decimal:
    return price_per_hour * seconds / SECONDS_PER_HOUR


def storage_cost(stored_bytes: int, price_per_gb_month: Decimal, seconds: Decimal) -> Decimal:
    return Decimal(stored_bytes) * price_per_gb_month * seconds / (BYTES_PER_GB * SECONDS_PER_MONTH)

