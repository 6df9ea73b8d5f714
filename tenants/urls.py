"""Business pages. Tenant pages live under /t/<tenant_slug>/ (resolved by TenantScopeMiddleware and
guarded by @tenant_view); agency pages under /agency/<agency_slug>/ (guarded by @agency_view).

Views with kwargs other than tenant_slug carry ``isolation_model`` / ``isolation_kwargs``."""

from django.urls import path

from tenants import views

urlpatterns = [
    path("", views.landing, name="landing"),
    path("app/", views.app_home, name="app-home"),
    # A business's pages.
    path("t/<slug:tenant_slug>/", views.tenant_home, name="tenant-home"),
    path("t/<slug:tenant_slug>/team/", views.team, name="tenant-team"),
    path("t/<slug:tenant_slug>/team/members/<int:pk>/role/", views.member_role, name="tenant-member-role"),
    path("t/<slug:tenant_slug>/team/members/<int:pk>/remove/", views.member_remove, name="tenant-member-remove"),
    path(
        "t/<slug:tenant_slug>/team/invitations/<int:pk>/revoke/",
        views.tenant_invitation_revoke,
        name="tenant-invitation-revoke",
    ),
    path("t/<slug:tenant_slug>/coverage/", views.coverage, name="tenant-coverage"),
    path("t/<slug:tenant_slug>/coverage/<int:pk>/revoke/", views.coverage_revoke_view, name="tenant-coverage-revoke"),
    path("t/<slug:tenant_slug>/api-keys/", views.api_keys, name="tenant-api-keys"),
    path("t/<slug:tenant_slug>/api-keys/<int:pk>/revoke/", views.api_key_revoke_view, name="tenant-api-key-revoke"),
    path("t/<slug:tenant_slug>/audit/", views.audit_log, name="tenant-audit"),
    # Invitations (to a business or an agency); the token is the link's secret.
    path("invitations/<str:token>/", views.invitation_detail, name="invitation"),
    # Answering services.
    path("agencies/new/", views.agency_new, name="agency-create"),
    path("agency/<slug:agency_slug>/", views.agency_home, name="agency-home"),
    path(
        "agency/<slug:agency_slug>/invitations/<int:pk>/revoke/",
        views.agency_invitation_revoke,
        name="agency-invitation-revoke",
    ),
]
