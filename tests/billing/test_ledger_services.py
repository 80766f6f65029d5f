"""What the ledger services write: the prices in force and how each state is billed."""

from __future__ import annotations

from decimal import Decimal

import pytest

from apps.billing import services
from apps.billing.models import BilledAs, LedgerEntry, LedgerKind
from tests.billing.scenario import GB, S, at, make_instance

pytestmark = pytest.mark.django_db


def _billed(instance, status, when=0):
    return services.record_state(instance=instance, status=status, at=at(when)).billed_as


def test_a_state_row_keeps_the_prices_in_force(user):
    instance = make_instance(user, price="0.40", disk_gb=36)

    entry = services.record_state(instance=instance, status=S.RUNNING, at=at(1))
    instance.price_per_hour = Decimal("0.55")  # a later price does not rewrite the row
    instance.save()

    entry.refresh_from_db()
    assert (entry.kind, entry.status, entry.at, entry.billed_as) == (LedgerKind.STATE, "running", at(1), BilledAs.GPU)
    assert entry.gpu_price_per_hour == Decimal("0.40")
    assert entry.disk_price_per_hour == Decimal("0.01")  # 36 GB × $0.20/GB-month ÷ 720 h
    assert entry.recorded_at is not None


@pytest.mark.parametrize(("status", "billed_as"), [
    (S.REQUESTED, BilledAs.NOTHING),
    (S.PROVISIONING, BilledAs.GPU),
    (S.BOOTING, BilledAs.GPU),
    (S.RUNNING, BilledAs.GPU),
    (S.STOPPING, BilledAs.GPU),
    (S.HIBERNATING, BilledAs.GPU),
    (S.PAUSED, BilledAs.DISK),
    (S.HIBERNATED, BilledAs.NOTHING),
    (S.WAKING, BilledAs.GPU),
    (S.DESTROYED, BilledAs.NOTHING),
    (S.FAILED, BilledAs.NOTHING),
])
def test_each_state_is_billed_by_its_rule(user, status, billed_as):
    assert _billed(make_instance(user), status) == billed_as


def test_destroying_costs_what_the_state_before_cost(user):
    running, paused, hibernated = (make_instance(user, label=name) for name in ("a", "b", "c"))
    _billed(running, S.RUNNING)
    _billed(paused, S.PAUSED)
    _billed(hibernated, S.HIBERNATED)

    assert _billed(running, S.DESTROYING, 1) == BilledAs.GPU
    assert _billed(paused, S.DESTROYING, 1) == BilledAs.DISK
    assert _billed(hibernated, S.DESTROYING, 1) == BilledAs.NOTHING
    assert _billed(make_instance(user, label="d"), S.DESTROYING) == BilledAs.NOTHING


def test_without_a_price_yet_a_machine_state_costs_nothing_and_says_so(user):
    instance = make_instance(user, price=None)

    entry = services.record_state(instance=instance, status=S.BOOTING, at=at(0))

    assert entry.billed_as == BilledAs.NOTHING and entry.gpu_price_per_hour is None
    assert "no GPU price" in entry.note


def test_an_unknown_state_is_refused(user):
    with pytest.raises(ValueError):
        services.record_state(instance=make_instance(user), status="asleep")
    assert not LedgerEntry.objects.exists()


def test_a_race_loss_is_priced_once(user):
    entry = services.record_race_loss(instance=make_instance(user), seconds=95, price_per_hour=Decimal("0.35"))

    assert entry.kind == LedgerKind.RACE_LOSS and entry.seconds == Decimal("95.000")
    assert entry.amount == Decimal("0.0092361111")  # 95 × 0.35 / 3600 = 0.00923611…, kept to 10 places


def test_storage_rows_keep_the_storage_price_in_force(user, settings):
    settings.DUMONT_STORAGE_PRICE_PER_GB_MONTH = Decimal("0.01")

    entry = services.record_storage(instance=make_instance(user), stored_bytes=7 * GB)

    assert entry.kind == LedgerKind.STORAGE and entry.stored_bytes == 7 * GB
    assert entry.storage_price_per_gb_month == Decimal("0.01")
    with pytest.raises(ValueError):
        services.record_storage(instance=entry.instance, stored_bytes=-1)
