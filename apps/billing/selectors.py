"""Reads of the usage ledger: spend, usage and savings over a period, computed from its rows.

Pure computation over the rows once loaded, with `now` passed in, so a test fixes the clock.
Every interval is clipped to [start, min(end, now)).

Savings compare two policies over the same period:
- actual spend: every state interval at the price it was billed at, snapshot storage, and race
  losers' seconds;
- always-on: what leaving the machine on would have cost. Up to the instance's first running,
  and after it was destroyed or failed, both policies cost the same, so always-on counts what was
  actually spent there. In between, it is the GPU price in force (the instance's last known
  offer price) for every hour, whatever the state, and no snapshot storage or race losses.
So an instance that never hibernated saves exactly 0, and savings = the always-on cost of the
time not running minus what hibernating cost (storage, stopped disk, waking, race losers).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Exists, OuterRef, Q, Subquery
from django.utils import timezone

from apps.instances.models import Instance, InstanceStatus

from . import prices
from .models import BilledAs, LedgerEntry, LedgerKind
from .periods import Period, day_starts

S = InstanceStatus
ZERO = prices.ZERO
ENDED = frozenset({S.DESTROYED, S.FAILED})
SHOWN_STATES = (S.RUNNING, S.PAUSED, S.HIBERNATED)


@dataclass
class InstanceFigures:
    """One instance over one period. Money is exact (USD); round it only to show it."""

    instance: Instance | None  # None for a total
    seconds: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    gpu: Decimal = ZERO
    stopped_disk: Decimal = ZERO
    storage: Decimal = ZERO
    race_losses: Decimal = ZERO
    always_on_cost: Decimal = ZERO
    hibernations: int = 0
    wakes: int = 0
    wake_seconds: list[Decimal] = field(default_factory=list)

    @property
    def actual_spend(self) -> Decimal:
        return self.gpu + self.stopped_disk + self.storage + self.race_losses

    @property
    def savings(self) -> Decimal:
        return self.always_on_cost - self.actual_spend

    def hours(self, *statuses: str) -> Decimal:
        return sum((self.seconds[status] for status in statuses), ZERO) / prices.SECONDS_PER_HOUR

    @property
    def hours_running(self) -> Decimal:
        return self.hours(S.RUNNING)

    @property
    def hours_paused(self) -> Decimal:
        return self.hours(S.PAUSED)

    @property
    def hours_hibernated(self) -> Decimal:
        return self.hours(S.HIBERNATED)

    @property
    def hours_transitioning(self) -> Decimal:
        """Starting, stopping, snapshotting, waking, destroying: every state between the others."""
        return self.hours(*(set(S) - set(SHOWN_STATES) - ENDED))

    @property
    def is_empty(self) -> bool:
        """Nothing to report: the instance did not exist, or was long gone, in this period."""
        alive = sum((secs for status, secs in self.seconds.items() if status not in ENDED), ZERO)
        return alive == 0 and self.actual_spend == 0


@dataclass(frozen=True)
class UsageMetrics:
    period: Period
    counted_until: datetime
    total: InstanceFigures
    wake_p50_s: float | None
    wake_p90_s: float | None


@dataclass(frozen=True)
class SavingsReport:
    period: Period
    counted_until: datetime
    instances: list[InstanceFigures]
    total: InstanceFigures


@dataclass(frozen=True)
class DayFigures:
    day: datetime  # midnight UTC
    always_on_cost: Decimal
    actual_spend: Decimal

    @property
    def savings(self) -> Decimal:
        return self.always_on_cost - self.actual_spend


# --- public reads -------------------------------------------------------------------------------


def usage_metrics(*, user, period: Period, now: datetime | None = None) -> UsageMetrics:
    """Hours per state, hibernations, wakes and their durations, and spend, for the user's instances.

    A hibernation is an entry into `hibernating` (so one woken while still paused counts; a
    plain pause does not). A wake is an entry into `waking`; its duration runs to the next state
    if that is `running` (a wake that failed has none).
    """
    until = period.counted_until(now or timezone.now())
    total = _sum(_figures(ledger, period.start, until) for ledger in _ledgers(user=user, period=period))
    return UsageMetrics(
        period=period,
        counted_until=until,
        total=total,
        wake_p50_s=percentile(total.wake_seconds, Decimal("0.5")),
        wake_p90_s=percentile(total.wake_seconds, Decimal("0.9")),
    )


def real_savings(*, user, period: Period, now: datetime | None = None) -> SavingsReport:
    """Always-on cost, actual spend and savings of each of the user's instances, and in total."""
    until = period.counted_until(now or timezone.now())
    rows = [_figures(ledger, period.start, until) for ledger in _ledgers(user=user, period=period)]
    rows = [row for row in rows if not row.is_empty]
    return SavingsReport(period=period, counted_until=until, instances=rows, total=_sum(rows))


