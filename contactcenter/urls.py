"""URL routes. Tenant pages live under /t/<tenant_slug>/, the API under /api/v1/."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from contactcenter import health

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("healthz/live", health.live, name="healthz-live"),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/v1/", include("tenants.api_urls")),
    path("api/v1/", include("reports.api_urls")),
    path("telephony/", include("telephony.urls")),
    path("", include("agents.urls")),
    path("", include("reports.urls")),
    path("", include("agents.chat_urls")),
    path("", include("telephony.page_urls")),
    path("", include("tenants.urls")),
]

handler404 = "contactcenter.errors.not_found"
handler403 = "contactcenter.errors.forbidden"
handler500 = "contactcenter.errors.server_error"
