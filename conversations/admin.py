"""The contact record, read-only in the admin (it is what happened; nobody edits history)."""

from django.contrib import admin

from conversations.models import AppointmentRequest, Conversation, Lead, Turn, Voicemail
from tenants.admin_site import ReadOnlyTenantAdmin


class TurnInline(admin.TabularInline):
    model = Turn
    fields = (
        "seq",
        "utterance",
        "dtmf",
        "asr_confidence",
        "intent",
        "confidence",
        "reply",
        "reason_code",
        "latency_ms",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_view_permission(self, request, obj=None):
        return admin.site._registry[Conversation].has_view_permission(request, obj)


@admin.register(Conversation)
class ConversationAdmin(ReadOnlyTenantAdmin):
    list_display = (
        "started_at",
        "channel",
        "caller_number",
        "outcome",
        "escalation_reason",
        "duration_seconds",
        "turn_count",
    )
    list_filter = ("channel", "outcome", "status")
    search_fields = ("caller_number",)
    exclude = ("state",)
    inlines = (TurnInline,)
    date_hierarchy = "started_at"


@admin.register(Lead)
class LeadAdmin(ReadOnlyTenantAdmin):
    list_display = ("created_at", "name", "phone", "email")
    search_fields = ("name", "phone", "email")


@admin.register(AppointmentRequest)
class AppointmentRequestAdmin(ReadOnlyTenantAdmin):
    list_display = ("created_at", "service", "requested_for", "requested_text")


@admin.register(Voicemail)
class VoicemailAdmin(ReadOnlyTenantAdmin):
    list_display = ("created_at", "caller_number", "duration_seconds", "transcript")
