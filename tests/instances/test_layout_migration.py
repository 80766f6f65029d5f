"""A database made by the migrations before the layered layout (every model in apps.instances)
migrates forward with every row kept: agents, races and wakes moved apps, their tables did not."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from apps.agents.models import Agent, AgentCommand, AgentSample
from apps.billing.models import LedgerEntry
from apps.hibernation.models import Wake
from apps.instances.models import IdempotencyRecord, Instance, InstanceEvent
from apps.races.models import Race, RaceCandidate, StrayMachine
from apps.snapshots.models import Snapshot, Workspace

# The last migrations before the split, and the new apps not there yet.
BEFORE = [("instances", "0004_hibernation"), ("snapshots", "0001_initial"), ("billing", "0001_initial"),
          ("hibernation", None), ("races", None), ("agents", None)]


def _migrate(targets) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return MigrationExecutor(connection)  # a fresh loader sees what is applied now


def _fill_old_layout(apps) -> dict:
    """One row in every table the split touched, written through the old models."""
    now = timezone.now()
    user = apps.get_model("auth", "User").objects.create(username="old-layout")
    Instance = apps.get_model("instances", "Instance")
    instance = Instance.objects.create(user=user, label="kept", image="img", status="hibernated",
                                       price_per_hour=Decimal("0.4"), machine_id="m-1", provider_label="dumont-x-c1")
    event = apps.get_model("instances", "InstanceEvent").objects.create(
        instance=instance, actor="system", from_status="paused", to_status="hibernated")
    record = apps.get_model("instances", "IdempotencyRecord").objects.create(
        user=user, scope="instances.create", key="k", fingerprint="f", response_status=202, response_body={})
    agent = apps.get_model("instances", "Agent").objects.create(instance=instance, token_hash="a" * 64,
                                                                status="healthy", samples_received=1)
    sample = apps.get_model("instances", "AgentSample").objects.create(instance=instance, slot=0, at=now,
                                                                       gpu_util_max=3.0, data={"at": 1})
    command = apps.get_model("instances", "AgentCommand").objects.create(instance=instance, kind="restore",
                                                                         actor="system")
    race = apps.get_model("instances", "Race").objects.create(
        instance=instance, purpose="wake", status="won", batch_size=5, max_rounds=3, round_timeout_s=90,
        deadline_at=now + timedelta(minutes=5))
    candidate = apps.get_model("instances", "RaceCandidate").objects.create(
        race=race, round=1, slot=0, offer_id="o-1", price_per_hour=Decimal("0.4"), label="dumont-x-c1")
    race.winner = candidate
    race.save()
    stray = apps.get_model("instances", "StrayMachine").objects.create(provider="vast", machine_id="m-9",
                                                                       label="dumont-y", reason="no owner")
    workspace = apps.get_model("snapshots", "Workspace").objects.create(instance=instance, prefix="w/",
                                                                        sealed_key=b"k" * 60)
    snapshot = apps.get_model("snapshots", "Snapshot").objects.create(instance=instance, command=command,
                                                                      status="succeeded", actor="system",
                                                                      engine_id="e1")
    wake = apps.get_model("instances", "Wake").objects.create(instance=instance, source="hibernated",
                                                              actor="user:old", race=race, snapshot=snapshot,
                                                              restore_command=command)
    ledger = apps.get_model("billing", "LedgerEntry").objects.create(instance=instance, kind="state", at=now,
                                                                     status="hibernated", billed_as="nothing")
    content_type = apps.get_model("contenttypes", "ContentType").objects.get_or_create(
        app_label="instances", model="agent")[0]
    return {
        "instance": instance.pk, "event": event.pk, "record": record.pk, "agent": agent.pk,
        "sample": sample.pk, "command": command.pk, "race": race.pk, "candidate": candidate.pk,
        "stray": stray.pk, "workspace": workspace.pk, "snapshot": snapshot.pk, "wake": wake.pk,
        "ledger": ledger.pk, "content_type": content_type.pk,
    }


@pytest.mark.django_db(transaction=True)
def test_a_database_of_the_old_layout_keeps_every_row_and_link_when_migrated_forward():
    executor = _migrate(BEFORE)
    try:
        assert ("agents", "0001_initial") not in executor.loader.applied_migrations
        ids = _fill_old_layout(executor.loader.project_state(list(executor.loader.applied_migrations)).apps)
    finally:
        executor = _migrate(executor.loader.graph.leaf_nodes())
    assert ("instances", "0005_models_moved_to_their_apps") in executor.loader.applied_migrations

    instance = Instance.objects.get(pk=ids["instance"])
    assert instance.label == "kept" and instance.status == "hibernated"
    assert InstanceEvent.objects.get(pk=ids["event"]).instance == instance
    assert IdempotencyRecord.objects.filter(pk=ids["record"]).exists()
    assert instance.agent.pk == ids["agent"] and instance.agent.token_hash == "a" * 64
    assert AgentSample.objects.get(pk=ids["sample"]).instance == instance
    command = AgentCommand.objects.get(pk=ids["command"])
    race = Race.objects.get(pk=ids["race"])
    assert race.instance == instance and race.winner == RaceCandidate.objects.get(pk=ids["candidate"])
    assert StrayMachine.objects.get(pk=ids["stray"]).machine_id == "m-9"
    assert Workspace.objects.get(pk=ids["workspace"]).instance == instance
    snapshot = Snapshot.objects.get(pk=ids["snapshot"])
    assert snapshot.command == command
    wake = Wake.objects.get(pk=ids["wake"])
    assert (wake.race, wake.snapshot, wake.restore_command) == (race, snapshot, command)
    assert LedgerEntry.objects.get(pk=ids["ledger"]).instance == instance
    assert Agent.objects.count() == 1 and AgentCommand.objects.count() == 1
    moved = ContentType.objects.get(pk=ids["content_type"])  # admin history and permissions follow
    assert (moved.app_label, moved.model) == ("agents", "agent")
