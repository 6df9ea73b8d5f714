"""What happened on every call and chat. The database is the record; channels only notify."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
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

    # No index of its own: turn_unique_seq (conversation, seq) serves every lookup by conversation, and one
    # index fewer is less work on every turn's insert.
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="turns", db_index=False)
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
    handled_at = models.DateTimeField(null=True, blank=True, help_text="Dealt with by someone (console).")
    handled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    emailed_at = models.DateTimeField(null=True, blank=True, help_text="Sent to the business's voicemail address.")
    email_error = models.CharField(max_length=300, blank=True)

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


# --- after hours: callbacks ------------------------------------------------------------------------
class CallbackState(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled"
    QUEUED = "queued", "Due: offered to agents"
    COMPLETED = "completed", "Completed (reached)"
    FAILED = "failed", "Not reached (gave up)"
    CANCELLED = "cancelled", "Cancelled"


#: A callback still to be done: waiting for its time, or offered to agents now.
OPEN_CALLBACK_STATES = (CallbackState.SCHEDULED, CallbackState.QUEUED)


class CallbackOutcome(models.TextChoices):
    REACHED = "reached", "Reached"
    NO_ANSWER = "no_answer", "No answer"
    VOICEMAIL = "voicemail", "Left a voicemail"
    WRONG_NUMBER = "wrong_number", "Wrong number"
    CANCELLED = "cancelled", "Cancelled"


#: Outcomes after which another attempt is scheduled (while attempts remain).
RETRY_OUTCOMES = (CallbackOutcome.NO_ANSWER, CallbackOutcome.VOICEMAIL)


class CallbackSource(models.TextChoices):
    FLOW = "flow", "Asked for in the call"
    MAX_WAIT = "max_wait", "Waited past the queue's maximum"
    AFTER_HOURS = "after_hours", "After hours, nobody covering"
    VOICEMAIL = "voicemail", "From a voicemail"
    STAFF = "staff", "Added by staff"


class CallbackPreference(models.TextChoices):
    ASAP = "asap", "As soon as you open"
    AT = "at", "At a chosen time"


class Callback(TenantOwned):
    """A promise to call someone back. Due work lives here (``due_at``), never in a Celery ETA: the
    dispatch task claims due rows every minute and offers them to agents like escalations.

    ``place_since`` keeps the caller's place: the dispatched work is ordered by it (after priority),
    so a callback is served ahead of work that came in later.
    """

    conversation = models.ForeignKey(
        Conversation, null=True, blank=True, on_delete=models.SET_NULL, related_name="callbacks"
    )
    phone = models.CharField(max_length=32, help_text="Number to call back (E.164).")
    name = models.CharField(max_length=150, blank=True)
    queue = models.ForeignKey("flows.Queue", null=True, blank=True, on_delete=models.SET_NULL, related_name="callbacks")
    priority = models.PositiveSmallIntegerField(default=5)
    source = models.CharField(max_length=16, choices=CallbackSource.choices, default=CallbackSource.FLOW)
    preference = models.CharField(max_length=8, choices=CallbackPreference.choices, default=CallbackPreference.ASAP)
    requested_for = models.DateTimeField(null=True, blank=True, help_text="The time the caller chose, if any.")
    due_at = models.DateTimeField(help_text="When the next attempt is due.")
    first_due_at = models.DateTimeField(help_text="When the first attempt was due (on-time reporting).")
    place_since = models.DateTimeField(help_text="Orders the callback among waiting work.")
    state = models.CharField(max_length=16, choices=CallbackState.choices, default=CallbackState.SCHEDULED)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Attempts dispatched so far.")
    max_attempts = models.PositiveSmallIntegerField(default=3)
    last_outcome = models.CharField(max_length=16, choices=CallbackOutcome.choices, blank=True)
    reason = models.CharField(max_length=300, blank=True, help_text="Why the caller wants a call back.")
    summary = models.JSONField(default=dict, blank=True, help_text="What the agent sees: the AI's summary.")
    notes = models.TextField(blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True, help_text="Last time an attempt was dispatched.")
    first_offered_at = models.DateTimeField(null=True, blank=True, help_text="First offered to an agent.")
    overdue_at = models.DateTimeField(null=True, blank=True, help_text="Flagged to supervisors as overdue.")
    sms_sent_at = models.DateTimeField(null=True, blank=True)
    sms_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["due_at", "id"]
        constraints = [
            # Webhook retries cannot promise the same caller twice.
            models.UniqueConstraint(
                fields=["conversation"],
                condition=models.Q(state__in=["scheduled", "queued"]),
                name="callback_one_open_per_conversation",
            )
        ]
        indexes = [models.Index(fields=["state", "due_at"], name="callback_due")]

    def __str__(self) -> str:
        return f"Callback to {self.phone} due {self.due_at:%Y-%m-%d %H:%M} ({self.get_state_display()})"


class CallbackAttempt(TenantOwned):
    """One try at calling back: dispatched to agents, the agent rung first, then the customer bridged.

    The customer is dialled at most once per attempt: the bridge is part of the agent leg's NCCO, and
    an agent leg is rung again only when the previous one never answered (so never reached the bridge).
    Every ring has its own idempotency key (``dial_key``).
    """

    callback = models.ForeignKey(Callback, on_delete=models.CASCADE, related_name="attempt_set")
    number = models.PositiveSmallIntegerField()
    agent = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    agent_rings = models.PositiveSmallIntegerField(default=0)
    agent_leg_uuid = models.CharField(max_length=64, blank=True)
    agent_leg_status = models.CharField(max_length=16, blank=True)
    customer_leg_uuid = models.CharField(max_length=64, blank=True)
    customer_status = models.CharField(max_length=16, blank=True)
    dialled_at = models.DateTimeField(null=True, blank=True, help_text="When the agent was first rung.")
    bridged_at = models.DateTimeField(null=True, blank=True, help_text="When the customer answered.")
    outcome = models.CharField(max_length=16, choices=CallbackOutcome.choices, blank=True)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["callback", "number"]
        constraints = [models.UniqueConstraint(fields=["callback", "number"], name="callback_attempt_unique_number")]

    def __str__(self) -> str:
        return f"Attempt {self.number} of callback {self.callback_id}"

    @property
    def dial_key(self) -> str:
        return f"callback-{self.callback_id}-attempt-{self.number}-ring-{self.agent_rings}"


class CallbackPolicy(TenantOwned):
    """A business's rules for callbacks and voicemail (one per business; defaults apply without one)."""

    max_attempts = models.PositiveSmallIntegerField(
        default=3, validators=[MinValueValidator(1), MaxValueValidator(10)], help_text="Tries before giving up."
    )
    retry_after_minutes = models.PositiveIntegerField(
        default=30,
        validators=[MinValueValidator(1)],
        help_text="Wait before the second try; each later try waits twice as long (within opening hours).",
    )
    overdue_after_minutes = models.PositiveIntegerField(
        default=15,
        validators=[MinValueValidator(1)],
        help_text="Flag to supervisors when not taken this long after due.",
    )
    offer_on_max_wait = models.BooleanField(
        default=True, help_text="Offer a callback to callers who waited past a queue's maximum wait."
    )
    offer_after_hours = models.BooleanField(
        default=True, help_text="Offer a callback when closed and nobody covers the line."
    )
    sms_confirmation = models.BooleanField(default=True, help_text="Text the caller the time we will call back.")
    sms_template = models.CharField(
        max_length=320,
        default="{business}: thanks for calling. We will call you back {when}.",
        help_text="Placeholders: {business}, {when} (in the business's time zone), {phone}.",
    )
    voicemail_email = models.EmailField(blank=True, help_text="Send each new voicemail to this address.")

    class Meta:
        verbose_name_plural = "callback policies"
        constraints = [models.UniqueConstraint(fields=["tenant"], name="callback_policy_one_per_tenant")]

    def __str__(self) -> str:
        return "Callback and voicemail settings"
