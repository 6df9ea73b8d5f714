"""/api/v1/ routes. Explicit paths, each named ``api-<thing>-list`` / ``api-<thing>-detail``.

Each tenant route carries ``tenant_slug``; detail routes also ``pk`` (an int). The model behind the
object kwarg is the view class's ``isolation_model`` attribute.
"""

from django.urls import path

from tenants import apis

LIST = {"get": "list"}
LIST_CREATE = {"get": "list", "post": "create"}
READ_UPDATE_DELETE = {"get": "retrieve", "patch": "partial_update", "delete": "destroy"}
READ_DELETE = {"get": "retrieve", "delete": "destroy"}

T = "tenants/<slug:tenant_slug>"

urlpatterns = [
    path("me/", apis.MeView.as_view(), name="api-me"),
    path("tenants/", apis.TenantListViewSet.as_view(LIST), name="api-tenant-list"),
    path(
        f"{T}/",
        apis.TenantDetailViewSet.as_view({"get": "retrieve", "patch": "partial_update"}),
        name="api-tenant-detail",
    ),
    path(f"{T}/memberships/", apis.MembershipViewSet.as_view(LIST), name="api-membership-list"),
    path(
        f"{T}/memberships/<int:pk>/", apis.MembershipViewSet.as_view(READ_UPDATE_DELETE), name="api-membership-detail"
    ),
    path(f"{T}/invitations/", apis.InvitationViewSet.as_view(LIST_CREATE), name="api-invitation-list"),
    path(f"{T}/invitations/<int:pk>/", apis.InvitationViewSet.as_view(READ_DELETE), name="api-invitation-detail"),
    path(f"{T}/api-keys/", apis.ApiKeyViewSet.as_view(LIST_CREATE), name="api-api-key-list"),
    path(f"{T}/api-keys/<int:pk>/", apis.ApiKeyViewSet.as_view(READ_DELETE), name="api-api-key-detail"),
    path(f"{T}/coverage/", apis.CoverageViewSet.as_view(LIST_CREATE), name="api-coverage-list"),
    path(f"{T}/coverage/<int:pk>/", apis.CoverageViewSet.as_view(READ_DELETE), name="api-coverage-detail"),
    path(f"{T}/audit-events/", apis.AuditEventViewSet.as_view(LIST), name="api-audit-event-list"),
]
