"""Savings over a period, computed from the ledger: the scripted scenario priced by hand."""

from __future__ import annotations

from decimal import Decimal

import pytest

from apps.billing import services
from apps.billing.periods import Period
from apps.billing.selectors import real_savings, savings_by_day, usage_metrics
from tests.billing.scenario import GB, SCENARIO_END, T0, S, at, hibernate_and_wake, make_instance

pytestmark = pytest.mark.django_db


def test_the_scripted_scenario_saves_what_was_computed_by_hand(user):
    instance = hibernate_and_wake(user)

    report = real_savings(user=user, period=Period(T0, at(24)), now=SCENARIO_END)

    # Prices: GPU $0.40/h = $0.40/3600 per second. Stopped disk: 36 GB × $0.20/GB-month ÷ 720 h
    # = $0.01/h. Storage: 7 GB × $0.015/GB-month, a month being 2,592,000 s.
    #
    # Actual spend
    #   running      00:00:00–02:00:00   7200 s × 0.40/3600         = 0.800
    #   hibernating  02:00:00–02:06:00    360 s × 0.40/3600         = 0.040
    #   paused       02:06:00–02:36:00   1800 s × 0.01/3600         = 0.005
    #   hibernated   02:36:00–08:06:00  19800 s × 0                 = 0
    #   waking       08:06:00–08:07:12     72 s × 0.40/3600         = 0.008
    #   running      08:07:12–09:07:12   3600 s × 0.40/3600         = 0.400
    #   storage      02:06:00–09:07:12  25272 s × 7 × 0.015/2592000 = 0.00102375
    #   race loser   144 s × 0.35/3600                              = 0.014
    #   total        0.8 + 0.04 + 0.005 + 0.008 + 0.4 + 0.00102375 + 0.014 = 1.26802375
    # Always on: first running 00:00:00 to now 09:07:12 = 32832 s × 0.40/3600 = 3.648
    # Savings: 3.648 − 1.26802375 = 2.37997625
    assert report.counted_until == SCENARIO_END
    [row] = report.instances
    assert row.instance == instance
    assert row.gpu == Decimal("1.248")
    assert row.stopped_disk == Decimal("0.005")
    assert row.storage == Decimal("0.00102375")
    assert row.race_losses == Decimal("0.014")
    assert row.actual_spend == Decimal("1.26802375")
    assert row.always_on_cost == Decimal("3.648")
    assert row.savings == Decimal("2.37997625")
    assert (row.hours_running, row.hours_paused, row.hours_hibernated) == (3, Decimal("0.5"), Decimal("5.5"))
    assert row.hours_transitioning == Decimal("0.12")  # 6 min hibernating + 72 s waking = 432 s
    assert report.total.savings == Decimal("2.37997625")


def test_the_savings_endpoint_shows_the_scenario_in_cents(api, user):
    instance = hibernate_and_wake(user)

    response = api.get("/api/v1/metrics/savings/real",
                       {"start": "2025-03-03T00:00:00Z", "end": "2025-03-03T09:07:12Z"})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["total"]["always_on_cost"] == "3.65"
    assert body["total"]["actual_spend"] == "1.27"
    assert body["total"]["savings"] == "2.38"
    assert body["total"]["spend"] == {
        "gpu": "1.25", "stopped_disk": "0.01", "storage": "0.00", "race_losses": "0.01", "total": "1.27",
    }
    [row] = body["instances"]
    assert row["instance"] == str(instance.id) and row["label"] == "train" and row["status"] == "running"
    assert row["hours"] == {"running": 3.0, "paused": 0.5, "hibernated": 5.5, "transitioning": 0.12}
    assert row["savings"] == "2.38"
    assert body["counted_until"] == "2025-03-03T09:07:12Z" and body["currency"] == "USD"


def test_a_period_counts_only_the_part_of_each_interval_inside_it(user):
    hibernate_and_wake(user)

    report = real_savings(user=user, period=Period(at(1), at(3)), now=SCENARIO_END)

    # running 01:00–02:00 0.40 + hibernating 0.04 + paused 0.005 + hibernated 02:36–03:00 0
    # + storage 02:06–03:00: 3240 s × 7 × 0.015/2592000 = 0.00013125 → 0.44513125.
    # The race loser (08:06) is outside. Always on: 2 h × 0.40 = 0.80.
    assert report.total.actual_spend == Decimal("0.44513125")
    assert report.total.always_on_cost == Decimal("0.80")
    assert report.total.savings == Decimal("0.35486875")
    assert report.total.hours_hibernated == Decimal("0.4")


def test_a_period_reaching_into_the_future_stops_at_now(user):
    hibernate_and_wake(user)

    report = real_savings(user=user, period=Period(T0, at(48)), now=at(1))

    assert report.counted_until == at(1)
    assert report.total.actual_spend == Decimal("0.40")
    assert report.total.always_on_cost == Decimal("0.40")


