"""HTML pages, mounted at the site root."""

from django.urls import path

from . import views

app_name = "billing"

urlpatterns = [
    path("savings", views.savings, name="savings"),
]
