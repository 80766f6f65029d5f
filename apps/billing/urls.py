from django.urls import path

from . import api

app_name = "billing_api"

urlpatterns = [
    path("metrics", api.UsageMetrics.as_view(), name="metrics"),
    path("metrics/savings/real", api.RealSavings.as_view(), name="savings-real"),
]
