"""The contact record, read-only in the admin (it is what happened; nobody edits history)."""

from django.contrib import admin
from django.core.exceptions import PermissionDenied

from conversations.models import (
    OPEN_CALLBACK_STATES,
    AppointmentRequest,
    Callback,
    CallbackAttempt,
    CallbackPolicy,
    Conversation,
    Lead,
    Turn,
    Voicemail,
)
from tenants.admin_site import ReadOnlyTenantAdmin, TenantModelAdmin


class _RecordInline(admin.TabularInline):
    """Rows of the record shown under their parent: read-only, visible to whoever may view the parent."""

    extra = 0
    can_delete = False
    parent_model_cls: type = Conversation

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_view_permission(self, request, obj=None):
        return admin.site._registry[self.parent_model_cls].has_view_permission(request, obj)


class TurnInline(_RecordInline):
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


# --- callbacks ---------------------------------------------------------------------------------------
class CallbackAttemptInline(_RecordInline):
    model = CallbackAttempt
    parent_model_cls = Callback
    fields = ("number", "agent", "dialled_at", "agent_leg_status", "customer_status", "bridged_at", "outcome", "notes")
    readonly_fields = fields


class OverdueFilter(admin.SimpleListFilter):
    title = "overdue"
    parameter_name = "overdue"

    def lookups(self, request, model_admin):
        return (("yes", "Overdue (flagged)"), ("no", "On time"))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(overdue_at__isnull=False, state__in=OPEN_CALLBACK_STATES)
        if self.value() == "no":
            return queryset.filter(overdue_at__isnull=True)
        return queryset


@admin.register(Callback)
class CallbackAdmin(TenantModelAdmin):
    """Promised callbacks: staff follow them and may cancel one or add notes; the rest is the record."""

    list_display = ("due_at", "phone", "name", "state", "attempts", "last_outcome", "source", "overdue_at", "queue")
    list_filter = ("state", OverdueFilter, "source", "last_outcome")
    search_fields = ("phone", "name")
    date_hierarchy = "due_at"
    inlines = (CallbackAttemptInline,)
    actions = ("cancel_callbacks",)
    fields = (
        "state",
        "phone",
        "name",
        "queue",
        "priority",
        "source",
        "preference",
        "requested_for",
        "due_at",
        "first_due_at",
        "attempts",
        "max_attempts",
        "last_outcome",
        "reason",
        "first_offered_at",
        "overdue_at",
        "sms_sent_at",
        "sms_error",
        "created_at",
        "closed_at",
        "notes",
    )
    readonly_fields = tuple(f for f in fields if f != "notes")

    def has_add_permission(self, request) -> bool:
        return False  # promised by callers (flow, queue, voicemail), not typed in

    @admin.action(description="Cancel the selected callbacks (no longer needed)")
    def cancel_callbacks(self, request, queryset):
        from conversations.callbacks import callback_cancel

        if not self.has_change_permission(request):
            raise PermissionDenied
        done = sum(
            callback_cancel(callback=cb, note=f"Cancelled by {request.user.email}")
            for cb in queryset.filter(state__in=OPEN_CALLBACK_STATES)
        )
        self.message_user(request, f"{done} callback(s) cancelled.")


@admin.register(CallbackPolicy)
class CallbackPolicyAdmin(TenantModelAdmin):
    list_display = ("tenant", "max_attempts", "retry_after_minutes", "overdue_after_minutes", "sms_confirmation")
