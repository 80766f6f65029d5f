"""A snapshot the agent reported done whose storage check never ran gets the check again
(snapshots.requeue_stalled, on the beat): a hibernation waits on it to stop the machine."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.instances.models import Instance
from apps.snapshots.models import Snapshot
from apps.snapshots.services import snapshots_requeue_unverified

pytestmark = pytest.mark.django_db


def test_only_done_unchecked_snapshots_past_the_grace_period(user, settings, tasks):
    settings.DUMONT_RECONCILE_GRACE = 10
    instance = Instance.objects.create(user=user, label="s", image="img", status="hibernating")
    long_ago, just_now = timezone.now() - timedelta(seconds=30), timezone.now() - timedelta(seconds=2)

    def snapshot(**fields) -> Snapshot:
        return Snapshot.objects.create(instance=instance, actor="system:hibernation", trigger="hibernate", **fields)

    lost = snapshot(status="succeeded", finished_at=long_ago)
    snapshot(status="succeeded", finished_at=just_now)  # its check is on its way
    snapshot(status="succeeded", finished_at=long_ago, verified_at=long_ago)
    snapshot(status="succeeded", finished_at=long_ago, verify_error="3 of 9 blobs not in storage")
    snapshot(status="failed", finished_at=long_ago, error="disk full")
    snapshot(status="pending")

    assert snapshots_requeue_unverified() == 1
    assert [(name, args) for name, args, _ in tasks.sent] == [("snapshots.verify", (str(lost.pk),))]
