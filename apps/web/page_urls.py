"""The instance pages, mounted at the site root (the API lives in urls.py under /api/v1/)."""

from django.urls import path

from . import views

app_name = "instances"

urlpatterns = [
    path("", views.instance_list, name="list"),
    path("instances/new", views.instance_create, name="create"),
    path("instances/<uuid:instance_id>", views.instance_detail, name="detail"),
    path("instances/<uuid:instance_id>/row", views.instance_row, name="row"),
    path("instances/<uuid:instance_id>/agent", views.instance_agent, name="agent"),
    path("instances/<uuid:instance_id>/race", views.instance_race, name="race"),
    path("instances/<uuid:instance_id>/pause", views.instance_pause, name="pause"),
    path("instances/<uuid:instance_id>/resume", views.instance_resume, name="resume"),
    path("instances/<uuid:instance_id>/destroy", views.instance_destroy, name="destroy"),
    path("instances/<uuid:instance_id>/wake", views.instance_wake, name="wake"),
    path("instances/<uuid:instance_id>/idle-policy", views.instance_idle_policy, name="idle-policy"),
]
