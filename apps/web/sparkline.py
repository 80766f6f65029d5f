"""A sparkline as SVG path data, drawn on the server so the page needs no chart library.

Samples are spaced evenly, one point each. A missing value (a GPU reading that failed) is a gap:
the line stops before it and a new subpath starts after it, so a failure never reads as 0 %.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# Room at the top and bottom so a line at 0 or 100 % is not cut in half by the viewBox edge.
PADDING = 2.0


@dataclass(frozen=True)
class Sparkline:
    width: int
    height: int
    path: str  # SVG path data: "M x,y" starts a subpath, "L x,y" continues it
    gap_width: float
    gaps: tuple[float, ...]  # left edge of a band, centred on each sample without a value


def sparkline(values: Sequence[float | None], *, width: int = 300, height: int = 60,
              top: float = 100.0) -> Sparkline:
    """Plot values between 0 and `top`, oldest on the left; None leaves a gap."""
    step = width / (len(values) - 1) if len(values) > 1 else 0.0
    commands: list[str] = []
    gaps: list[float] = []
    previous = None
    for position, value in enumerate(values):
        x = position * step if step else width / 2
        if value is None:
            gaps.append(round(x - step / 2, 1) if step else 0.0)
        else:
            verb = "L" if previous is not None else "M"
            commands.append(f"{verb}{x:.1f},{_y(value, height, top):.1f}")
        previous = value
    return Sparkline(width=width, height=height, path=" ".join(_with_dots(commands)),
                     gap_width=round(step, 1) if step else width, gaps=tuple(gaps))


def _y(value: float, height: int, top: float) -> float:
    share = min(max(value / top, 0.0), 1.0)
    return PADDING + (1 - share) * (height - 2 * PADDING)


def _with_dots(commands: list[str]) -> list[str]:
    """A subpath of one point draws nothing; a zero-length segment with round caps is a dot."""
    out = []
    for position, command in enumerate(commands):
        is_last = position + 1 == len(commands)
        alone = command.startswith("M") and (is_last or commands[position + 1].startswith("M"))
        out.append(command + "h0" if alone else command)
    return out
