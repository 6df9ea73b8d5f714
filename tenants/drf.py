"""API door to the tenant scope: the base viewset every tenant-owned endpoint derives from.

The tenant comes from the URL (``tenant_slug``) and the authenticated principal (session user or
API key). No access answers 404, exactly like a missing tenant; a role that may read but not write
answers 403. Subclasses may not override get_queryset / get_object / initial: they set ``model``
and, if needed, ``filter_for_tenant`` or the ``dangerously_*`` hooks, so no endpoint can forget
the tenant filter.
"""

from __future__ import annotations

from django.http import Http404
from rest_framework import exceptions, permissions, viewsets

from contactcenter.logging import bind
from tenants.auth import ApiKeyPrincipal
from tenants.models import Role, Tenant
from tenants.scoping import activate_tenant_scope, tenant_scope
from tenants.selectors import TenantAccess, tenant_access_for_api_key, tenant_access_for_user

SAFE = permissions.SAFE_METHODS
_FORBIDDEN_OVERRIDES = ("get_queryset", "get_object", "initial", "dispatch")


def access_map_for(request) -> dict[int, TenantAccess]:
    user = request.user
    if isinstance(user, ApiKeyPrincipal):
        return tenant_access_for_api_key(user.api_key)
    return tenant_access_for_user(user)


class ScopedAPIMixin:
    """Enters the scope of every tenant the principal can act for (for cross-tenant lists)."""

    def dispatch(self, request, *args, **kwargs):
        with tenant_scope([]):
            return super().dispatch(request, *args, **kwargs)

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        self.access_map = access_map_for(request)
        activate_tenant_scope(self.access_map.keys())


class TenantScopedViewSet(ScopedAPIMixin, viewsets.GenericViewSet):
    """Base for /api/v1/tenants/<tenant_slug>/... endpoints."""

    model = None
    read_role: str = Role.AGENT
    write_role: str = Role.ADMIN
    lookup_field = "pk"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in _FORBIDDEN_OVERRIDES:
            if name in cls.__dict__:
                raise TypeError(
                    f"{cls.__name__} must not override {name}(): the tenant filter lives there. "
                    "Set `model` and override filter_for_tenant() instead."
                )

    def initial(self, request, *args, **kwargs):
        # Authentication, then tenant resolution, then the role check, then throttles.
        self.format_kwarg = self.get_format_suffix(**kwargs)
        neg = self.perform_content_negotiation(request)
        request.accepted_renderer, request.accepted_media_type = neg
        version, scheme = self.determine_version(request, *args, **kwargs)
        request.version, request.versioning_scheme = version, scheme
        self.perform_authentication(request)
        self.check_permissions(request)
        self.access_map = access_map_for(request)
        slug = kwargs.get("tenant_slug")
        chosen = next((a for a in self.access_map.values() if a.slug == slug), None)
        if chosen is None:
            raise Http404
        activate_tenant_scope([chosen.tenant_id])
        bind(tenant_id=chosen.tenant_id)
        self.tenant_access = chosen
        request.tenant_access = chosen
        request.tenant = self.tenant = Tenant.objects.get(pk=chosen.tenant_id)
        needed = self.read_role if request.method in SAFE else self.write_role_for(request)
        if not chosen.allows(needed):
            raise exceptions.PermissionDenied(f"Your role ({chosen.role}) may not do this; it needs {needed} or above.")
        self.check_throttles(request)

    def write_role_for(self, request) -> str:
        return self.write_role

    def get_queryset(self):
        assert self.model is not None, f"{type(self).__name__} must set `model`"
        qs = self.model._default_manager.filter(tenant_id=self.tenant.id)
        return self.filter_for_tenant(qs)

    def filter_for_tenant(self, queryset):
        return queryset

    def get_object(self):
        queryset = self.filter_queryset(self.get_queryset())
        lookup = self.kwargs.get(self.lookup_url_kwarg or self.lookup_field)
        try:
            obj = queryset.get(**{self.lookup_field: lookup})
        except (queryset.model.DoesNotExist, ValueError, TypeError):
            raise Http404 from None
        self.check_object_permissions(self.request, obj)
        return obj
