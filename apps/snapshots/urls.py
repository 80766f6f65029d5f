from django.urls import path

from . import api

app_name = "snapshots_api"

urlpatterns = [
    path("snapshots", api.SnapshotList.as_view(), name="list"),
    path("snapshots/<str:snapshot_id>", api.SnapshotDetail.as_view(), name="detail"),
    path("instances/<str:instance_id>/snapshot", api.InstanceSnapshot.as_view(), name="instance-snapshot"),
]
