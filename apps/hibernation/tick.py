"""The hibernation beat (every DUMONT_HIBERNATION_TICK seconds): move each instance that is due.

- running, auto-hibernate on, agent healthy, idle by its policy → hibernate (snapshot first);
- hibernating → back to running when activity returns, a snapshot fails, files keep being
  written, or a wake came in; once the snapshot is verified, a second (incremental) one must
  find nothing new; then on to stopping;
- paused by hibernation past its release time → give the machine back (orchestration);
- paused with a wake asked during the stop → wake;
- waking on a paused machine past DUMONT_WAKE_START_TIMEOUT → fall back to a race.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.agents.models import AgentSample, AgentStatus
from apps.instances.models import Instance, InstanceStatus
from apps.snapshots.models import Snapshot, SnapshotStatus, SnapshotTrigger
from dumont.dispatch import send

from . import services
from .idle import evaluate, last_activity_in
from .policy import policy_for

log = logging.getLogger(__name__)
S = InstanceStatus


@dataclass
class TickReport:
    hibernating: list = field(default_factory=list)
    aborted: list = field(default_factory=list)
    stopping: list = field(default_factory=list)
    releasing: list = field(default_factory=list)
    waking: list = field(default_factory=list)
    falling_back: list = field(default_factory=list)


def tick(now: datetime | None = None) -> TickReport:
    now = now or timezone.now()
    report = TickReport()
    for instance in Instance.objects.filter(status=S.RUNNING, auto_hibernate=True,
                                            agent__status=AgentStatus.HEALTHY).select_related("agent"):
        _guarded(_consider_idle, instance, now, report)
    for instance in Instance.objects.filter(status=S.HIBERNATING):
        _guarded(_follow_hibernation, instance, now, report)
    for instance in Instance.objects.filter(status=S.PAUSED, release_at__lte=now):
        if services.release_claim(instance_id=instance.pk):
            send("hibernation.release_machine", instance.pk)
            report.releasing.append(instance.pk)
    for instance in Instance.objects.filter(status=S.PAUSED, wake_requested_at__isnull=False):
        services.instance_wake(instance=instance, actor="system:hibernation")
        report.waking.append(instance.pk)
    for instance_id in Instance.objects.filter(status=S.WAKING, wake_fallback_at__lte=now).values_list("pk", flat=True):
        send("hibernation.wake_fallback", instance_id)
        report.falling_back.append(instance_id)
    return report


def _guarded(step, instance: Instance, now: datetime, report: TickReport) -> None:
    """One instance's trouble (a bad policy row, say) must not stop the tick for the others."""
    try:
        step(instance, now, report)
    except Exception:
        log.exception("instance %s: hibernation tick step %s failed", instance.pk, step.__name__)


def _samples_since(instance: Instance, since: datetime) -> list:
    return list(AgentSample.objects.filter(instance=instance, at__gte=since).order_by("at"))


def _consider_idle(instance: Instance, now: datetime, report: TickReport) -> None:
    policy = policy_for(instance)
    interval = settings.DUMONT_AGENT_INTERVAL
    since = now - timedelta(seconds=policy.window_s + 2 * interval)
    verdict = evaluate(_samples_since(instance, since), policy, now=now, agent_healthy=True, interval_s=interval)
    if verdict.idle and services.hibernate_begin(instance_id=instance.pk, verdict=verdict):
        log.info("instance %s: idle (%s); hibernating", instance.pk, verdict.reason)
        report.hibernating.append(instance.pk)


def _follow_hibernation(instance: Instance, now: datetime, report: TickReport) -> None:
    started = instance.status_changed_at
    # The snapshot itself keeps CPUs busy: only GPU use and the interactive signals count here.
    policy = policy_for(instance)
    policy = replace(policy, signals=tuple(signal for signal in policy.signals if signal != "cpu"))
    activity = last_activity_in(_samples_since(instance, started), policy)
    snapshots = list(Snapshot.objects.filter(instance=instance, trigger=SnapshotTrigger.HIBERNATE,
                                             created_at__gte=started).order_by("created_at"))
    snapshot = snapshots[-1] if snapshots else None
    reason = _abort_reason(instance, snapshot, activity, started)
    if not reason and len(snapshots) > 1 and snapshot.status == SnapshotStatus.SUCCEEDED and snapshot.new_bytes:
        reason = (f"files were written during the snapshot ({snapshot.new_bytes} new bytes in the second one); "
                  "the workspace is in use, hibernation called off")
    if reason:
        with transaction.atomic():
            if activity is not None and activity > started:
                Instance.objects.filter(pk=instance.pk).update(last_activity_at=activity)
            if services.hibernate_abort(instance_id=instance.pk, reason=reason):
                report.aborted.append(instance.pk)
        return
    if snapshot.status == SnapshotStatus.SUCCEEDED and snapshot.verified_at:
        if len(snapshots) == 1:
            # A second, incremental snapshot: quick, and it must find nothing new. Files written
            # while the first one ran are in it; writes that go on mean the workspace is in use.
            services.hibernate_confirm(instance_id=instance.pk)
        elif services.hibernate_stop(instance_id=instance.pk, snapshot=snapshot):
            report.stopping.append(instance.pk)


def _abort_reason(instance: Instance, snapshot, activity, started) -> str:
    if snapshot is None:
        return "no hibernation snapshot was asked for"
    if activity is not None and activity > started:
        return "in use again during the snapshot; hibernation called off"
    if snapshot.status == SnapshotStatus.FAILED:
        return f"snapshot failed, the machine keeps running: {snapshot.error}"
    if snapshot.status == SnapshotStatus.SUCCEEDED and snapshot.verify_error:
        return f"snapshot not found whole in storage, the machine keeps running: {snapshot.verify_error}"
    if instance.wake_requested_at and snapshot.status != SnapshotStatus.PENDING:
        return "woken during hibernation; the snapshot is kept"
    return ""
