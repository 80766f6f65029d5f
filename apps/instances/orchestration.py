"""The steps that talk to providers and SSH, always outside a transaction.

Each step reloads the instance, returns early if the work is done or the row moved on, acts on
the provider, then records the result through a service. Celery tasks (tasks.py) are thin
wrappers that retry transient provider errors; a step returns a number of seconds when it
wants to be called again (polling), else None.

This is the single start (one machine, watched until it answers SSH) and the stop, start and
destroy of an instance's own machine. A race (apps.races) starts machines its own way and
hands the winner over through services.instance_adopt_machine.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from apps.providers.base import CreateSpec, MachineState, OfferGone, OfferQuery, Provider, ProviderError
from apps.providers.registry import get_provider
from apps.providers.ssh import HostKeyChanged, SshNotReady, control_plane_public_key, ssh_handshake
from dumont.dispatch import send
from dumont.errors import IllegalTransition

from . import services
from .models import WATCHED, Instance, InstanceStatus

log = logging.getLogger(__name__)
S = InstanceStatus

_keys_registered: set[tuple[str, str]] = set()


def provider_of(instance: Instance) -> Provider:
    return get_provider(instance.provider)


def _load(instance_id) -> Instance | None:
    return Instance.objects.filter(pk=instance_id).first()


def register_ssh_key(provider: Provider) -> None:
    """Machines must accept our key; vast account keys reach only machines created afterwards."""
    public_key = control_plane_public_key()
    if (provider.name, public_key) not in _keys_registered:
        provider.ensure_ssh_key(public_key)
        _keys_registered.add((provider.name, public_key))


def _create_spec(instance: Instance) -> CreateSpec:
    return CreateSpec(
        image=instance.image,
        disk_gb=instance.disk_gb,
        label=instance.machine_label,
        env={"DUMONT_INSTANCE_ID": str(instance.id)},
    )


def _candidate_offers(provider: Provider, instance: Instance):
    if instance.requested_offer_id:
        return None  # the user chose the offer; nothing to search
    query = OfferQuery(
        gpu_name=instance.gpu_name or None,
        num_gpus=instance.num_gpus,
        min_gpu_ram_gb=instance.min_gpu_ram_gb,
        max_price_per_hour=instance.max_price_per_hour,
        min_disk_gb=instance.disk_gb,
        limit=settings.DUMONT_CREATE_MAX_OFFERS,
    )
    return provider.search_offers(query)


# --- provision --------------------------------------------------------------------------------


def provision(instance_id) -> None:
    """Rent a machine for a requested instance without ever renting two."""
    instance = _load(instance_id)
    if instance is None or instance.status not in (S.REQUESTED, S.PROVISIONING):
        return
    provider = provider_of(instance)
    if instance.create_attempted_at and _adopt_machine_by_label(provider, instance):
        return
    register_ssh_key(provider)
    offers = _candidate_offers(provider, instance)
    if offers is None:
        _try_offer(provider, instance, offer_id=instance.requested_offer_id, offer=None)
        return
    if not offers:
        services.instance_fail(instance_id=instance.id, reason=_no_offer_reason(instance))
        return
    for offer in offers:
        if _try_offer(provider, instance, offer_id=offer.id, offer=offer):
            return
    services.instance_fail(
        instance_id=instance.id,
        reason=f"all {len(offers)} matching offers were taken before we could rent them",
    )


def _no_offer_reason(instance: Instance) -> str:
    spec = f"{instance.num_gpus}× {instance.gpu_name}"
    if instance.max_price_per_hour is not None:
        spec += f" at most ${instance.max_price_per_hour}/h"
    return f"no offer matches {spec}"


def _adopt_machine_by_label(provider: Provider, instance: Instance) -> bool:
    """A create was attempted before: its reply may have been lost while the machine exists."""
    machine = provider.find_by_label(instance.machine_label)
    if machine is None:
        return False
    log.info("instance %s: adopting machine %s found by label", instance.id, machine.id)
    _record_machine(provider, instance.id, machine.id)
    return True


def _try_offer(provider: Provider, instance: Instance, *, offer_id: str, offer) -> bool:
    """Record intent, create, record result. False when the offer is gone (try another)."""
    services.instance_record_create_attempt(
        instance_id=instance.id,
        offer_id=offer_id,
        price_per_hour=offer.price_per_hour if offer else None,
        gpu_name=offer.gpu_name if offer else "",
        host_id=offer.machine_id if offer else "",
        location=offer.location if offer else "",
    )
    try:
        machine_id = provider.create(offer_id=offer_id, spec=_create_spec(instance))
    except OfferGone:
        log.info("instance %s: offer %s is gone", instance.id, offer_id)
        if offer is None:
            services.instance_fail(
                instance_id=instance.id, reason=f"offer {offer_id} is no longer available"
            )
            return True
        return False
    _record_machine(provider, instance.id, machine_id)
    return True


def _record_machine(provider: Provider, instance_id, machine_id: str) -> None:
    try:
        services.instance_record_machine(instance_id=instance_id, machine_id=machine_id)
    except IllegalTransition:
        # The instance was destroyed (or failed) while the create was in flight: a machine
        # arriving for it now belongs to no one, so it goes at once.
        log.warning("instance %s: machine %s arrived too late; destroying it", instance_id, machine_id)
        provider.destroy(machine_id)


# --- watch: booting, waking, stopping ----------------------------------------------------------


def watch(instance_id) -> float | None:
    """Poll the provider for an instance waiting on it; seconds until the next poll, or None."""
    instance = _load(instance_id)
    if instance is None or instance.status not in WATCHED:
        return None
    if instance.deadline_at is None or not instance.machine_id:
        # Nothing here waits on the provider: a race drives this instance (a wake restoring its
        # snapshot onto the race's winner is waking with a machine, and must not be called running).
        return None
    Instance.objects.filter(pk=instance.pk).update(watched_at=timezone.now())  # alive, for the reconciler
    if timezone.now() > instance.deadline_at:
        _give_up_waiting(instance)
        return None
    provider = provider_of(instance)
    machine = provider.get(instance.machine_id)
    if machine is None:
        services.instance_fail(
            instance_id=instance.id, reason=f"machine {instance.machine_id} vanished at the provider"
        )
        return None
    if instance.status == S.STOPPING:
        return _watch_stopping(instance, machine)
    return _watch_starting(provider, instance, machine)


def _watch_stopping(instance: Instance, machine) -> float | None:
    if machine.state == MachineState.STOPPED:
        services.instance_record_stopped(instance_id=instance.id)
        return None
    return settings.DUMONT_POLL_INTERVAL


def _watch_starting(provider: Provider, instance: Instance, machine) -> float | None:
    if machine.state == MachineState.FAILED:
        reason = f"machine {machine.id} failed to start: {machine.status_msg or 'no reason given'}"
        _fail_start(provider, instance, reason)
        return None
    if machine.state != MachineState.RUNNING or not machine.ssh_host or not machine.ssh_port:
        return settings.DUMONT_POLL_INTERVAL
    pinned = instance.ssh_host_key if instance.status == S.WAKING else ""
    try:
        host_key = ssh_handshake(machine.ssh_host, machine.ssh_port, pinned_host_key=pinned)
    except SshNotReady as exc:
        log.info("instance %s: %s", instance.id, exc)
        return settings.DUMONT_POLL_INTERVAL
    except HostKeyChanged as exc:
        services.instance_fail(instance_id=instance.id, reason=f"refused: {exc}")
        return None
    services.instance_record_ready(
        instance_id=instance.id,
        ssh_host=machine.ssh_host,
        ssh_port=machine.ssh_port,
        ssh_host_key=host_key,
    )
    return None


def _give_up_waiting(instance: Instance) -> None:
    waited = {S.BOOTING: "boot", S.WAKING: "start", S.STOPPING: "stop"}[instance.status]
    reason = f"machine {instance.machine_id} did not {waited} before the deadline"
    if instance.status == S.BOOTING:
        _fail_start(provider_of(instance), instance, reason)
    else:
        services.instance_fail(instance_id=instance.id, reason=reason)


def _fail_start(provider: Provider, instance: Instance, reason: str) -> None:
    """A machine that never became ready holds no work: give it back, then record the failure.

    A machine being woken holds the user's disk, so it is kept and the failure shown.
    """
    if instance.status == S.BOOTING:
        provider.destroy(instance.machine_id)
        reason += "; the machine was destroyed"
    services.instance_fail(instance_id=instance.id, reason=reason)


# --- stop, start, destroy --------------------------------------------------------------------


def stop_machine(instance_id) -> None:
    instance = _load(instance_id)
    if instance is None or instance.status != S.STOPPING:
        return
    provider_of(instance).stop(instance.machine_id)
    services.instance_record_waiting(instance_id=instance.id, reason="stop requested at the provider")


def start_machine(instance_id) -> None:
    instance = _load(instance_id)
    if instance is None or instance.status != S.WAKING:
        return
    provider_of(instance).start(instance.machine_id)
    services.instance_record_waiting(instance_id=instance.id, reason="start requested at the provider")


def destroy_machine(instance_id) -> None:
    instance = _load(instance_id)
    if instance is None or instance.status != S.DESTROYING:
        return
    provider = provider_of(instance)
    machine_id = instance.machine_id
    if not machine_id and instance.create_attempted_at:
        found = provider.find_by_label(instance.machine_label)
        machine_id = found.id if found else ""
    if machine_id:
        provider.destroy(machine_id)
    services.instance_record_destroyed(
        instance_id=instance.id,
        reason=f"machine {machine_id} destroyed" if machine_id else "no machine had been created",
    )


def give_up(instance_id, *, step: str, error: ProviderError, unless_moved_since=None) -> None:
    """A step kept failing with transient errors past its retries: show why instead of hanging.
    Unless the instance changed state since the step began (`unless_moved_since`): another task
    did the work meanwhile (a stop the beat sent again, say), and this step's error is moot."""
    instance = _load(instance_id)
    if instance is None or instance.status in (S.DESTROYED, S.FAILED):
        return
    if unless_moved_since is not None and instance.status_changed_at > unless_moved_since:
        log.info("instance %s: %s failed (%s) but the instance is %s now; nothing to fail", instance.pk, step,
                 error, instance.status)
        return
    services.instance_fail(
        instance_id=instance.id, reason=f"{step} failed after retries: {error}"
    )


