"""Scripts and routing configuration, all tenant-owned.

The draft of a flow is relational (Flow, Step, Intent, Faq) so the admin can edit one piece at a
time with field-level errors. Publishing freezes the draft, plus the tenant's escalation policy and
queues, into an immutable FlowVersion (a validated ``flows.definition.FlowDefinition`` as JSON and
the trained intent model); live conversations run a FlowVersion, never the draft.

Business hours, holidays and closures are the tenant's one calendar (``flows.hours``): they are
read live (not frozen into versions), so a new holiday applies at once to every flow and queue.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from tenants.models import TenantOwned

key_validator = RegexValidator(
    r"^[A-Za-z][A-Za-z0-9_.\-]*$",
    "Start with a letter and use only letters, digits, '_', '-' or '.', for example 'ask_phone'.",
)
STEP_KIND_CHOICES = [
    ("say", "Say"),
    ("menu", "Menu / intent router"),
    ("ask", "Ask (collect a slot)"),
    ("faq", "FAQ answer"),
    ("capture_lead", "Capture lead"),
    ("request_appointment", "Request appointment"),
    ("hours_branch", "Business-hours branch"),
    ("condition", "Condition on slots"),
    ("escalate", "Escalate to a person"),
    ("voicemail", "Voicemail"),
    ("offer_callback", "Offer callback"),
    ("end", "End"),
]


def lines(text: str) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


class RoutingMode(models.TextChoices):
    LONGEST_IDLE = "longest_idle", "Offer to the longest-idle agent"
    BROADCAST = "broadcast", "Offer to all eligible agents; first to accept wins"


class Queue(TenantOwned):
    """Where escalations wait for a person. Escalate steps name a queue."""

    name = models.CharField(max_length=50, validators=[key_validator], help_text="Used in flows, e.g. front-desk.")
    description = models.CharField(max_length=200, blank=True)
    required_skills = models.JSONField(default=list, blank=True, help_text='Skills an agent needs, e.g. ["billing"].')
    priority = models.PositiveSmallIntegerField(default=5, validators=[MaxValueValidator(9)])
    service_level_seconds = models.PositiveIntegerField(
        default=30, help_text="Answered within this many seconds counts towards the service level."
    )
    max_wait_seconds = models.PositiveIntegerField(
        default=300, help_text="After this wait the caller is offered voicemail or a callback."
    )
    overflow_after_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="Offer to covering agencies after this wait (empty: never by time)."
    )
    overflow_when_no_agents = models.BooleanField(
        default=True, help_text="Offer to covering agencies at once when no in-house agent is available."
    )
    routing_mode = models.CharField(max_length=16, choices=RoutingMode.choices, default=RoutingMode.LONGEST_IDLE)
    offer_timeout_seconds = models.PositiveIntegerField(default=20, validators=[MinValueValidator(5)])

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="queue_unique_name")]

    def __str__(self) -> str:
        return self.name


class Flow(TenantOwned):
    """A script: its draft steps, intents and FAQ; the live version is ``published_version``."""

    name = models.CharField(max_length=100)
    description = models.CharField(max_length=300, blank=True)
    language = models.CharField(max_length=16, default="en-US", help_text="BCP-47 tag, e.g. en-US.")
    voice_style = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Vonage voice style id.")
    start_step = models.CharField(max_length=64, validators=[key_validator], help_text="Key of the first step.")
    messages = models.JSONField(default=dict, blank=True, help_text="Override the standard lines (see docs).")
    published_version = models.ForeignKey(
        "FlowVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="flow_unique_name")]

    def __str__(self) -> str:
        return self.name


class Step(TenantOwned):
    """One step of a draft. ``config`` holds the kind's settings, validated by flows.definition."""

    flow = models.ForeignKey(Flow, on_delete=models.CASCADE, related_name="steps")
    key = models.CharField(max_length=64, validators=[key_validator])
    kind = models.CharField(max_length=24, choices=STEP_KIND_CHOICES)
    config = models.JSONField(default=dict, blank=True)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["flow", "position", "id"]
        constraints = [models.UniqueConstraint(fields=["flow", "key"], name="step_unique_key")]

    def __str__(self) -> str:
        return f"{self.key} ({self.get_kind_display()})"

    def as_definition_dict(self) -> dict:
        return {
            "id": self.key,
            "kind": self.kind,
            **{k: v for k, v in (self.config or {}).items() if k not in ("id", "kind")},
        }


