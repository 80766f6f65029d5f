"""The savings page: the period's totals, a chart over its days, and each instance's figures."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from dumont.errors import InvalidInput

from . import selectors
from .chart import savings_chart
from .periods import as_date, period_from_params


@login_required
@require_GET
def savings(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    error = None
    try:
        period = period_from_params(request.GET, now=now)
    except InvalidInput as exc:
        error = exc.detail
        period = period_from_params({}, now=now)
    report = selectors.real_savings(user=request.user, period=period, now=now)
    days = selectors.savings_by_day(user=request.user, period=period, now=now)
    total = report.total
    context = {
        "error": error,
        "period": period,
        # The form shows dates; an end date includes its day, so the last day shown is the one before.
        "start_date": as_date(period.start),
        "end_date": as_date(period.end - timedelta(microseconds=1)),
        "report": report,
        "total": total,
        "saved_share": (total.savings / total.always_on_cost * 100) if total.always_on_cost > 0 else None,
        "chart": savings_chart(days),
    }
    return render(request, "billing/savings.html", context, status=400 if error else 200)
