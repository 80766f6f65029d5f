"""The API's JWT endpoints, mounted under /api/v1/. No namespace: `auth-login` and
`auth-refresh` are the names in use."""

from django.urls import path
from rest_framework_simplejwt.views import TokenRefreshView

from .login import ThrottledTokenObtainPairView

urlpatterns = [
    path("auth/login", ThrottledTokenObtainPairView.as_view(), name="auth-login"),
    path("auth/refresh", TokenRefreshView.as_view(), name="auth-refresh"),
]
