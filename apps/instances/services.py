"""Every write to an instance goes through here.

A transition locks the row, checks the state machine (models.ALLOWED_FROM), writes the new state
and an InstanceEvent in one transaction, and enqueues follow-up work on commit. Nothing in this
module talks to a provider or opens SSH: that happens in orchestration.py, outside transactions.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.billing import services as billing_services
from dumont.errors import Conflict, IllegalTransition, InvalidInput

from . import agent_services
from .models import ALLOWED_FROM, IdempotencyRecord, Instance, InstanceEvent, InstanceStatus
from .race import start_race
from .race.models import RacePurpose, StartStrategy

S = InstanceStatus


def _enqueue(task_name: str, instance_id) -> None:
    from . import tasks  # tasks import services; import late to keep the cycle harmless

    task = getattr(tasks, task_name)
    transaction.on_commit(lambda: task.delay(str(instance_id)))


def _transition(
    *,
    instance_id,
    to: str,
    actor: str,
    reason: str = "",
    allowed_from: frozenset[str] | None = None,
    then: str | None = None,
    **fields,
) -> Instance:
    """Move an instance to `to`, or raise IllegalTransition naming its current state."""
    allowed = ALLOWED_FROM[to] if allowed_from is None else allowed_from
    with transaction.atomic():
        instance = Instance.objects.select_for_update().get(pk=instance_id)
        if instance.status not in allowed:
            raise IllegalTransition(
                f"cannot go from {instance.status} to {to}", status=instance.status
            )
        event = InstanceEvent(
            instance=instance, actor=actor, from_status=instance.status, to_status=to, reason=reason
        )
        instance.status = to
        instance.status_reason = reason
        instance.status_changed_at = timezone.now()
        for name, value in fields.items():
            setattr(instance, name, value)
        instance.save()
        event.save()
        billing_services.record_state(instance=instance, status=to, at=instance.status_changed_at)
        if then:
            _enqueue(then, instance.id)
    return instance


def _deadline(seconds: float):
    return timezone.now() + timedelta(seconds=seconds)


# --- user actions -----------------------------------------------------------------------------


def instance_create(
    *,
    user,
    actor: str,
    label: str,
    image: str,
    disk_gb: int,
    gpu_name: str = "",
    num_gpus: int = 1,
    min_gpu_ram_gb: int | None = None,
    max_price_per_hour: Decimal | None = None,
    offer_id: str = "",
    strategy: str = StartStrategy.SINGLE,
) -> Instance:
    """Record the request and queue the start: one machine (single) or a race of several.

    The API and the pages pass the strategy the user chose, else DUMONT_START_STRATEGY.
    """
    if not offer_id and not gpu_name:
        raise InvalidInput("give either offer_id or gpu_name", code="missing_gpu_spec")
    if offer_id and gpu_name:
        raise InvalidInput("give offer_id or a GPU spec, not both", code="ambiguous_gpu_spec")
    if strategy not in StartStrategy.values:
        raise InvalidInput(f"strategy must be one of {', '.join(StartStrategy.values)}", code="bad_strategy")
    if strategy == StartStrategy.RACE and offer_id:
        raise InvalidInput("a race needs a GPU spec, not one chosen offer", code="race_needs_gpu_spec")
    with transaction.atomic():
        instance = Instance.objects.create(
            user=user,
            label=label,
            image=image,
            disk_gb=disk_gb,
            gpu_name=gpu_name,
            num_gpus=num_gpus,
            min_gpu_ram_gb=min_gpu_ram_gb,
            max_price_per_hour=max_price_per_hour,
            requested_offer_id=offer_id,
            provider=settings.DUMONT_PROVIDER,
            start_strategy=strategy,
        )
        InstanceEvent.objects.create(
            instance=instance, actor=actor, to_status=S.REQUESTED, reason="created"
        )
        billing_services.record_state(instance=instance, status=S.REQUESTED, at=instance.created_at)
        if strategy == StartStrategy.RACE:
            start_race(instance, purpose=RacePurpose.CREATE)
        else:
            _enqueue("instance_provision", instance.id)
    return instance


def default_start_strategy(*, offer_id: str = "") -> str:
    """What create does when the request names no strategy: a chosen offer is started alone."""
    return StartStrategy.SINGLE if offer_id else settings.DUMONT_START_STRATEGY


def instance_pause(*, instance: Instance, actor: str) -> Instance:
    """Stop the machine, keeping its disk on the provider."""
    return _transition(
        instance_id=instance.pk,
        to=S.STOPPING,
        actor=actor,
        reason="pause requested",
        then="instance_stop_machine",
        deadline_at=_deadline(settings.DUMONT_STOP_TIMEOUT),
    )


def instance_resume(*, instance: Instance, actor: str) -> Instance:
    """Start the same machine again (its disk is still there)."""
    return _transition(
        instance_id=instance.pk,
        to=S.WAKING,
        actor=actor,
        reason="resume requested",
        then="instance_start_machine",
        deadline_at=_deadline(settings.DUMONT_BOOT_TIMEOUT),
    )


def instance_set_idle_policy(*, instance: Instance, actor: str, **policy) -> Instance:
    """Change when the instance hibernates; the change is an event in its timeline."""
    with transaction.atomic():
        instance = Instance.objects.select_for_update().get(pk=instance.pk)
        for name, value in policy.items():
            setattr(instance, name, value)
        instance.save()
        described = ", ".join(f"{name}={'default' if value is None else value}" for name, value in policy.items())
        InstanceEvent.objects.create(instance=instance, actor=actor, from_status=instance.status,
                                     to_status=instance.status, reason=f"idle policy: {described}")
    return instance


def instance_destroy(*, instance: Instance, actor: str) -> Instance:
    """Give the machine back for good. Destroying twice is harmless; a destroyed one is a 409."""
    try:
        return _transition(
            instance_id=instance.pk,
            to=S.DESTROYING,
            actor=actor,
            reason="destroy requested",
            then="instance_destroy_machine",
            deadline_at=None,
        )
    except IllegalTransition as exc:
        if exc.extra["status"] != S.DESTROYING:
            raise
        return Instance.objects.get(pk=instance.pk)  # already on its way: same answer as the first time


# --- results the orchestration records --------------------------------------------------------


def instance_record_create_attempt(*, instance_id, offer_id: str, price_per_hour, gpu_name: str,
                                   host_id: str, location: str) -> Instance:
    """Intent first: written and committed before the provider's create call."""
    return _transition(
        instance_id=instance_id,
        to=S.PROVISIONING,
        actor="system:provision",
        reason=f"renting offer {offer_id}",
        allowed_from=frozenset({S.REQUESTED, S.PROVISIONING}),
        create_attempted_at=timezone.now(),
        offer_id=offer_id,
        price_per_hour=price_per_hour,
        machine_gpu_name=gpu_name,
        host_id=host_id,
        location=location,
    )


