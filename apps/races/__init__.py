"""Layer 4: the multi-start race: start several machines at once, keep the first really ready.

    models.py      Race, RaceCandidate (one row per machine asked for), StrayMachine
    services.py    every write: start, candidate progress, win, fail, cancel
    offers.py      which offers run in a round
    engine.py      the worker loop that drives one race (thread pool for provider and SSH calls)
    reconciler.py  the periodic sweep: stray machines, races whose worker died, leftovers
    selectors.py   what the instance page and the API read
    signals.py     race_won (for wakes), loser_billed (for the ledger)
    receivers.py   the "race" start strategy; races called off when their instance is destroyed

A create race starts when an instance is created with the "race" strategy; a wake race when
apps.hibernation wakes a hibernated instance (`services.race_start`).
"""
