"""REST API for usage and savings: read-only reports over the usage ledger."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from dumont.api import ErrorSerializer

from . import selectors
from .periods import DEFAULT_DAYS, MAX_DAYS, period_from_params
from .serializers import SavingsReportSerializer, UsageMetricsSerializer

# A date, or a date and a time (with an offset or Z), or nothing (the default); OpenAPI cannot say
# that end comes after start.
ISO_MOMENT = r"^(\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?)?)?$"

PERIOD_PARAMETERS = [
    OpenApiParameter(
        "start", OpenApiTypes.STR, required=False, pattern=ISO_MOMENT,
        description="ISO 8601 date or datetime, UTC unless it carries an offset (encode `+` as %2B). "
        f"Default: {DEFAULT_DAYS} days before the end.",
    ),
    OpenApiParameter(
        "end", OpenApiTypes.STR, required=False, pattern=ISO_MOMENT,
        description="ISO 8601 date or datetime, excluded; a date includes that whole day. Default: now. "
        f"At most {MAX_DAYS} days after start.",
    ),
]
ERRORS = {400: ErrorSerializer, 401: ErrorSerializer}


class UsageMetrics(APIView):
    @extend_schema(
        operation_id="metrics_retrieve",
        tags=["metrics"],
        parameters=PERIOD_PARAMETERS,
        responses={200: UsageMetricsSerializer, **ERRORS},
        description="The user's usage over the period: hours per state, hibernations, wakes and how "
        "long they took, and spend (GPU, stopped disk, snapshot storage, race losers).",
    )
    def get(self, request):
        period = period_from_params(request.query_params)
        metrics = selectors.usage_metrics(user=request.user, period=period)
        return Response(UsageMetricsSerializer(metrics).data)


class RealSavings(APIView):
    @extend_schema(
        operation_id="metrics_savings_real_retrieve",
        tags=["metrics"],
        parameters=PERIOD_PARAMETERS,
        responses={200: SavingsReportSerializer, **ERRORS},
        description="What hibernation saved over the period, per instance and in total: the cost of "
        "leaving each machine on from its first start, minus what was actually spent.",
    )
    def get(self, request):
        period = period_from_params(request.query_params)
        report = selectors.real_savings(user=request.user, period=period)
        return Response(SavingsReportSerializer(report).data)
