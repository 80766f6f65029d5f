"""Reads of races: the instance page's live race panel and the API's race field."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from .models import Race, RaceCandidate, RaceStatus


def instance_latest_race(*, instance) -> Race | None:
    return (
        Race.objects.filter(instance=instance)
        .select_related("winner")
        .prefetch_related("candidates")
        .order_by("-started_at")
        .first()
    )


# The badge style of each candidate phase (the stylesheet knows the instance states).
PHASE_BADGES = {
    "creating": "provisioning",
    "booting": "booting",
    "running": "waking",
    "ready": "running",
    "destroying": "destroying",
    "destroyed": "destroyed",
    "never created": "destroyed",
}


@dataclass(frozen=True)
class CandidateRow:
    candidate: RaceCandidate
    seconds: float  # in the race so far, or until destroyed
    is_winner: bool

    @property
    def badge(self) -> str:
        return PHASE_BADGES[self.candidate.phase]


@dataclass(frozen=True)
class RacePanel:
    race: Race
    rows: list[CandidateRow]
    now: datetime

    @property
    def live(self) -> bool:
        """Still worth polling: running, or decided with machines still being destroyed."""
        return self.race.status == RaceStatus.RUNNING or self.race.cleaned_up_at is None and any(
            row.candidate.phase == "destroying" for row in self.rows
        )

    @property
    def round_left_s(self) -> float | None:
        if self.race.status != RaceStatus.RUNNING or not self.race.round_deadline_at:
            return None
        return max(0.0, (self.race.round_deadline_at - self.now).total_seconds())

    @property
    def elapsed_s(self) -> float:
        end = self.race.ready_at or self.race.finished_at or self.now
        return max(0.0, (end - self.race.started_at).total_seconds())


def instance_race_panel(*, instance) -> RacePanel | None:
    race = instance_latest_race(instance=instance)
    if race is None:
        return None
    now = timezone.now()
    rows = [
        CandidateRow(candidate=c, seconds=c.elapsed(now).total_seconds(), is_winner=c.pk == race.winner_id)
        for c in race.candidates.all()
    ]
    return RacePanel(race=race, rows=rows, now=now)
