"""Writes about an instance's agent: tokens, commands, install progress and health.

Heartbeats have their own module (heartbeats.py): they are the hottest path of the control plane.
The agent is installed when an instance's machine becomes ready, and loses its token when the
machine stops or goes (receivers.py, on the instance layer's signals).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from agent import wire
from apps.instances.models import Instance, InstanceStatus
from dumont.dispatch import enqueue
from dumont.errors import InvalidInput

from .models import Agent, AgentCommand, AgentSample, AgentStatus
from .models import CommandStatus as C


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def agent_token_issue(*, instance: Instance) -> str:
    """A fresh token for the instance's agent; any previous one stops working."""
    token = secrets.token_hex(32)  # hex: never starts with "-", so it is safe on a command line too
    Agent.objects.update_or_create(instance=instance, defaults={"token_hash": token_digest(token)})
    return token


def agent_token_revoke(*, instance_id) -> None:
    Agent.objects.filter(instance_id=instance_id).update(token_hash=None)


def agent_machine_stopped(*, instance_id) -> None:
    """The machine stopped (or was given back), and its agent with it: its token goes, and the
    panel no longer says healthy. The agent is installed again (a new token) when a machine runs
    again."""
    Agent.objects.filter(instance_id=instance_id).update(token_hash=None, status=AgentStatus.NOT_INSTALLED,
                                                         error="")


# --- commands -----------------------------------------------------------------------------------


def agent_command_create(*, instance: Instance, kind: str, args: dict | None = None, actor: str) -> AgentCommand:
    if kind not in wire.COMMAND_KINDS:
        raise InvalidInput(f"unknown command {kind!r}; one of: {', '.join(wire.COMMAND_KINDS)}",
                           code="bad_command")
    return AgentCommand.objects.create(instance=instance, kind=kind, args=args or {}, actor=actor)


# --- install and health -------------------------------------------------------------------------


def agent_install_begin(*, instance_id) -> str:
    """Mark the install started and hand out a fresh token for it (given to the machine over SSH).
    Commands the agent it replaces had taken but not finished go back to pending: the new agent
    runs them (else a restore cut short by the reinstall would stay `running` forever)."""
    with transaction.atomic():
        instance = Instance.objects.select_for_update().get(pk=instance_id)
        token = agent_token_issue(instance=instance)
        Agent.objects.filter(pk=instance.pk).update(
            status=AgentStatus.INSTALLING, error="", install_started_at=timezone.now(),
            installed_at=None,
        )
        AgentCommand.objects.filter(instance=instance, status__in=[C.ACKNOWLEDGED, C.RUNNING]).update(
            status=C.PENDING)
    return token


def agent_install_queue(*, instance: Instance) -> None:
    """Install the agent on the instance's machine once this transaction commits (it is
    reinstalled on every arrival of a machine: a stop kills its process)."""
    if settings.DUMONT_AGENT_ENABLED:
        enqueue("agents.install", instance.id)


def agent_install_started(*, instance_id) -> None:
    """The agent process is started: it must now say hello within the first-heartbeat window."""
    Agent.objects.filter(pk=instance_id, status=AgentStatus.INSTALLING).update(
        status=AgentStatus.WAITING, installed_at=timezone.now()
    )
    enqueue("agents.expect_heartbeat", instance_id, countdown=settings.DUMONT_AGENT_FIRST_HEARTBEAT_TIMEOUT)


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


def agent_samples_purge() -> int:
    """Samples are a bounded ring per instance; a destroyed instance's ring goes after a day."""
    limit = timezone.now() - timedelta(seconds=settings.DUMONT_SAMPLES_KEEP_AFTER_DESTROY)
    deleted, _ = AgentSample.objects.filter(instance__status=InstanceStatus.DESTROYED,
                                            instance__status_changed_at__lt=limit).delete()
    return deleted
