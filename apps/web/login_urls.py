"""The login and logout pages, at the site root. No namespace: settings.LOGIN_URL and the
templates name them `login` and `logout`."""

from django.contrib.auth import views as auth_views
from django.urls import path

from .login import ThrottledLoginView

urlpatterns = [
    path("login/", ThrottledLoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
]
