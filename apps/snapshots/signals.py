"""What the snapshot layer tells the layers above it. Receiver: apps.billing (receivers.py)."""

from django.dispatch import Signal

# The workspace's objects were listed in storage: kwargs `instance`, `stored_bytes` (0 once all
# its snapshots are gone). Storage is billed on that size from now on.
workspace_stored = Signal()
