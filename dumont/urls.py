"""The URL map: every app's URLs, included by module name (dumont imports no app)."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

api_v1 = [
    path("", include("apps.web.auth_urls")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("", include("apps.web.urls")),
    path("", include("apps.agents.urls")),
    path("", include("apps.snapshots.urls")),
    path("", include("apps.billing.urls")),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("apps.web.login_urls")),
    path("api/v1/", include(api_v1)),
    path("", include("apps.web.page_urls")),
    path("", include("apps.snapshots.page_urls")),
    path("", include("apps.billing.page_urls")),
]
