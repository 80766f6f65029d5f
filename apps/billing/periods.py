"""The period a report covers, read from `start`/`end` query parameters (API and page alike)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from datetime import timezone as dt_timezone

from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from dumont.errors import InvalidInput

DEFAULT_DAYS = 30
MAX_DAYS = 366


@dataclass(frozen=True)
class Period:
    """[start, end): start included, end excluded, both aware."""

    start: datetime
    end: datetime

    def counted_until(self, now: datetime) -> datetime:
        """Nothing after now is known: figures stop there."""
        return max(self.start, min(self.end, now))


def period_from_params(params, *, now: datetime | None = None) -> Period:
    """`start` and `end` are ISO 8601 datetimes or dates (UTC unless an offset is given).

    A date as `end` includes that whole day. Without `end`: now; without `start`: 30 days
    before the end. Raises InvalidInput naming the parameter.
    """
    now = now or timezone.now()
    end = _parse(params.get("end"), name="end", day_end=True) or now
    start = _parse(params.get("start"), name="start", day_end=False) or end - timedelta(days=DEFAULT_DAYS)
    if end <= start:
        raise InvalidInput("end must be after start", code="invalid_period")
    if end - start > timedelta(days=MAX_DAYS):
        raise InvalidInput(f"the period from start to end may be at most {MAX_DAYS} days", code="invalid_period")
    return Period(start=start, end=end)


def _parse(raw: str | None, *, name: str, day_end: bool) -> datetime | None:
    if raw is None or raw == "":
        return None
    try:
        day = parse_date(raw)  # first: a plain date also parses as a datetime at midnight
        if day is not None:
            moment = datetime.combine(day + timedelta(days=1) if day_end else day, time.min)
        else:
            moment = parse_datetime(raw)
    except (ValueError, OverflowError):  # well formed but impossible, such as 2026-02-30
        moment = None
    if moment is None:
        raise InvalidInput(
            f"{name}: {raw!r} is not an ISO 8601 date or datetime (e.g. 2026-03-01 or 2026-03-01T12:00:00Z)",
            code="invalid_period",
        )
    if timezone.is_naive(moment):
        moment = moment.replace(tzinfo=dt_timezone.utc)
    return moment


def day_starts(period: Period, until: datetime) -> list[datetime]:
    """Midnight (UTC) of every day that [start, until) touches, the first one at or before start."""
    first = datetime.combine(period.start.astimezone(dt_timezone.utc).date(), time.min, tzinfo=dt_timezone.utc)
    days, moment = [], first
    while moment < until or not days:
        days.append(moment)
        moment += timedelta(days=1)
    return days


def as_date(moment: datetime) -> date:
    return moment.astimezone(dt_timezone.utc).date()
