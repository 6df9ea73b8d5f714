"""Report pages under /t/<tenant_slug>/reports/ and /agency/<agency_slug>/reports/.

Mounted with ``path("", include("reports.urls"))`` in contactcenter/urls.py. No route carries an
object id: the one-click review actions post the flow, intent and questions in the form body (each
checked against the tenant), so the isolation matrix needs no ``isolation_model`` here.
"""

from django.urls import path

from reports import views

T = "t/<slug:tenant_slug>/reports"

urlpatterns = [
    path(f"{T}/", views.dashboard, name="reports-dashboard"),
    path(f"{T}/refresh/", views.refresh_today, name="reports-refresh"),
    path(f"{T}/funnel/", views.funnel, name="reports-funnel"),
    path(f"{T}/unmatched/", views.unmatched, name="reports-unmatched"),
    path(f"{T}/unmatched/add-examples/", views.unmatched_add_examples, name="reports-unmatched-add-examples"),
    path(f"{T}/unmatched/new-faq/", views.unmatched_new_faq, name="reports-unmatched-new-faq"),
    path(f"{T}/unmatched/dismiss/", views.unmatched_dismiss, name="reports-unmatched-dismiss"),
    path(f"{T}/export/conversations.csv", views.export_conversations, name="reports-export-conversations"),
    *(path(f"{T}/export/{name}.csv", view, name=f"reports-export-{name}") for name, view in views.EXPORT_VIEWS.items()),
    path("agency/<slug:agency_slug>/reports/", views.agency_reports, name="agency-reports"),
    path("agency/<slug:agency_slug>/reports/export.csv", views.agency_export, name="agency-reports-export"),
]
