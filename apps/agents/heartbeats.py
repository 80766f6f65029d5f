"""Heartbeats: authenticate the agent's token, store its samples, deliver its pending commands.

A heartbeat costs one statement whatever it carries (HEARTBEAT_SQL). Command updates, which are
rare, add one read and one update each, and send `signals.command_updated`.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone as dt_timezone

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from agent import wire
from dumont.errors import NotFound, Unauthenticated

from .hooks import delivery_args
from .models import COMMAND_FINAL, COMMAND_ORDER, Agent, AgentCommand, AgentSample, AgentStatus, CommandStatus
from .services import token_digest
from .signals import command_updated

C = CommandStatus


@dataclass(frozen=True)
class AgentIdentity:
    """Who a valid token speaks for; all a heartbeat needs, read in one indexed query."""

    instance_id: uuid.UUID
    samples_received: int


AUTHENTICATE_SQL = """
SELECT a.instance_id, a.samples_received
FROM instances_agent a JOIN instances_instance i ON i.id = a.instance_id
WHERE a.token_hash = %s AND i.status <> 'destroyed'
"""


def _authenticate_digest(digest: str) -> AgentIdentity | None:
    """The agent a token digest speaks for, unless its instance is destroyed (one indexed lookup)."""
    with connection.cursor() as cursor:
        cursor.execute(AUTHENTICATE_SQL, [digest])
        row = cursor.fetchone()
    # SQLite hands UUIDs back as bare hex: normalise so comparisons with the wire's text hold.
    return AgentIdentity(uuid.UUID(str(row[0])), row[1]) if row else None


# One round trip authenticates and stores a heartbeat: the agent row, every sample (upserted
# into the ring) and the delivery of pending commands, in one autocommitted statement.
# Heartbeats are the hottest path of the control plane; the ORM would spend more time building
# these statements, and the extra round trips more, than PostgreSQL spends running them.
# The statement turns synchronous_commit off for itself: heartbeats are telemetry, after a
# database crash the agent sends the next one within seconds and an unacknowledged command is
# simply delivered again, so the commit need not wait for the WAL flush (the disk's fsync rate
# would otherwise cap ingestion).
HEARTBEAT_SQL = """
WITH relaxed AS (
    SELECT set_config('synchronous_commit', 'off', true)
), touched AS (
    UPDATE instances_agent AS a
    SET status = 'healthy', error = '', version = %(version)s, last_heartbeat_at = %(now)s,
        first_heartbeat_at = COALESCE(a.first_heartbeat_at, %(now)s), last_seq = %(seq)s,
        samples_received = a.samples_received + %(count)s,
        latest = COALESCE(%(latest)s::jsonb, a.latest)
    FROM instances_instance AS i
    WHERE a.token_hash = %(token_hash)s AND a.instance_id = %(instance)s
        AND i.id = a.instance_id AND i.status <> 'destroyed'
    RETURNING a.instance_id, a.samples_received - %(count)s AS first_slot
), stored AS (
    INSERT INTO instances_agentsample
        (instance_id, slot, at, gpu_util_max, gpu_error, ssh_sessions, last_input_age_s,
         jupyter_busy_kernels, cpu_percent, data)
    SELECT t.instance_id, (t.first_slot + s.n) %% %(ring)s, to_timestamp(s.at), s.gpu, s.err, s.ssh,
        s.age, s.jup, s.cpu, s.data
    FROM touched AS t, jsonb_to_recordset(%(samples)s::jsonb)
        AS s(n int, at float8, gpu float8, err text, ssh int, age float8, jup int, cpu float8, data jsonb)
    ON CONFLICT (instance_id, slot) DO UPDATE SET
        at = EXCLUDED.at, gpu_util_max = EXCLUDED.gpu_util_max, gpu_error = EXCLUDED.gpu_error,
        ssh_sessions = EXCLUDED.ssh_sessions, last_input_age_s = EXCLUDED.last_input_age_s,
        jupyter_busy_kernels = EXCLUDED.jupyter_busy_kernels, cpu_percent = EXCLUDED.cpu_percent,
        data = EXCLUDED.data
), delivered AS (
    UPDATE instances_agentcommand AS c
    SET status = 'delivered', attempts = c.attempts + 1, delivered_at = %(now)s
    FROM touched AS t
    WHERE c.instance_id = t.instance_id AND c.status IN ('pending', 'delivered')
    RETURNING c.id, c.kind, c.args, c.created_at
)
SELECT d.id, d.kind, d.args
FROM touched CROSS JOIN relaxed LEFT JOIN delivered AS d ON true
ORDER BY d.created_at
"""


def agent_heartbeat_record(*, token: str, heartbeat: wire.Heartbeat, sent: dict) -> wire.HeartbeatReply:
    """Store a heartbeat from the agent holding `token`; reply with its pending commands.

    `heartbeat` is `sent` (the decoded body) validated; samples are stored as sent.

    Raises Unauthenticated for an unknown or revoked token, and NotFound when the token belongs
    to another instance than the heartbeat names (a token speaks only for its own instance).
    """
    digest = token_digest(token)
    if heartbeat.updates:  # rare: command progress goes first, so a finished command is not re-sent
        identity = _identity_for(digest, heartbeat)
        now = timezone.now()
        for update in heartbeat.updates:
            _apply_command_update(identity.instance_id, update, now)
    if connection.vendor == "postgresql":
        rows = _record_in_one_statement(digest, heartbeat, sent)
    else:
        rows = _record_portably(digest, heartbeat, sent)
    if not rows:
        _identity_for(digest, heartbeat)  # raises the right error
        raise Unauthenticated("unknown or revoked agent token")  # revoked in between
    return wire.HeartbeatReply(
        commands=[wire.Command(id=str(pk), kind=kind, args=delivery_args(heartbeat.instance_id, kind, _json(args)))
                  for pk, kind, args in rows if pk],
        interval_s=settings.DUMONT_AGENT_INTERVAL,
    )


def _record_in_one_statement(digest: str, heartbeat: wire.Heartbeat, sent: dict) -> list[tuple]:
    """[(command id or None, kind, args), ...]: one row at least when the token was valid."""
    with connection.cursor() as cursor:
        cursor.execute(HEARTBEAT_SQL, _heartbeat_params(digest, heartbeat, _sample_rows(heartbeat, sent)))
        return cursor.fetchall()


def _record_portably(digest: str, heartbeat: wire.Heartbeat, sent: dict) -> list[tuple]:
    """The same through the ORM, for the SQLite database `make run` uses by default."""
    identity = _authenticate_digest(digest)
    if identity is None or heartbeat.instance_id != str(identity.instance_id):
        return []
    samples = _sample_rows(heartbeat, sent)
    ring, now = settings.DUMONT_AGENT_SAMPLES_KEPT, timezone.now()
    with transaction.atomic():
        AgentSample.objects.bulk_create(
            [_sample_row(identity, row, ring) for row in samples],
            update_conflicts=True,
            unique_fields=["instance", "slot"],
            update_fields=["at", "gpu_util_max", "gpu_error", "ssh_sessions", "last_input_age_s",
                           "jupyter_busy_kernels", "cpu_percent", "data"],
        )
        Agent.objects.filter(pk=identity.instance_id).update(
            status=AgentStatus.HEALTHY, error="", version=heartbeat.agent_version[:30], last_heartbeat_at=now,
            first_heartbeat_at=Coalesce(F("first_heartbeat_at"), now), last_seq=heartbeat.seq,
            samples_received=F("samples_received") + len(samples),
            **({"latest": samples[-1]["data"]} if samples else {}),
        )
        pending = list(AgentCommand.objects.filter(instance_id=identity.instance_id,
                                                   status__in=[C.PENDING, C.DELIVERED]).values_list("id", "kind", "args"))
        AgentCommand.objects.filter(pk__in=[pk for pk, _, _ in pending]).update(
            status=C.DELIVERED, attempts=F("attempts") + 1, delivered_at=now)
    return pending or [(None, None, None)]


def _sample_row(identity: AgentIdentity, row: dict, ring: int) -> AgentSample:
    return AgentSample(
        instance_id=identity.instance_id, slot=(identity.samples_received + row["n"]) % ring,
        at=datetime.fromtimestamp(row["at"], tz=dt_timezone.utc), gpu_util_max=row["gpu"], gpu_error=row["err"],
        ssh_sessions=row["ssh"], last_input_age_s=row["age"], jupyter_busy_kernels=row["jup"],
        cpu_percent=row["cpu"], data=row["data"],
    )


def _identity_for(digest: str, heartbeat: wire.Heartbeat) -> AgentIdentity:
    identity = _authenticate_digest(digest)
    if identity is None:
        raise Unauthenticated("unknown or revoked agent token")
    if heartbeat.instance_id != str(identity.instance_id):
        raise NotFound("no such instance")
    return identity


def _sample_rows(heartbeat: wire.Heartbeat, sent: dict) -> list[dict]:
    """One row per sample, newest `ring` only (a longer replay keeps its newest part); the
    sample itself is stored as sent."""
    ring = settings.DUMONT_AGENT_SAMPLES_KEPT
    as_sent = (sent.get("samples") or [])[-ring:]
    return [
        {
            "n": offset,
            "at": sample.at,
            "gpu": None if sample.gpu_error else sample.max_gpu_utilization,
            "err": sample.gpu_error or "",
            "ssh": sample.activity.ssh_sessions,
            "age": sample.activity.last_input_age_s,
            "jup": sample.activity.jupyter_busy_kernels,
            "cpu": sample.activity.cpu_percent,
            "data": raw,
        }
        for offset, (sample, raw) in enumerate(zip(heartbeat.samples[-ring:], as_sent, strict=True))
    ]


def _heartbeat_params(digest: str, heartbeat: wire.Heartbeat, rows: list[dict]) -> dict:
    return {
        "token_hash": digest,
        "instance": _uuid_or_none(heartbeat.instance_id),
        "version": heartbeat.agent_version[:30],
        "now": timezone.now(),
        "seq": heartbeat.seq,
        "count": len(rows),
        "ring": settings.DUMONT_AGENT_SAMPLES_KEPT,
        "latest": json.dumps(rows[-1]["data"]) if rows else None,
        "samples": json.dumps(rows),
    }


def _json(value):
    return json.loads(value) if isinstance(value, str) else value


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
    command_id = _uuid_or_none(update.id)
    moved = AgentCommand.objects.filter(pk=command_id, instance_id=instance_id, status__in=earlier).update(**fields)
    if moved and command_id and (update.status in COMMAND_FINAL or update.status == C.ACKNOWLEDGED):
        command_updated.send(AgentCommand, command=AgentCommand.objects.get(pk=command_id))


def _uuid_or_none(text: str):
    try:
        return uuid.UUID(text)
    except ValueError:
        return None