def test_another_users_instances_are_never_counted(api, other_api, user, other_user):
    hibernate_and_wake(user)
    hibernate_and_wake(other_user, label="theirs")
    make_instance(other_user, label="idle")  # an instance with no ledger rows is left out too

    mine = api.get("/api/v1/metrics/savings/real", {"start": "2025-03-03", "end": "2025-03-03"}).json()
    theirs = other_api.get("/api/v1/metrics/savings/real", {"start": "2025-03-03", "end": "2025-03-03"}).json()

    assert [row["label"] for row in mine["instances"]] == ["train"]
    assert [row["label"] for row in theirs["instances"]] == ["theirs"]
    # The whole day 2025-03-03: the last running interval runs to midnight.
    assert mine["total"] == theirs["total"]


def test_an_instance_never_hibernated_saves_nothing_and_its_boot_counts_on_both_sides(user):
    instance = make_instance(user)
    services.record_state(instance=instance, status=S.REQUESTED, at=at(0))
    services.record_state(instance=instance, status=S.PROVISIONING, at=at(0, 0, 36))
    services.record_state(instance=instance, status=S.BOOTING, at=at(0, 1, 12))
    services.record_state(instance=instance, status=S.RUNNING, at=at(0, 4, 30))
    services.record_state(instance=instance, status=S.DESTROYING, at=at(1, 4, 30))
    services.record_state(instance=instance, status=S.DESTROYED, at=at(1, 5, 6))

    report = real_savings(user=user, period=Period(T0, at(24)), now=at(30))

    # Billed at the GPU price from provisioning (00:00:36) to destroyed (01:05:06), destroying
    # included: 3870 s × 0.40/3600 = 0.43. The boot costs the same either way, and so does the
    # rest: always-on equals it and nothing was saved.
    [row] = report.instances
    assert row.actual_spend == Decimal("0.43")
    assert row.always_on_cost == Decimal("0.43")
    assert row.savings == 0


def test_an_instance_destroyed_before_the_period_is_left_out(user):
    instance = make_instance(user)
    services.record_state(instance=instance, status=S.RUNNING, at=at(0))
    services.record_state(instance=instance, status=S.DESTROYED, at=at(1))

    assert real_savings(user=user, period=Period(at(2), at(3)), now=at(5)).instances == []


def test_storage_is_billed_until_its_next_row_whatever_the_state(user):
    instance = make_instance(user)
    services.record_state(instance=instance, status=S.RUNNING, at=at(0))
    services.record_storage(instance=instance, stored_bytes=48 * GB, at=at(0))
    services.record_storage(instance=instance, stored_bytes=0, at=at(1))

    report = real_savings(user=user, period=Period(T0, at(2)), now=at(2))

    # 48 GB × 0.015/GB-month ÷ 720 h = $0.001/h, for 1 h.
    assert report.total.storage == Decimal("0.001")


def test_the_days_add_up_to_the_period(user):
    start = at(20)  # 2025-03-03 20:00: the scenario crosses midnight
    hibernate_and_wake(user, start=start)
    period = Period(at(0), at(48))
    now = at(9, 7, 12, start=start)

    days = savings_by_day(user=user, period=period, now=now)
    total = real_savings(user=user, period=period, now=now).total

    assert [day.day for day in days] == [at(0), at(24)]
    assert days[0].always_on_cost == Decimal("1.60")  # 20:00–24:00 always on at 0.40
    assert sum(day.always_on_cost for day in days) == total.always_on_cost == Decimal("3.648")
    assert sum(day.actual_spend for day in days) == total.actual_spend == Decimal("1.26802375")


def test_usage_metrics_of_the_scenario(user):
    hibernate_and_wake(user)

    metrics = usage_metrics(user=user, period=Period(T0, at(24)), now=SCENARIO_END)

    assert metrics.total.hibernations == 1 and metrics.total.wakes == 1
    assert metrics.wake_p50_s == metrics.wake_p90_s == 72.0
    assert metrics.total.actual_spend == Decimal("1.26802375")


def test_a_wake_whose_race_won_before_the_restore_is_one_wake_timed_from_its_start(user):
    """Waking from hibernated enters `waking` twice: at the wake, and when the race's winner is
    the new machine (the restore still to come). That is one wake."""
    instance = make_instance(user)
    for status, when in ((S.RUNNING, (0,)), (S.HIBERNATING, (1,)), (S.PAUSED, (1, 1)), (S.HIBERNATED, (1, 31)),
                         (S.WAKING, (3,)), (S.WAKING, (3, 0, 40)), (S.RUNNING, (3, 1, 30))):
        services.record_state(instance=instance, status=status, at=at(*when))

    metrics = usage_metrics(user=user, period=Period(T0, at(24)), now=at(4))

    assert metrics.total.wakes == 1
    assert metrics.wake_p50_s == 90.0  # from the wake at 3:00:00 to running at 3:01:30
