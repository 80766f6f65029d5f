"""Layer 2: the instance — what a user rents — and its state machine.

    models.py        Instance, InstanceEvent (the audit trail), IdempotencyRecord
    services.py      every write; `instance_transition` is the one way to change a state
    signals.py       instance_transitioned, machine_ready: how the layers above follow
    orchestration.py the single start, and the stop, start and destroy of the instance's machine
    steps.py         how any app's task runs a provider step (retries, give up with a reason)
    idempotency.py   Idempotency-Key records
    selectors.py     reads

Its API, pages and admin page are in apps.web: they show every layer.
"""
