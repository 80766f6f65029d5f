"""GET /api/v1/metrics and the period parameters both metrics endpoints share."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils.dateparse import parse_datetime

from apps.billing import services
from apps.billing.periods import Period
from apps.billing.selectors import percentile, usage_metrics
from tests.billing.scenario import T0, S, at, hibernate_and_wake, make_instance

pytestmark = pytest.mark.django_db
ENDPOINTS = ["/api/v1/metrics", "/api/v1/metrics/savings/real"]


def test_metrics_of_the_scenario(api, user):
    hibernate_and_wake(user)

    response = api.get("/api/v1/metrics", {"start": "2025-03-03T00:00:00Z", "end": "2025-03-03T09:07:12Z"})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["hours"] == {"running": 3.0, "paused": 0.5, "hibernated": 5.5, "transitioning": 0.12}
    assert body["hibernations"] == 1 and body["wakes"] == 1
    assert body["wake_seconds"] == {"count": 1, "p50": 72.0, "p90": 72.0}
    assert body["spend"]["total"] == "1.27" and body["spend"]["race_losses"] == "0.01"
    assert body["start"] == "2025-03-03T00:00:00Z" and body["end"] == "2025-03-03T09:07:12Z"


def test_wake_time_percentiles_interpolate_between_wakes(user):
    instance = make_instance(user)
    services.record_state(instance=instance, status=S.RUNNING, at=at(0))
    hour = 1
    for wake_s in (120, 30, 300, 90, 60):
        services.record_state(instance=instance, status=S.HIBERNATING, at=at(hour))
        services.record_state(instance=instance, status=S.HIBERNATED, at=at(hour, 10))
        services.record_state(instance=instance, status=S.WAKING, at=at(hour, 30))
        services.record_state(instance=instance, status=S.RUNNING, at=at(hour, 30, wake_s))
        hour += 1
    services.record_state(instance=instance, status=S.WAKING, at=at(hour))  # a wake that failed
    services.record_state(instance=instance, status=S.FAILED, at=at(hour, 5))

    metrics = usage_metrics(user=user, period=Period(T0, at(24)), now=at(24))

    # Sorted: 30, 60, 90, 120, 300. p50 at rank 2 = 90; p90 at rank 3.6 = 120 + 0.6 × 180 = 228.
    assert metrics.total.wakes == 6 and len(metrics.total.wake_seconds) == 5
    assert metrics.wake_p50_s == 90.0
    assert metrics.wake_p90_s == 228.0
    assert metrics.total.hibernations == 5


def test_percentile_of_nothing_is_none_and_of_one_value_is_that_value():
    assert percentile([], Decimal("0.5")) is None
    assert percentile([Decimal(7)], Decimal("0.9")) == 7.0


def test_a_paused_instance_is_not_a_hibernation(user):
    instance = make_instance(user)
    for hours, status in [(0, S.RUNNING), (1, S.STOPPING), (2, S.PAUSED), (3, S.WAKING), (4, S.RUNNING)]:
        services.record_state(instance=instance, status=status, at=at(hours))

    metrics = usage_metrics(user=user, period=Period(T0, at(5)), now=at(5))

    assert metrics.total.hibernations == 0 and metrics.total.wakes == 1
    assert metrics.total.hours_paused == 1


def test_without_parameters_the_period_is_the_last_30_days(api, user):
    body = api.get("/api/v1/metrics").json()

    start, end = parse_datetime(body["start"]), parse_datetime(body["end"])
    assert end - start == timedelta(days=30)
    assert body["spend"]["total"] == "0.00" and body["wake_seconds"] == {"count": 0, "p50": None, "p90": None}


def test_a_date_as_end_includes_that_day(api, user):
    body = api.get("/api/v1/metrics", {"start": "2025-03-01", "end": "2025-03-03"}).json()
    one_day = api.get("/api/v1/metrics", {"start": "2025-03-03", "end": "2025-03-03"}).json()

    assert body["start"] == "2025-03-01T00:00:00Z" and body["end"] == "2025-03-04T00:00:00Z"
    assert one_day["start"] == "2025-03-03T00:00:00Z" and one_day["end"] == "2025-03-04T00:00:00Z"


def test_an_offset_is_honoured_and_a_naive_datetime_is_utc(api, user):
    body = api.get("/api/v1/metrics", {"start": "2025-03-03T02:00:00+02:00", "end": "2025-03-03T12:00:00"}).json()

    assert body["start"] == "2025-03-03T00:00:00Z" and body["end"] == "2025-03-03T12:00:00Z"


@pytest.mark.parametrize("url", ENDPOINTS)
def test_anonymous_is_refused(anon_api, url):
    response = anon_api.get(url)

    assert response.status_code == 401
    assert response.json()["error"] == "not_authenticated"


@pytest.mark.parametrize("url", ENDPOINTS)
@pytest.mark.parametrize(("params", "names"), [
    ({"start": "yesterday"}, "start: 'yesterday' is not an ISO 8601 date or datetime"),
    ({"end": "2025-02-30"}, "end: '2025-02-30' is not an ISO 8601 date or datetime"),
    ({"start": "2025-03-03T10:00:00Z", "end": "2025-03-03T09:00:00Z"}, "end must be after start"),
    ({"start": "2025-03-03", "end": "2025-03-02"}, "end must be after start"),
    ({"start": "2024-01-01", "end": "2025-03-03"}, "at most 366 days"),
])
def test_bad_periods_are_a_400_naming_the_parameter(api, url, params, names):
    response = api.get(url, params)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_period"
    assert names in response.json()["detail"]
