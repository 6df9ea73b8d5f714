"""The tenant-scoped Django admin: business owners and admins configure their own tenant here.

Who gets in: platform superusers (everything, unscoped) and people who are owner, admin or
supervisor of a business through a membership (supervisors read only). Agents and agency staff
do not get in. The middleware has already put the request in the scope of the user's admin
tenants, so scoped querysets, foreign-key choices and lookups only ever see those tenants.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError
from django.http import Http404

from tenants.models import Role, Tenant
from tenants.selectors import admin_tenant_ids, tenant_access_for_user


def _access(request):
    access = getattr(request, "tenant_access_map", None)
    if access is None:
        access = request.tenant_access_map = tenant_access_for_user(request.user)
    return access


def viewable_tenant_ids(request) -> list[int]:
    return admin_tenant_ids(_access(request))


def writable_tenant_ids(request) -> list[int]:
    return [a.tenant_id for a in _access(request).values() if a.via == "member" and a.allows(Role.ADMIN)]


class AdminLoginForm(AdminAuthenticationForm):
    def confirm_login_allowed(self, user):
        if not user.is_active:
            raise ValidationError("This account is inactive.", code="inactive")
        if user.is_superuser or admin_tenant_ids(tenant_access_for_user(user)):
            return
        raise ValidationError(
            "This account has no access to business settings. Agents work in the console; "
            "ask an owner of your business for admin access.",
            code="no_admin_access",
        )


class SwitchboardAdminSite(admin.AdminSite):
    site_header = "Switchboard"
    site_title = "Switchboard settings"
    index_title = "Business settings"
    login_form = AdminLoginForm

    def has_permission(self, request) -> bool:
        user = request.user
        if not (user.is_active and user.is_authenticated):
            return False
        return bool(user.is_superuser or viewable_tenant_ids(request))


class TenantModelAdmin(admin.ModelAdmin):
    """Base for every admin of a tenant-owned model.

    View: supervisors and above of the object's tenant. Add, change, delete: owners and admins.
    The queryset is scoped by the middleware; ``tenant_field`` names the path to the tenant for
    unscoped (access-table) models, which are filtered explicitly.
    """

    tenant_field = "tenant"
    scoped_manager = True

    # --- permissions -------------------------------------------------------------------------
    def _tenant_of(self, obj) -> int | None:
        return obj.pk if self.tenant_field == "pk" else getattr(obj, f"{self.tenant_field}_id")

    def has_module_permission(self, request) -> bool:
        return request.user.is_superuser or bool(viewable_tenant_ids(request))

    def has_view_permission(self, request, obj=None) -> bool:
        if request.user.is_superuser:
            return True
        ids = viewable_tenant_ids(request)
        return bool(ids) if obj is None else self._tenant_of(obj) in ids

    def has_add_permission(self, request) -> bool:
        return request.user.is_superuser or bool(writable_tenant_ids(request))

    def has_change_permission(self, request, obj=None) -> bool:
        if request.user.is_superuser:
            return True
        ids = writable_tenant_ids(request)
        return bool(ids) if obj is None else self._tenant_of(obj) in ids

    def has_delete_permission(self, request, obj=None) -> bool:
        return self.has_change_permission(request, obj)

    # --- what is listed ----------------------------------------------------------------------
    def get_queryset(self, request):
        qs = super().get_queryset(request)
        if request.user.is_superuser:
            return qs
        return qs.filter(**{f"{self.tenant_field}__in": viewable_tenant_ids(request)})

    def get_list_filter(self, request):
        filters = list(super().get_list_filter(request))
        if request.user.is_superuser or len(viewable_tenant_ids(request)) > 1:
            filters.insert(0, self.tenant_field)
        return filters

    def get_list_display(self, request):
        display = list(super().get_list_display(request))
        if (request.user.is_superuser or len(viewable_tenant_ids(request)) > 1) and self.tenant_field not in display:
            display.append(self.tenant_field)
        return display

    def get_object(self, request, object_id, from_field=None):
        # Another tenant's object is indistinguishable from a missing one: 404 both, before any
        # permission check can answer differently.
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            raise Http404(f"No {self.opts.verbose_name} with that id.")
        return obj

    # --- the tenant field ----------------------------------------------------------------------
    def get_exclude(self, request, obj=None):
        exclude = list(super().get_exclude(request, obj) or [])
        if self.tenant_field == "tenant" and not request.user.is_superuser and len(writable_tenant_ids(request)) == 1:
            exclude.append("tenant")
        return exclude

    def get_form(self, request, obj=None, change=False, **kwargs):
        form_class = super().get_form(request, obj, change, **kwargs)
        writable = writable_tenant_ids(request)
        if self.tenant_field != "tenant" or request.user.is_superuser or len(writable) != 1:
            return form_class
        only_tenant = writable[0]

        class TenantPinnedForm(form_class):
            def __init__(self, *args, **kw):
                super().__init__(*args, **kw)
                if not self.instance.tenant_id:
                    self.instance.tenant_id = only_tenant

        return TenantPinnedForm

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "tenant" and db_field.related_model is Tenant and not request.user.is_superuser:
            kwargs["queryset"] = Tenant.objects.filter(id__in=writable_tenant_ids(request))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        if not request.user.is_superuser and self._tenant_of(obj) not in writable_tenant_ids(request):
            raise Http404("No such business.")
        super().save_model(request, obj, form, change)


class ReadOnlyTenantAdmin(TenantModelAdmin):
    """Listed for reference; managed from the business pages (with their checks and emails)."""

    def has_add_permission(self, request) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser
