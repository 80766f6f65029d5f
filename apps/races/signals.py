"""What a race tells the layers above it, sent inside the transaction of the change.

Receivers: apps.hibernation (a wake's race was won: restore the snapshot onto the winner) and
apps.billing (a losing machine's seconds were billed), in their receivers.py.
"""

from django.dispatch import Signal

# The race's winner became the instance's machine: kwargs `race`, `instance` (in its new state:
# running for a create race; still waking for a wake race, which its wake finishes).
race_won = Signal()

# A machine that did not win was destroyed and the provider billed it: kwargs `instance`,
# `seconds`, `price_per_hour`, `at` (the race's start).
loser_billed = Signal()