def savings_by_day(*, user, period: Period, now: datetime | None = None) -> list[DayFigures]:
    """Always-on cost and actual spend of each UTC day of the period (the first and last partly)."""
    until = period.counted_until(now or timezone.now())
    ledgers = _ledgers(user=user, period=period)
    days = []
    for day in day_starts(period, until):
        start, end = max(day, period.start), min(day + timedelta(days=1), until)
        total = _sum(_figures(ledger, start, end) for ledger in ledgers) if end > start else None
        days.append(DayFigures(
            day=day,
            always_on_cost=total.always_on_cost if total else ZERO,
            actual_spend=total.actual_spend if total else ZERO,
        ))
    return days


def percentile(values: list[Decimal], share: Decimal) -> float | None:
    """Linear interpolation between the closest ranks (numpy's default); None without values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * share
    below = int(position)
    above = min(below + 1, len(ordered) - 1)
    value = ordered[below] + (ordered[above] - ordered[below]) * (position - below)
    return float(value)


# --- loading ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ledger:
    """One instance's rows that matter for a period: those in it and the ones in force at its start."""

    instance: Instance
    states: list[LedgerEntry]
    storage: list[LedgerEntry]
    race_losses: list[LedgerEntry]
    first_running_at: datetime | None
    ended_at: datetime | None


def _ledgers(*, user, period: Period) -> list[_Ledger]:
    """Two queries: the user's instances with a row before the end, then the rows needed."""

    def latest_before(kind: str):
        return Subquery(
            LedgerEntry.objects.filter(instance=OuterRef("pk"), kind=kind, at__lt=period.start)
            .order_by("-at", "-id").values("id")[:1]
        )

    def first_entry_into(statuses):
        return Subquery(
            LedgerEntry.objects.filter(instance=OuterRef("pk"), kind=LedgerKind.STATE, status__in=statuses)
            .order_by("at", "id").values("at")[:1]
        )

    instances = list(
        Instance.objects.filter(user=user)
        .filter(Exists(LedgerEntry.objects.filter(instance=OuterRef("pk"), at__lt=period.end)))
        .annotate(
            state_before_id=latest_before(LedgerKind.STATE),
            storage_before_id=latest_before(LedgerKind.STORAGE),
            first_running_at=first_entry_into([S.RUNNING]),
            ended_at=first_entry_into(list(ENDED)),
        )
        .order_by("created_at", "id")
    )
    if not instances:
        return []
    before = [i.state_before_id for i in instances] + [i.storage_before_id for i in instances]
    rows = LedgerEntry.objects.filter(
        Q(instance__in=[i.pk for i in instances], at__gte=period.start, at__lt=period.end)
        | Q(pk__in=[pk for pk in before if pk is not None])
    ).order_by("at", "id")
    by_instance: dict = defaultdict(lambda: defaultdict(list))
    for row in rows:
        by_instance[row.instance_id][row.kind].append(row)
    return [
        _Ledger(
            instance=instance,
            states=by_instance[instance.pk][LedgerKind.STATE],
            storage=by_instance[instance.pk][LedgerKind.STORAGE],
            race_losses=by_instance[instance.pk][LedgerKind.RACE_LOSS],
            first_running_at=instance.first_running_at,
            ended_at=instance.ended_at,
        )
        for instance in instances
    ]


# --- computing ----------------------------------------------------------------------------------


def _figures(ledger: _Ledger, start: datetime, end: datetime) -> InstanceFigures:
    figures = InstanceFigures(instance=ledger.instance)
    on_from, on_until = ledger.first_running_at, ledger.ended_at
    _add_states(figures, ledger.states, start, end, on_from, on_until)
    _add_storage(figures, ledger.storage, start, end, on_from, on_until)
    for loss in ledger.race_losses:
        if start <= loss.at < end:
            figures.race_losses += loss.amount
            if not _within(loss.at, on_from, on_until):
                figures.always_on_cost += loss.amount
    return figures


