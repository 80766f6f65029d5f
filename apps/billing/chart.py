"""The savings chart as SVG coordinates, drawn on the server: no chart library, no JavaScript.

Two lines over the period's days: the cumulative always-on cost and the cumulative actual spend,
both starting at 0 before the first day; the band between them is what was saved.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from .periods import as_date
from .selectors import DayFigures

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 12, 28  # room for the axis labels
NICE_STEPS = (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5), Decimal(10))


@dataclass(frozen=True)
class ChartRow:
    day: date
    always_on_cost: Decimal  # cumulative, to the end of the day
    actual_spend: Decimal

    @property
    def savings(self) -> Decimal:
        return self.always_on_cost - self.actual_spend


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True)
class SavingsChart:
    width: int
    height: int
    always_on_points: str  # SVG polyline points "x,y x,y …"
    actual_points: str
    savings_band: str  # polygon points: along always-on, back along actual
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    rows: list[ChartRow]  # the same figures as a table, for those who cannot see the chart
    left: int = LEFT
    right_edge: int = WIDTH - RIGHT
    bottom_edge: int = HEIGHT - BOTTOM


def savings_chart(days: list[DayFigures]) -> SavingsChart:
    rows, always_on, actual = [], Decimal(0), Decimal(0)
    for day in days:
        always_on += day.always_on_cost
        actual += day.actual_spend
        rows.append(ChartRow(day=as_date(day.day), always_on_cost=always_on, actual_spend=actual))
    top = nice_ceiling(max((max(row.always_on_cost, row.actual_spend) for row in rows), default=Decimal(0)))
    always_on_line = _line([row.always_on_cost for row in rows], top)
    actual_line = _line([row.actual_spend for row in rows], top)
    return SavingsChart(
        width=WIDTH,
        height=HEIGHT,
        always_on_points=_points(always_on_line),
        actual_points=_points(actual_line),
        savings_band=_points(always_on_line + list(reversed(actual_line))),
        y_ticks=[Tick(_y(value, top), _dollars(value, top)) for value in (Decimal(0), top / 2, top)],
        x_ticks=_x_ticks(rows),
        rows=rows,
    )


def nice_ceiling(value: Decimal) -> Decimal:
    """The smallest of 1, 2, 2.5, 5 × a power of ten that is at least `value` (1 for nothing)."""
    if value <= 0:
        return Decimal(1)
    scale = Decimal(10) ** (value.adjusted())
    return next(step * scale for step in NICE_STEPS if step * scale >= value)


def _dollars(value: Decimal, top: Decimal) -> str:
    """Cents, or as many places as a chart of fractions of a cent needs to tell its ticks apart."""
    places = max(2, 1 - top.adjusted())
    return f"${value:.{places}f}"


def _line(cumulative: list[Decimal], top: Decimal) -> list[tuple[float, float]]:
    """From 0 at the start of the first day to each day's figure at its end."""
    return [(_x(0, len(cumulative)), _y(Decimal(0), top))] + [
        (_x(i + 1, len(cumulative)), _y(value, top)) for i, value in enumerate(cumulative)
    ]


def _x(index: int, count: int) -> float:
    return LEFT + (WIDTH - LEFT - RIGHT) * index / max(count, 1)


def _y(value: Decimal, top: Decimal) -> float:
    return TOP + (HEIGHT - TOP - BOTTOM) * (1 - float(value / top))


def _points(points: list[tuple[float, float]]) -> str:
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in points)


def _x_ticks(rows: list[ChartRow]) -> list[Tick]:
    """The first and last day, and the middle one on a long period, at the end of their day."""
    if not rows:
        return []
    picks = sorted({0, len(rows) // 2, len(rows) - 1}) if len(rows) > 6 else sorted({0, len(rows) - 1})
    return [Tick(_x(i + 1, len(rows)), f"{rows[i].day:%b} {rows[i].day.day}") for i in picks]
