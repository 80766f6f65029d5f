"""The API's JWT endpoints, mounted under /api/v1/. No namespace: `auth-login` and
`auth-refresh` are the names in use."""

from django.urls import path
from .login import ThrottledTokenObtainPairView, TokenRefresh

urlpatterns = [
    path("auth/login", ThrottledTokenObtainPairView.as_view(), name="auth-login"),
    path("auth/refresh", TokenRefresh.as_view(), name="auth-refresh"),
]
