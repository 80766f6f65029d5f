"""Writes about an instance's agent: tokens, heartbeats, commands, install progress.

A heartbeat costs a bounded number of queries whatever it carries: one to authenticate, one
to update the agent row, one upsert for all its samples, one for pending commands (and one
per command update, which are rare).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import asdict
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from agent import wire
from dumont.errors import InvalidInput, NotFound

from .models import (
    COMMAND_FINAL,
    COMMAND_ORDER,
    Agent,
    AgentCommand,
    AgentSample,
    AgentStatus,
    CommandStatus,
    Instance,
    InstanceStatus,
)

C = CommandStatus


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def agent_token_issue(*, instance: Instance) -> str:
    """A fresh token for the instance's agent; any previous one stops working."""
    token = secrets.token_urlsafe(32)
    Agent.objects.update_or_create(instance=instance, defaults={"token_hash": token_digest(token)})
    return token


def agent_token_revoke(*, instance_id) -> None:
    Agent.objects.filter(instance_id=instance_id).update(token_hash=None)


def agent_authenticate(token: str) -> Agent | None:
    """The agent a token speaks for, unless its instance is destroyed."""
    if not token:
        return None
    return (
        Agent.objects.select_related("instance")
        .exclude(instance__status=InstanceStatus.DESTROYED)
        .filter(token_hash=token_digest(token))
        .first()
    )


# --- heartbeats ---------------------------------------------------------------------------------


def agent_heartbeat_record(*, agent: Agent, heartbeat: wire.Heartbeat) -> wire.HeartbeatReply:
    if heartbeat.instance_id != str(agent.instance_id):
        raise NotFound("no such instance", code="not_found")  # a token speaks for its own instance
    now = timezone.now()
    _store_samples(agent, heartbeat.samples)
    Agent.objects.filter(pk=agent.pk).update(
        status=AgentStatus.HEALTHY,
        error="",
        version=heartbeat.agent_version[:30],
        last_heartbeat_at=now,
        first_heartbeat_at=Coalesce(F("first_heartbeat_at"), now),
        last_seq=heartbeat.seq,
        samples_received=F("samples_received") + len(heartbeat.samples),
        **({"latest": _as_json(heartbeat.samples[-1])} if heartbeat.samples else {}),
    )
    for update in heartbeat.updates:
        _apply_command_update(agent.instance_id, update, now)
    return wire.HeartbeatReply(
        commands=_deliver_pending_commands(agent.instance_id, now),
        interval_s=settings.DUMONT_AGENT_INTERVAL,
    )


def _as_json(sample: wire.Sample) -> dict:
    return asdict(sample)


def _store_samples(agent: Agent, samples: list[wire.Sample]) -> None:
    ring = settings.DUMONT_AGENT_SAMPLES_KEPT
    samples = samples[-ring:]  # a replay longer than the ring keeps its newest part
    first_slot = agent.samples_received
    rows = [
        AgentSample(
            instance_id=agent.instance_id,
            slot=(first_slot + offset) % ring,
            at=datetime.fromtimestamp(sample.at, tz=dt_timezone.utc),
            gpu_util_max=None if sample.gpu_error else sample.max_gpu_utilization,
            gpu_error=sample.gpu_error or "",
            ssh_sessions=sample.activity.ssh_sessions,
            last_input_age_s=sample.activity.last_input_age_s,
            jupyter_busy_kernels=sample.activity.jupyter_busy_kernels,
            cpu_percent=sample.activity.cpu_percent,
            data=_as_json(sample),
        )
        for offset, sample in enumerate(samples)
    ]
    if rows:
        AgentSample.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["instance", "slot"],
            update_fields=["at", "gpu_util_max", "gpu_error", "ssh_sessions", "last_input_age_s",
                           "jupyter_busy_kernels", "cpu_percent", "data"],
        )


