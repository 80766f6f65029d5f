"""Reads of instances; another user's instance is simply not found."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from dumont.errors import InvalidInput, NotFound

from .models import Instance, InstanceStatus


def instance_list(*, user, status: str | None = None, include_destroyed: bool = True) -> QuerySet[Instance]:
    """The user's instances; destroyed ones can be left out unless asked for by status."""
    instances = Instance.objects.filter(user=user)
    if not include_destroyed and status is None:
        instances = instances.exclude(status=InstanceStatus.DESTROYED)
    if status is not None:  # given, even empty: it must name a state
        if status not in InstanceStatus.values:
            raise InvalidInput(
                f"unknown status {status!r}; one of: {', '.join(InstanceStatus.values)}",
                code="bad_status",
            )
        instances = instances.filter(status=status)
    return instances


def instance_get(*, user, instance_id) -> Instance:
    """The user's instance; someone else's, or a malformed id, is simply not found."""
    try:
        key = uuid.UUID(str(instance_id))
    except ValueError:
        raise NotFound("no such instance") from None
    instance = Instance.objects.filter(user=user, pk=key).first()
    if instance is None:
        raise NotFound("no such instance")
    return instance


def instance_events(*, instance: Instance):
    return instance.events.all()
