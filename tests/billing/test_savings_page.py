"""The savings page: totals, the chart with its table fallback, each instance."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.test import Client

from apps.billing.chart import nice_ceiling
from tests.billing.scenario import hibernate_and_wake

pytestmark = pytest.mark.django_db
SCENARIO_PERIOD = {"start": "2025-03-03T00:00:00Z", "end": "2025-03-03T09:07:12Z"}


def test_the_page_shows_totals_chart_and_instances(browser, user, other_user):
    instance = hibernate_and_wake(user)
    hibernate_and_wake(other_user, label="not-mine")

    response = browser.get("/savings", SCENARIO_PERIOD)

    assert response.status_code == 200
    page = response.content.decode()
    assert '<svg viewBox="0 0 720 240" role="img" aria-labelledby="savings-chart-title savings-chart-desc">' in page
    assert '<title id="savings-chart-title">' in page and '<desc id="savings-chart-desc">' in page
    assert len(re.findall(r'<polyline class="chart-line', page)) == 2
    assert "$3.65" in page and "$1.27" in page and "$2.38" in page  # always on, actual, saved
    assert f'href="/instances/{instance.id}"' in page and "not-mine" not in page
    assert "<summary>Day by day (cumulative)</summary>" in page and "2025-03-03" in page
    assert "css/billing.css" in page


def test_the_page_without_parameters_shows_the_last_30_days(browser, user):
    response = browser.get("/savings")

    assert response.status_code == 200
    page = response.content.decode()
    assert "No instance ran in this period." in page
    assert page.count("<tr><td>") == 31  # 30 days back from now touch 31 calendar days


def test_a_bad_period_says_why_and_shows_the_default(browser, user):
    response = browser.get("/savings", {"start": "soon"})

    assert response.status_code == 400
    assert "start: &#x27;soon&#x27; is not an ISO 8601 date or datetime" in response.content.decode()
    assert "<svg" in response.content.decode()


def test_the_page_needs_a_login():
    response = Client().get("/savings")

    assert response.status_code == 302 and response["Location"].startswith("/login/")


@pytest.mark.parametrize(("largest", "top"), [
    ("0", "1"), ("3.648", "5"), ("2", "2"), ("2.1", "2.5"), ("10", "10"), ("11", "20"), ("0.003", "0.005"),
])
def test_the_chart_scale_tops_out_at_a_round_figure(largest, top):
    assert nice_ceiling(Decimal(largest)) == Decimal(top)
