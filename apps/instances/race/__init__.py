"""The multi-start race: start several machines at once and keep the first that is really ready.

    models.py      Race, RaceCandidate (one row per machine asked for), StrayMachine
    services.py    every write: start, candidate progress, win, fail, cancel
    offers.py      which offers run in a round
    engine.py      the worker loop that drives one race (thread pool for provider and SSH calls)
    reconciler.py  the periodic sweep: stray machines, races whose worker died
    selectors.py   what the instance page and the admin read

`start_race(instance, purpose=...)` is the entry point for create and (later) wake.
"""

from __future__ import annotations


def start_race(instance, *, purpose: str):
    """Record a race for the instance and queue its worker once the transaction commits."""
    from .services import race_start

    return race_start(instance=instance, purpose=purpose)
