"""The snapshot panel on the instance page, the snapshots page and their actions."""

from __future__ import annotations

from django.test import Client

from apps.agents.models import AgentCommand
from apps.instances.models import Instance, InstanceStatus
from apps.snapshots.models import Snapshot, SnapshotStatus
from tests.snapshots.helpers import post_heartbeat

HTMX = {"HTTP_HX_REQUEST": "true"}


def test_the_instance_page_offers_a_snapshot_and_shows_its_progress(browser, running, tasks):
    page = browser.get(f"/instances/{running.id}").content.decode()
    assert "Snapshots" in page and "Snapshot now" in page and "No snapshots yet" in page

    taken = browser.post(f"/instances/{running.id}/snapshot", **HTMX)
    assert taken.status_code == 200
    assert "waiting for the agent" in taken.content.decode() and "Snapshot now" not in taken.content.decode()

    command = AgentCommand.objects.get(instance=running, kind="snapshot")
    progress = {"phase": "snapshot", "bytes": 512, "total_bytes": 2048, "files": 1, "total_files": 4,
                "bytes_per_s": 1024, "eta_s": 1.5}
    post_heartbeat(running, updates=[{"id": str(command.id), "status": "running", "progress": progress}], seq=2)
    panel = browser.get(f"/instances/{running.id}/snapshots", **HTMX)
    assert panel.status_code == 200  # still polling while the snapshot is written
    text = panel.content.decode()
    assert 'value="512" max="2048"' in text and "25.0 %" in text and "1 of 4 files" in text


def test_a_refused_snapshot_says_why(browser, running, tasks):
    Instance.objects.filter(pk=running.pk).update(status=InstanceStatus.PAUSED)
    refused = browser.post(f"/instances/{running.id}/snapshot", **HTMX)
    assert refused.status_code == 409
    assert "No snapshot: a snapshot is taken by the agent of a running machine" in refused.content.decode()


def test_the_panel_stops_polling_when_nothing_is_under_way(browser, running):
    assert browser.get(f"/instances/{running.id}/snapshots", **HTMX).status_code == 286


def test_the_snapshots_page_lists_and_deletes(browser, running, tasks):
    done = Snapshot.objects.create(instance=running, actor="t", status=SnapshotStatus.FAILED, error="disk on fire")
    page = browser.get("/snapshots").content.decode()
    assert "box" in page and "disk on fire" in page
    deleted = browser.post(f"/snapshots/{done.id}/delete", {"return_to": "list"})
    assert deleted.status_code == 302 and deleted["Location"] == "/snapshots"
    assert not Snapshot.objects.filter(pk=done.pk).exists()


def test_other_peoples_snapshots_are_not_found_and_anonymous_users_log_in(running, other_user, tasks):
    snapshot = Snapshot.objects.create(instance=running, actor="t", status=SnapshotStatus.FAILED)
    other = Client()
    other.force_login(other_user)
    assert other.post(f"/snapshots/{snapshot.id}/delete").status_code == 404
    assert other.post(f"/instances/{running.id}/snapshot").status_code == 404
    assert other.get(f"/instances/{running.id}/snapshots").status_code == 404
    assert "box" not in other.get("/snapshots").content.decode()
    assert Client().get("/snapshots").status_code == 302
    assert Snapshot.objects.filter(pk=snapshot.pk).exists()
