"""HTTP door to the tenant scope.

The tenant comes from the URL (``tenant_slug``) and the user's access, computed afresh on every
request (so revoked coverage or a removed membership takes effect on the next request). No
"current tenant" is remembered in the session. Another tenant's URL answers 404, exactly like a
missing one.
"""

from __future__ import annotations

from django.http import Http404
from django.urls import Resolver404, resolve
from django.utils.functional import SimpleLazyObject

from contactcenter.logging import bound
from tenants.models import Tenant
from tenants.scoping import tenant_scope, unscoped
from tenants.selectors import admin_tenant_ids, tenant_access_for_user

API_PREFIX = "/api/"
ADMIN_PREFIX = "/admin/"


class TenantScopeMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.tenant = None
        request.tenant_access = None
        path = request.path_info
        if path.startswith(API_PREFIX):
            # The API authenticates inside the view (API keys), so its base viewset is the door.
            with tenant_scope([]):
                return self.get_response(request)

        user = request.user
        access = tenant_access_for_user(user)
        request.tenant_access_map = access

        if path.startswith(ADMIN_PREFIX):
            if user.is_authenticated and user.is_superuser:
                with unscoped("platform superuser in the admin"):
                    return self.get_response(request)
            request.admin_tenant_ids = admin_tenant_ids(access)
            with tenant_scope(request.admin_tenant_ids):
                return self.get_response(request)

        try:
            match = resolve(path)
        except Resolver404:
            match = None
        slug = match.kwargs.get("tenant_slug") if match else None
        if slug is None:
            with tenant_scope(access.keys()):
                return self.get_response(request)

        chosen = next((a for a in access.values() if a.slug == slug), None)
        if chosen is None:
            if not user.is_authenticated:
                return self.get_response(request)  # the view's login_required redirects to sign-in
            raise Http404("No such business, or you are not a member of it.")
        request.tenant_access = chosen
        request.tenant = SimpleLazyObject(lambda: Tenant.objects.get(pk=chosen.tenant_id))
        with tenant_scope([chosen.tenant_id]), bound(tenant_id=chosen.tenant_id):
            return self.get_response(request)
