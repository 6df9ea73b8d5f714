"""Admin for tenancy tables. Business settings are editable; access tables are listed read-only
(they are managed from the business pages, which send emails and enforce the owner rules)."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from tenants.admin_site import ReadOnlyTenantAdmin, TenantModelAdmin
from tenants.models import (
    Agency,
    AgencyMembership,
    ApiKey,
    AuditEvent,
    Coverage,
    Invitation,
    Membership,
    Tenant,
    User,
)


@admin.register(Tenant)
class TenantAdmin(TenantModelAdmin):
    tenant_field = "pk"
    list_display = ("name", "slug", "timezone", "status")
    search_fields = ("name", "slug")
    fields = ("name", "slug", "timezone", "status", "greeting", "agent_notes", "created_at")

    def get_readonly_fields(self, request, obj=None):
        if request.user.is_superuser:
            return ("created_at",)
        return ("slug", "status", "created_at")

    def has_add_permission(self, request) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser

    def get_list_filter(self, request):
        return ("status",) if request.user.is_superuser else ()


@admin.register(Membership)
class MembershipAdmin(ReadOnlyTenantAdmin):
    list_display = ("user", "role", "created_at")
    search_fields = ("user__email",)


@admin.register(Invitation)
class InvitationAdmin(ReadOnlyTenantAdmin):
    list_display = ("email", "role", "created_at", "expires_at", "accepted_at", "revoked_at")
    exclude = ("token",)
    search_fields = ("email",)


@admin.register(Coverage)
class CoverageAdmin(ReadOnlyTenantAdmin):
    list_display = ("agency", "mode", "active", "created_at", "revoked_at")


@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnlyTenantAdmin):
    list_display = ("name", "prefix", "access", "created_at", "last_used_at", "revoked_at")
    exclude = ("hashed_key",)


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    """Platform staff only (uses Django's own permissions, which tenant admins do not have)."""

    ordering = ("email",)
    list_display = ("email", "full_name", "is_active", "is_superuser", "date_joined")
    search_fields = ("email", "full_name")
    fieldsets = (
        (None, {"fields": ("email", "password", "full_name")}),
        ("Status", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)


@admin.register(Agency)
class AgencyAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "invite_code", "created_at")


@admin.register(AgencyMembership)
class AgencyMembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "agency", "role")


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyTenantAdmin):
    list_display = ("created_at", "action", "detail", "actor")
    list_filter = ("action",)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