# --- work lost with a worker ---------------------------------------------------------------------


@dataclass
class Requeued:
    destroys: int = 0
    watches: int = 0


def requeue_stalled() -> Requeued:
    """Periodic (beat): send again the tasks that died with their worker.

    A destroy lost with its worker would leave the machine owned by a destroying instance
    forever; the step is idempotent, so it is simply sent again. A single start, a stop or a
    start polls the provider with delayed tasks, which die with their worker: an instance waiting
    on its machine that nobody polled for the grace period gets its step again. For a stop or a
    start that is the provider call itself (the worker may have died before making it; asking a
    stopped machine to stop is harmless), which then hands over to a watch; for a boot, the watch
    (polling is idempotent; a second poller, if the first lives, is harmless). A provision is not
    re-sent: two could rent twice.
    """
    report = Requeued()
    since = timezone.now() - timedelta(seconds=settings.DUMONT_RECONCILE_GRACE)
    for instance_id in Instance.objects.filter(status=S.DESTROYING, status_changed_at__lt=since).values_list(
        "pk", flat=True
    ):
        send("instances.destroy_machine", instance_id)
        report.destroys += 1
    stalled = Q(watched_at__lt=since) | Q(watched_at__isnull=True, status_changed_at__lt=since)
    waiting = Instance.objects.filter(stalled, status__in=WATCHED, deadline_at__isnull=False).exclude(
        machine_id="")
    for instance_id, status in waiting.values_list("pk", "status"):
        send(STALLED_STEP[status], instance_id)
        report.watches += 1
    return report


STALLED_STEP = {S.BOOTING: "instances.watch", S.STOPPING: "instances.stop_machine",
                S.WAKING: "instances.start_machine"}
