"""Celery tasks are sent by name, through here only.

Every task has a stable name (`instances.provision`, `races.run`, `hibernation.tick`, ...) given
where it is defined, in its app's tasks.py. Services never import a tasks module: they call
`enqueue`, which sends the task once the current transaction commits (so a worker never sees a
row that is not there yet), or at once when there is no transaction.
"""

from __future__ import annotations

import uuid

from celery import current_app
from django.db import transaction


def enqueue(name: str, *args, countdown: float | None = None) -> None:
    """Send task `name` with `args` once the current transaction commits."""
    transaction.on_commit(lambda: send(name, *args, countdown=countdown))


def send(name: str, *args, countdown: float | None = None) -> None:
    """Send task `name` now (from a task, or code that runs outside any transaction)."""
    options = {"countdown": countdown} if countdown else {}
    current_app.send_task(name, args=[_wire(arg) for arg in args], **options)


def _wire(value):
    return str(value) if isinstance(value, uuid.UUID) else value
