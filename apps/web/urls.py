"""The instance API, mounted under /api/v1/ (dumont/urls.py)."""

from django.urls import path

from . import api

app_name = "instances_api"

urlpatterns = [
    path("instances", api.InstanceListCreate.as_view(), name="list"),
    path("instances/<str:instance_id>", api.InstanceDetail.as_view(), name="detail"),
    path("instances/<str:instance_id>/pause", api.instance_pause, name="pause"),
    path("instances/<str:instance_id>/resume", api.instance_resume, name="resume"),
    path("instances/<str:instance_id>/wake", api.InstanceWake.as_view(), name="wake"),
]