class Intent(TenantOwned):
    """Something callers want, with the ways they say it (one example per line)."""

    flow = models.ForeignKey(Flow, on_delete=models.CASCADE, related_name="intents")
    name = models.CharField(max_length=64, validators=[key_validator])
    description = models.CharField(max_length=200, blank=True)
    examples = models.TextField(help_text="One way a caller says it per line; 8 or more work best.")

    class Meta:
        ordering = ["flow", "name"]
        constraints = [models.UniqueConstraint(fields=["flow", "name"], name="intent_unique_name")]

    def __str__(self) -> str:
        return self.name


class Faq(TenantOwned):
    """An approved answer, and the questions it answers (one per line)."""

    flow = models.ForeignKey(Flow, on_delete=models.CASCADE, related_name="faqs")
    key = models.CharField(max_length=64, validators=[key_validator])
    questions = models.TextField(help_text="Ways callers ask it, one per line.")
    answer = models.TextField(help_text="The approved answer, word for word.")
    voice_answer = models.TextField(blank=True, help_text="Optional wording for the phone (spell out numbers...).")

    class Meta:
        ordering = ["flow", "key"]
        verbose_name = "FAQ"
        verbose_name_plural = "FAQs"
        constraints = [models.UniqueConstraint(fields=["flow", "key"], name="faq_unique_key")]

    def __str__(self) -> str:
        return self.key


class BusinessHours(TenantOwned):
    """The tenant's weekly opening hours (split shifts allowed), in the tenant's time zone."""

    weekly = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "business hours"
        constraints = [models.UniqueConstraint(fields=["tenant"], name="businesshours_one_per_tenant")]

    def __str__(self) -> str:
        return "Business hours"


class Holiday(TenantOwned):
    date = models.DateField()
    name = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["date"]
        constraints = [models.UniqueConstraint(fields=["tenant", "date"], name="holiday_unique_date")]

    def __str__(self) -> str:
        return f"{self.date} {self.name}".strip()


class Closure(TenantOwned):
    """A one-off closure (training afternoon, storm)."""

    start = models.DateTimeField()
    end = models.DateTimeField()
    reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["start"]

    def __str__(self) -> str:
        return f"{self.start:%Y-%m-%d %H:%M} - {self.end:%Y-%m-%d %H:%M} {self.reason}".strip()

    def clean(self) -> None:
        super().clean()
        from django.core.exceptions import ValidationError

        if self.start and self.end and self.end <= self.start:
            raise ValidationError({"end": "The closure must end after it starts."})


class EscalationPolicy(TenantOwned):
    """When the AI hands over to a person, for all of the tenant's flows."""

    human_phrases = models.TextField(
        blank=True,
        default="agent\nrepresentative\nreal person\nhuman\noperator\nspeak to someone\ntalk to someone\nlive person",
        help_text="Phrases that mean 'get me a person', one per line.",
    )
    human_dtmf = models.CharField(max_length=1, blank=True, default="0", help_text="Key that asks for a person.")
    urgent_keywords = models.TextField(
        blank=True,
        default="emergency | emergency\nlawyer | legal\nattorney | legal\ncancel my account | cancellation",
        help_text="One per line: phrase | reason label | optional escalate step key.",
    )
    frustration = models.BooleanField(default=True, help_text="Hand over when the caller sounds angry.")
    max_misunderstandings = models.PositiveSmallIntegerField(default=2, validators=[MinValueValidator(1)])
    low_asr_confidence = models.FloatField(
        default=0.4,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Speech recognised with less confidence than this counts as not heard well.",
    )
    low_asr_repeats = models.PositiveSmallIntegerField(default=2, validators=[MinValueValidator(1)])
    repeat_question_limit = models.PositiveSmallIntegerField(default=2, validators=[MinValueValidator(1)])
    default_queue = models.ForeignKey(Queue, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    default_priority = models.PositiveSmallIntegerField(default=5, validators=[MaxValueValidator(9)])

    class Meta:
        verbose_name_plural = "escalation policies"
        constraints = [models.UniqueConstraint(fields=["tenant"], name="escalationpolicy_one_per_tenant")]

    def __str__(self) -> str:
        return "Escalation policy"


class FlowVersion(TenantOwned):
    """An immutable, validated snapshot of a flow. Created only by flows.services (publish, rollback)."""

    flow = models.ForeignKey(Flow, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    definition = models.JSONField()
    content_hash = models.CharField(max_length=64)
    nlu_model = models.BinaryField(null=True, editable=False)
    note = models.CharField(max_length=200, blank=True)
    rolled_back_from = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    train_seconds = models.FloatField(default=0)

    class Meta:
        ordering = ["flow", "-number"]
        constraints = [models.UniqueConstraint(fields=["flow", "number"], name="flowversion_unique_number")]

    def __str__(self) -> str:
        return f"{self.flow.name} v{self.number}"
