"""HTML pages for snapshots, mounted at the site root."""

from django.urls import path

from . import views

app_name = "snapshots"

urlpatterns = [
    path("snapshots", views.snapshot_list, name="list"),
    path("snapshots/<uuid:snapshot_id>/delete", views.snapshot_delete, name="delete"),
    path("instances/<uuid:instance_id>/snapshots", views.instance_snapshots, name="panel"),
    path("instances/<uuid:instance_id>/snapshot", views.snapshot_take, name="take"),
]