def _apply_command_update(instance_id, update: wire.CommandUpdate, now) -> None:
    """Move a command forward; an update that would move it back (late, repeated) is ignored."""
    rank = COMMAND_ORDER[update.status]
    earlier = [status for status, r in COMMAND_ORDER.items() if r < rank or (r == rank and status == C.RUNNING)]
    fields: dict = {"status": update.status}
    if update.progress is not None:
        fields["progress"] = update.progress
    if update.status == C.ACKNOWLEDGED:
        fields["acknowledged_at"] = now
    if update.status in COMMAND_FINAL:
        fields.update(finished_at=now, result=update.result, error=update.error or "")
        fields["acknowledged_at"] = Coalesce(F("acknowledged_at"), now)
    AgentCommand.objects.filter(pk=_uuid_or_none(update.id), instance_id=instance_id,
                                status__in=earlier).update(**fields)


def _uuid_or_none(text: str):
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def _deliver_pending_commands(instance_id, now) -> list[wire.Command]:
    pending = list(
        AgentCommand.objects.filter(instance_id=instance_id, status__in=[C.PENDING, C.DELIVERED])
        .values_list("id", "kind", "args")
    )
    if pending:
        AgentCommand.objects.filter(pk__in=[row[0] for row in pending]).update(
            status=C.DELIVERED, attempts=F("attempts") + 1, delivered_at=now
        )
    return [wire.Command(id=str(pk), kind=kind, args=args) for pk, kind, args in pending]


# --- commands -----------------------------------------------------------------------------------


def agent_command_create(*, instance: Instance, kind: str, args: dict | None = None, actor: str) -> AgentCommand:
    if kind not in wire.COMMAND_KINDS:
        raise InvalidInput(f"unknown command {kind!r}; one of: {', '.join(wire.COMMAND_KINDS)}",
                           code="bad_command")
    return AgentCommand.objects.create(instance=instance, kind=kind, args=args or {}, actor=actor)


# --- install and health -------------------------------------------------------------------------


def agent_install_begin(*, instance_id) -> str:
    """Mark the install started and hand out a fresh token for it (given to the machine over SSH)."""
    with transaction.atomic():
        instance = Instance.objects.select_for_update().get(pk=instance_id)
        token = agent_token_issue(instance=instance)
        Agent.objects.filter(pk=instance.pk).update(
            status=AgentStatus.INSTALLING, error="", install_started_at=timezone.now(),
            installed_at=None,
        )
    return token


def agent_install_started(*, instance_id) -> None:
    """The agent process is started: it must now say hello within the first-heartbeat window."""
    from . import tasks

    Agent.objects.filter(pk=instance_id, status=AgentStatus.INSTALLING).update(
        status=AgentStatus.WAITING, installed_at=timezone.now()
    )
    transaction.on_commit(lambda: tasks.agent_expect_heartbeat.apply_async(
        (str(instance_id),), countdown=settings.DUMONT_AGENT_FIRST_HEARTBEAT_TIMEOUT))


def agent_install_failed(*, instance_id, reason: str) -> None:
    Agent.objects.filter(pk=instance_id).update(status=AgentStatus.FAILED, error=reason)


def agent_expect_heartbeat(*, instance_id, log_tail: str = "") -> bool:
    """Fail an agent still waiting for its first heartbeat; True when it was failed."""
    reason = f"no heartbeat within {settings.DUMONT_AGENT_FIRST_HEARTBEAT_TIMEOUT:g} s of starting"
    if log_tail:
        reason += f"; agent log ends with:\n{log_tail}"
    return bool(
        Agent.objects.filter(pk=instance_id, status=AgentStatus.WAITING).update(
            status=AgentStatus.FAILED, error=reason
        )
    )


def agents_mark_silent() -> int:
    """Healthy agents that stopped reporting become silent: unhealthy, never 'idle'."""
    cutoff = timezone.now() - timedelta(seconds=settings.DUMONT_AGENT_SILENT_AFTER)
    return Agent.objects.filter(status=AgentStatus.HEALTHY, last_heartbeat_at__lt=cutoff).update(
        status=AgentStatus.SILENT, error=f"no heartbeat for more than {settings.DUMONT_AGENT_SILENT_AFTER:g} s"
    )
