"""Every write to an instance goes through here.

A transition (`instance_transition`) locks the row, checks the state machine
(models.ALLOWED_FROM), writes the new state and an InstanceEvent in one transaction, sends
`signals.instance_transitioned` inside it (billing's ledger and the agents listen), and queues
its follow-up task by name on commit. Nothing in this module talks to a provider or opens SSH:
that happens in orchestration.py, outside transactions.

How an instance is started depends on its strategy: "single" is here (orchestration.provision);
"race" is registered by apps.races (`register_start_strategy`, in RacesConfig.ready()).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from dumont.dispatch import enqueue
from dumont.errors import IllegalTransition, InvalidInput

from .models import ALLOWED_FROM, Instance, InstanceEvent, InstanceStatus, StartStrategy
from .signals import instance_transitioned, machine_ready

S = InstanceStatus


def instance_transition(
    *,
    instance_id,
    to: str,
    actor: str,
    reason: str = "",
    allowed_from: frozenset[str] | None = None,
    then: str | None = None,
    **fields,
) -> Instance:
    """Move an instance to `to` (setting `fields` too), or raise IllegalTransition naming its
    current state. `allowed_from` narrows or widens models.ALLOWED_FROM for this step; `then` is
    a task name, sent with the instance id once the transition commits."""
    allowed = ALLOWED_FROM[to] if allowed_from is None else allowed_from
    with transaction.atomic():
        instance = Instance.objects.select_for_update().get(pk=instance_id)
        if instance.status not in allowed:
            raise IllegalTransition(
                f"cannot go from {instance.status} to {to}", status=instance.status
            )
        from_status = instance.status
        instance.status = to
        instance.status_reason = reason
        instance.status_changed_at = timezone.now()
        for name, value in fields.items():
            setattr(instance, name, value)
        instance.save()
        InstanceEvent.objects.create(
            instance=instance, actor=actor, from_status=from_status, to_status=to, reason=reason
        )
        instance_transitioned.send(Instance, instance=instance, from_status=from_status, to_status=to,
                                   at=instance.status_changed_at)
        if then:
            enqueue(then, instance.id)
    return instance


def _deadline(seconds: float):
    return timezone.now() + timedelta(seconds=seconds)


# --- starting ----------------------------------------------------------------------------------

# strategy -> starts a just-created instance (called inside its creating transaction).
_START_STRATEGIES: dict[str, Callable[[Instance], object]] = {
    StartStrategy.SINGLE: lambda instance: enqueue("instances.provision", instance.id),
}


def register_start_strategy(strategy: str, start: Callable[[Instance], object]) -> None:
    """How instances with `strategy` are started (apps.races registers "race")."""
    _START_STRATEGIES[strategy] = start


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
    start = _START_STRATEGIES[strategy]
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
        instance_transitioned.send(Instance, instance=instance, from_status="", to_status=S.REQUESTED,
                                   at=instance.created_at)
        start(instance)
    return instance


def default_start_strategy(*, offer_id: str = "") -> str:
    """What create does when the request names no strategy: a chosen offer is started alone."""
    return StartStrategy.SINGLE if offer_id else settings.DUMONT_START_STRATEGY


# --- user actions -----------------------------------------------------------------------------


def instance_pause(*, instance: Instance, actor: str) -> Instance:
    """Stop the machine, keeping its disk on the provider."""
    return instance_transition(
        instance_id=instance.pk,
        to=S.STOPPING,
        actor=actor,
        reason="pause requested",
        then="instances.stop_machine",
        deadline_at=_deadline(settings.DUMONT_STOP_TIMEOUT),
    )


def instance_resume(*, instance: Instance, actor: str) -> Instance:
    """Start the same machine again (its disk is still there)."""
    return instance_transition(
        instance_id=instance.pk,
        to=S.WAKING,
        actor=actor,
        reason="resume requested",
        then="instances.start_machine",
        deadline_at=_deadline(settings.DUMONT_BOOT_TIMEOUT),
    )


def instance_destroy(*, instance: Instance, actor: str) -> Instance:
    """Give the machine back for good. Destroying twice is harmless; a destroyed one is a 409."""
    try:
        return instance_transition(
            instance_id=instance.pk,
            to=S.DESTROYING,
            actor=actor,
            reason="destroy requested",
            then="instances.destroy_machine",
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
    return instance_transition(
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
    return instance_transition(
        instance_id=instance_id,
        to=S.BOOTING,
        actor="system:provision",
        reason=f"machine {machine_id} created",
        then="instances.watch",
        machine_id=machine_id,
        deadline_at=_deadline(settings.DUMONT_BOOT_TIMEOUT),
    )


def instance_adopt_machine(*, instance_id, to: str, actor: str, reason: str, allowed_from: frozenset[str],
                           ssh_host: str, ssh_port: int, ssh_host_key: str, **machine) -> Instance:
    """The instance's machine (the one it had, or a race's winner, whose fields come in
    `machine`) answered an SSH handshake: record it with its pinned host key and send
    `machine_ready`, on which the agent is (re)installed (a stop kills its process)."""
    with transaction.atomic():
        instance = instance_transition(
            instance_id=instance_id, to=to, actor=actor, reason=reason, allowed_from=allowed_from,
            ssh_host=ssh_host, ssh_port=ssh_port, ssh_host_key=ssh_host_key, deadline_at=None,
            wake_fallback_at=None, **machine,
        )
        machine_ready.send(Instance, instance=instance)
    return instance


def instance_record_ready(*, instance_id, ssh_host: str, ssh_port: int, ssh_host_key: str) -> Instance:
    """The provider says running and our key completed an SSH handshake at its address."""
    return instance_adopt_machine(
        instance_id=instance_id,
        to=S.RUNNING,
        actor="system:watch",
        reason=f"SSH ready at {ssh_host}:{ssh_port}",
        allowed_from=ALLOWED_FROM[S.RUNNING],
        ssh_host=ssh_host,
        ssh_port=ssh_port,
        ssh_host_key=ssh_host_key,
    )


def instance_record_stopped(*, instance_id) -> Instance:
    return instance_transition(
        instance_id=instance_id,
        to=S.PAUSED,
        actor="system:watch",
        reason="machine stopped, disk kept",
        deadline_at=None,
    )


def instance_record_waiting(*, instance_id, reason: str) -> None:
    """A machine start/stop call was accepted: the watcher takes over from here."""
    with transaction.atomic():
        instance = Instance.objects.select_for_update().get(pk=instance_id)
        instance.status_reason = reason
        instance.save(update_fields=["status_reason", "updated_at"])
        enqueue("instances.watch", instance.id)


def instance_record_destroyed(*, instance_id, reason: str = "machine destroyed") -> Instance:
    return instance_transition(
        instance_id=instance_id,
        to=S.DESTROYED,
        actor="system:destroy",
        reason=reason,
        deadline_at=None,
    )


def instance_fail(*, instance_id, reason: str, actor: str = "system") -> Instance:
    return instance_transition(
        instance_id=instance_id, to=S.FAILED, actor=actor, reason=reason, deadline_at=None
    )


def instance_set_reason(*, instance_id, reason: str) -> None:
    """Say what is going on without a change of state (a race's round, a slow start)."""
    Instance.objects.filter(pk=instance_id).update(status_reason=reason, updated_at=timezone.now())
