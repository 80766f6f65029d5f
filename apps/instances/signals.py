"""What the instance layer tells the layers above it. Both are sent inside the transaction that
made the change, so a receiver's writes commit or roll back with it, and a receiver that queues
work does so with `dumont.dispatch.enqueue` (on commit).

Receivers live in each listening app's receivers.py, connected in its AppConfig.ready():
apps.agents, apps.races, apps.billing and apps.hibernation.
"""

from django.dispatch import Signal

# An instance entered a state: kwargs `instance` (saved, in its new state), `from_status` ("" when
# it was just created), `to_status`, `at`. Every transition sends it, creation included.
instance_transitioned = Signal()

# A machine the instance now owns answered a real SSH handshake at its address: a new machine,
# or a stopped one started again. kwargs `instance`. The agent is installed on it.
machine_ready = Signal()
