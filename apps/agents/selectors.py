"""Reads about agents: what the instance page and the API show of an instance's agent."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from agent import wire
from apps.instances.models import Instance

from .models import Agent, AgentCommand, AgentSample, AgentStatus


def instance_recent_samples(*, instance: Instance, limit: int = 60) -> list[AgentSample]:
    """The newest samples of the instance's agent, oldest first (for sparklines)."""
    newest = AgentSample.objects.filter(instance=instance).order_by("-at")[:limit]
    return list(reversed(newest))


def instance_recent_commands(*, instance: Instance, limit: int = 20):
    return AgentCommand.objects.filter(instance=instance).order_by("-created_at")[:limit]


@dataclass(frozen=True)
class AgentPanel:
    """What the instance page shows about its agent: health, the newest sample, recent history."""

    agent: Agent | None
    heartbeat_age_s: int | None
    latest: wire.Sample | None
    samples: list[AgentSample]
    commands: list[AgentCommand]

    @property
    def status(self) -> AgentStatus:
        return AgentStatus(self.agent.status) if self.agent else AgentStatus.NOT_INSTALLED

    @property
    def heartbeat_is_late(self) -> bool:
        """Late already, even before the periodic check has marked the agent silent."""
        return self.status == AgentStatus.SILENT or (
            self.heartbeat_age_s is not None and self.heartbeat_age_s > settings.DUMONT_AGENT_SILENT_AFTER
        )

    @property
    def window_s(self) -> int:
        """How much time the recent samples cover."""
        if len(self.samples) < 2:
            return 0
        return int((self.samples[-1].at - self.samples[0].at).total_seconds())


def instance_agent_panel(*, instance: Instance) -> AgentPanel:
    agent = Agent.objects.filter(instance=instance).first()
    commands = list(instance_recent_commands(instance=instance))
    if agent is None:
        return AgentPanel(agent=None, heartbeat_age_s=None, latest=None, samples=[], commands=commands)
    heartbeat_age_s = None
    if agent.last_heartbeat_at:
        heartbeat_age_s = max(0, int((timezone.now() - agent.last_heartbeat_at).total_seconds()))
    return AgentPanel(
        agent=agent,
        heartbeat_age_s=heartbeat_age_s,
        latest=wire.Sample.from_dict(agent.latest) if agent.latest else None,
        samples=instance_recent_samples(instance=instance),
        commands=commands,
    )
