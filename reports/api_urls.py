"""/api/v1/ routes of the reports, mounted beside ``tenants.api_urls`` in contactcenter/urls.py."""

from django.urls import path

from reports import apis

T = "tenants/<slug:tenant_slug>/reports"
READ = {"get": "retrieve"}

urlpatterns = [
    path(f"{T}/summary/", apis.ReportSummaryViewSet.as_view(READ), name="api-report-summary"),
    path(f"{T}/funnel/", apis.ReportFunnelViewSet.as_view(READ), name="api-report-funnel"),
    path(f"{T}/unmatched/", apis.ReportUnmatchedViewSet.as_view(READ), name="api-report-unmatched"),
]