def _add_states(figures: InstanceFigures, states: list[LedgerEntry], start, end, on_from, on_until) -> None:
    price_in_force = None  # the last known GPU price: what always-on pays, whatever the state
    previous = waking_since = None
    for index, entry in enumerate(states):
        if entry.gpu_price_per_hour is not None:
            price_in_force = entry.gpu_price_per_hour
        entered = start <= entry.at < end and entry.status != previous
        previous = entry.status
        waking_since = _count_transition(figures, entry, entered=entered, waking_since=waking_since)

        following = states[index + 1].at if index + 1 < len(states) else end
        span = _clip(entry.at, following, start, end)
        if span is None:
            continue
        cost = _state_cost(entry)
        seconds = prices.seconds_of(span[1] - span[0])
        figures.seconds[entry.status] += seconds
        spent = cost(seconds)
        if entry.billed_as == BilledAs.DISK:
            figures.stopped_disk += spent
        else:
            figures.gpu += spent
        on_seconds = _overlap_seconds(span, on_from, on_until)
        figures.always_on_cost += spent - cost(on_seconds) + prices.hourly_cost(price_in_force or ZERO, on_seconds)


def _count_transition(figures: InstanceFigures, entry: LedgerEntry, *, entered: bool,
                      waking_since: datetime | None) -> datetime | None:
    """Count hibernations and wakes entered in the period; returns when the wake under way began."""
    if entry.status == S.HIBERNATING and entered:
        figures.hibernations += 1
    if entry.status == S.WAKING:
        if entered:
            figures.wakes += 1
            return entry.at
        return waking_since
    if entry.status == S.RUNNING and waking_since is not None:
        figures.wake_seconds.append(prices.seconds_of(entry.at - waking_since))
    return None


def _add_storage(figures: InstanceFigures, rows: list[LedgerEntry], start, end, on_from, on_until) -> None:
    for index, entry in enumerate(rows):
        following = rows[index + 1].at if index + 1 < len(rows) else end
        span = _clip(entry.at, following, start, end)
        if span is None:
            continue

        def cost(seconds: Decimal, entry=entry) -> Decimal:
            return prices.storage_cost(entry.stored_bytes, entry.storage_price_per_gb_month, seconds)

        spent = cost(prices.seconds_of(span[1] - span[0]))
        figures.storage += spent
        # Always-on keeps no snapshots: only storage outside the compared stretch counts.
        figures.always_on_cost += spent - cost(_overlap_seconds(span, on_from, on_until))


def _state_cost(entry: LedgerEntry) -> Callable[[Decimal], Decimal]:
    if entry.billed_as == BilledAs.GPU and entry.gpu_price_per_hour is not None:
        price = entry.gpu_price_per_hour
    elif entry.billed_as == BilledAs.DISK and entry.disk_price_per_hour is not None:
        price = entry.disk_price_per_hour
    else:
        price = ZERO
    return lambda seconds: prices.hourly_cost(price, seconds)


def _clip(begin: datetime, finish: datetime, start: datetime, end: datetime):
    begin, finish = max(begin, start), min(finish, end)
    return (begin, finish) if finish > begin else None


def _overlap_seconds(span, on_from: datetime | None, on_until: datetime | None) -> Decimal:
    """Seconds of `span` inside [first running, ended): the stretch where the policies differ."""
    if on_from is None:
        return ZERO
    clipped = _clip(span[0], span[1], on_from, on_until or span[1])
    return prices.seconds_of(clipped[1] - clipped[0]) if clipped else ZERO


def _within(moment: datetime, on_from: datetime | None, on_until: datetime | None) -> bool:
    return on_from is not None and on_from <= moment and (on_until is None or moment < on_until)


def _sum(rows: Iterable[InstanceFigures]) -> InstanceFigures:
    total = InstanceFigures(instance=None)
    for row in rows:
        for status, seconds in row.seconds.items():
            total.seconds[status] += seconds
        total.gpu += row.gpu
        total.stopped_disk += row.stopped_disk
        total.storage += row.storage
        total.race_losses += row.race_losses
        total.always_on_cost += row.always_on_cost
        total.hibernations += row.hibernations
        total.wakes += row.wakes
        total.wake_seconds.extend(row.wake_seconds)
    return total
