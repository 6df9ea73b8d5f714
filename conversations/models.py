"""What happened on every call and chat. The database is the record; channels only notify."""

from __future__ import annotations

from django.db import models

from flows.models import FlowVersion
from tenants.models import TenantOwned


class Channel(models.TextChoices):
    VOICE = "voice", "Phone"
    CHAT = "chat", "Web chat"


class Status(models.TextChoices):
    RINGING = "ringing", "Ringing"
    IN_PROGRESS = "in_progress", "In progress"
    WAITING = "waiting", "Waiting for a person"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"


class Outcome(models.TextChoices):
    RESOLVED = "resolved", "Resolved by AI"
    ESCALATED = "escalated", "Escalated"
    VOICEMAIL = "voicemail", "Voicemail"
    CALLBACK = "callback", "Callback"
    ABANDONED = "abandoned", "Abandoned"
    FAILED = "failed", "Failed"


class Conversation(TenantOwned):
    channel = models.CharField(max_length=8, choices=Channel.choices, default=Channel.VOICE)
    caller_number = models.CharField(max_length=32, blank=True)
    dialled_number = models.CharField(max_length=32, blank=True)
    flow_version = models.ForeignKey(FlowVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    vonage_uuid = models.CharField(max_length=64, null=True, blank=True, unique=True)
    vonage_conversation_uuid = models.CharField(max_length=64, blank=True, db_index=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.IN_PROGRESS)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, blank=True)
    escalation_reason = models.CharField(max_length=64, blank=True)
    escalation_text = models.CharField(max_length=300, blank=True)
    state = models.TextField(blank=True, help_text="The engine's ConversationState as JSON.")
    started_at = models.DateTimeField(db_index=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    duration_seconds = models.PositiveIntegerField(null=True, blank=True)
    price = models.DecimalField(max_digits=10, decimal_places=5, null=True, blank=True)
    last_status_at = models.DateTimeField(null=True, blank=True, help_text="Time of the newest status event applied.")
    turn_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["tenant", "started_at"], name="conv_tenant_started")]

    def __str__(self) -> str:
        return (
            f"{self.get_channel_display()} from {self.caller_number or 'unknown'} at {self.started_at:%Y-%m-%d %H:%M}"
        )


class Turn(TenantOwned):
    """One exchange: what the caller said (or pressed), what the AI understood and answered, and why."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="turns")
    seq = models.PositiveIntegerField()
    event = models.CharField(max_length=16, default="utterance")
    utterance = models.TextField(blank=True)
    dtmf = models.CharField(max_length=32, blank=True)
    asr_confidence = models.FloatField(null=True, blank=True)
    intent = models.CharField(max_length=100, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    out_of_scope = models.BooleanField(default=False)
    reply = models.TextField(blank=True)
    reason_code = models.CharField(max_length=64, blank=True)
    reason = models.TextField(blank=True)
    step = models.CharField(max_length=64, blank=True)
    actions = models.JSONField(default=list)
    latency_ms = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["conversation", "seq"]
        constraints = [models.UniqueConstraint(fields=["conversation", "seq"], name="turn_unique_seq")]

    def __str__(self) -> str:
        return f"#{self.seq} {self.utterance or self.dtmf or self.event}"


class Lead(TenantOwned):
    conversation = models.ForeignKey(
        Conversation, null=True, blank=True, on_delete=models.SET_NULL, related_name="leads"
    )
    name = models.CharField(max_length=150, blank=True)
    phone = models.CharField(max_length=32, blank=True)
    email = models.EmailField(blank=True)
    fields = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name or self.phone or f"Lead {self.pk}"


class AppointmentRequest(TenantOwned):
    conversation = models.ForeignKey(
        Conversation, null=True, blank=True, on_delete=models.SET_NULL, related_name="appointments"
    )
    service = models.CharField(max_length=100)
    requested_for = models.DateTimeField(null=True, blank=True)
    requested_text = models.CharField(max_length=100, blank=True)
    details = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.service} at {self.requested_for or self.requested_text}"


class Voicemail(TenantOwned):
    conversation = models.ForeignKey(
        Conversation, null=True, blank=True, on_delete=models.SET_NULL, related_name="voicemails"
    )
    caller_number = models.CharField(max_length=32, blank=True)
    recording_url = models.URLField(max_length=500)
    recording_uuid = models.CharField(max_length=64, unique=True)
    duration_seconds = models.PositiveIntegerField(null=True, blank=True)
    transcript = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Voicemail from {self.caller_number or 'unknown'}"


class CallEvent(TenantOwned):
    """Every Vonage event as received; the unique key makes retried deliveries harmless."""

    conversation = models.ForeignKey(
        Conversation, null=True, blank=True, on_delete=models.CASCADE, related_name="events"
    )
    dedupe_key = models.CharField(max_length=64, unique=True)
    status = models.CharField(max_length=32, blank=True)
    occurred_at = models.DateTimeField(null=True, blank=True)
    payload = models.JSONField(default=dict)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["received_at"]

    def __str__(self) -> str:
        return f"{self.status} at {self.occurred_at}"
