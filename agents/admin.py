"""Admin: per-user agent rows for platform superusers only; escalations read-only for a business's staff."""

from django.contrib import admin

from agents.models import AgentProfile, Escalation, Presence
from tenants.admin_site import ReadOnlyTenantAdmin


@admin.register(AgentProfile)
class AgentProfileAdmin(admin.ModelAdmin):
    """Per person, not per business: only superusers (Django permissions) see it here."""

    list_display = ("user", "skills", "capacity", "phone_number", "app_user", "missed_offers_in_a_row")
    search_fields = ("user__email",)
    raw_id_fields = ("user",)


@admin.register(Presence)
class PresenceAdmin(admin.ModelAdmin):
    list_display = ("user", "state", "since", "reason", "last_heartbeat")
    list_filter = ("state",)
    search_fields = ("user__email",)
    raw_id_fields = ("user",)


@admin.register(Escalation)
class EscalationAdmin(ReadOnlyTenantAdmin):
    """What happened to each handover; changed only by the console and the routing services."""

    list_display = ("created_at", "queue", "state", "priority", "reason_code", "agent", "via_agency", "overflowed")
    list_filter = ("state", "overflowed")
    search_fields = ("reason_code", "reason_text")
    date_hierarchy = "created_at"


from agents import chat_admin  # noqa: E402,F401  (registers ChatSite)
