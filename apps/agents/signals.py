"""What the agent layer tells the layers above it, sent inside the transaction of the change.

Receivers: apps.snapshots (a snapshot command finished) and apps.hibernation (a wake's restore
command was acknowledged or finished), in their receivers.py.
"""

from django.dispatch import Signal

# An agent acknowledged a command or reported its end: kwargs `command` (an AgentCommand, reloaded).
command_updated = Signal()