def instance_record_machine(*, instance_id, machine_id: str) -> Instance:
    """The provider accepted the create: wait for the machine to boot."""
    return _transition(
        instance_id=instance_id,
        to=S.BOOTING,
        actor="system:provision",
        reason=f"machine {machine_id} created",
        then="instance_watch",
        machine_id=machine_id,
        deadline_at=_deadline(settings.DUMONT_BOOT_TIMEOUT),
    )


def instance_record_ready(*, instance_id, ssh_host: str, ssh_port: int, ssh_host_key: str) -> Instance:
    """The provider says running and our key completed an SSH handshake at its address.

    The agent is (re)installed on every arrival in running: a stop kills its process.
    """
    from .hibernation.services import wake_record_running  # hibernation builds on this module

    with transaction.atomic():
        instance = _transition(
            instance_id=instance_id,
            to=S.RUNNING,
            actor="system:watch",
            reason=f"SSH ready at {ssh_host}:{ssh_port}",
            then="agent_install" if settings.DUMONT_AGENT_ENABLED else None,
            ssh_host=ssh_host,
            ssh_port=ssh_port,
            ssh_host_key=ssh_host_key,
            deadline_at=None,
            wake_fallback_at=None,
        )
        wake_record_running(instance=instance)  # a paused machine woken: that wake is done
    return instance


def instance_record_stopped(*, instance_id) -> Instance:
    with transaction.atomic():
        instance = _transition(
            instance_id=instance_id,
            to=S.PAUSED,
            actor="system:watch",
            reason="machine stopped, disk kept",
            deadline_at=None,
        )
        agent_services.agent_machine_stopped(instance_id=instance_id)
    return instance


def instance_record_waiting(*, instance_id, reason: str) -> None:
    """A machine start/stop call was accepted: the watcher takes over from here."""
    with transaction.atomic():
        instance = Instance.objects.select_for_update().get(pk=instance_id)
        instance.status_reason = reason
        instance.save(update_fields=["status_reason", "updated_at"])
        _enqueue("instance_watch", instance.id)


def instance_record_destroyed(*, instance_id, reason: str = "machine destroyed") -> Instance:
    with transaction.atomic():
        instance = _transition(
            instance_id=instance_id,
            to=S.DESTROYED,
            actor="system:destroy",
            reason=reason,
            deadline_at=None,
        )
        agent_services.agent_token_revoke(instance_id=instance_id)  # its token dies with it
    return instance


def instance_fail(*, instance_id, reason: str, actor: str = "system") -> Instance:
    return _transition(
        instance_id=instance_id, to=S.FAILED, actor=actor, reason=reason, deadline_at=None
    )


# --- idempotency ------------------------------------------------------------------------------


def request_fingerprint(payload: object) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def idempotent(
    *, user, scope: str, key: str | None, payload: object, perform: Callable[[], tuple[int, dict]]
) -> tuple[int, dict, bool]:
    """Run `perform` once per (user, scope, key); repeats get the first response back.

    Returns (status, body, replayed). `perform` runs inside the same transaction as the record,
    so a crash cannot leave an action done without its record or the other way round.
    """
    if not key:
        status, body = perform()
        return status, body, False
    if len(key) > 255:
        raise InvalidInput("Idempotency-Key is longer than 255 characters", code="bad_idempotency_key")
    fingerprint = request_fingerprint(payload)
    record = IdempotencyRecord.objects.filter(user=user, scope=scope, key=key).first()
    if record is None:
        try:
            with transaction.atomic():
                status, body = perform()
                IdempotencyRecord.objects.create(
                    user=user, scope=scope, key=key, fingerprint=fingerprint,
                    response_status=status, response_body=body,
                )
                return status, body, False
        except IntegrityError:
            # A concurrent request with the same key committed first: its response is the answer.
            record = IdempotencyRecord.objects.filter(user=user, scope=scope, key=key).first()
            if record is None:
                raise
    if record.fingerprint != fingerprint:
        raise Conflict(
            "this Idempotency-Key was already used with a different request body",
            code="idempotency_key_reused",
        )
    return record.response_status, record.response_body, True
