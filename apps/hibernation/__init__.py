"""Layer 5: auto-hibernation and wake, the loop users pay for.

    idle.py          the idle rule, pure: is a machine unused, judged from its samples?
    policy.py        the idle policy of an instance (its own settings over the global ones)
    models.py        Wake: one row per wake, with the time each part took
    services.py      every write: idle policy, hibernate, abort, stop, release, wake, restore results
    orchestration.py the provider calls: give back a paused machine, fall back to a race
    tick.py          the beat task that looks at every instance that may need to move
    receivers.py     a wake race won, a restore command moved, a paused machine running again

Hibernate: running → hibernating (the agent snapshots the workspace) → the control plane
checks the snapshot in storage → stopping → paused (disk kept) → after
DUMONT_HIBERNATE_RELEASE_AFTER, the machine is destroyed → hibernated (only the snapshot).
A machine is never destroyed unless a verified snapshot taken after its last activity exists.

Wake: paused → waking on the same machine (a race for a new one when it does not come back
in DUMONT_WAKE_START_TIMEOUT and a verified snapshot covers it); hibernated → waking → race →
agent installed → newest snapshot restored → running.
"""
