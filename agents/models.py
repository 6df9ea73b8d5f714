"""Live agents and the escalation lifecycle.

Per-user rows (``AgentProfile``, ``Presence``) are not tenant-owned: one person may answer for
several businesses (an agency agent), and their skills, capacity and presence are the same for all
of them. ``Escalation`` and ``EscalationOffer`` are tenant-owned and scoped like every other
tenant row. The database is the record; the channel layer only notifies (``agents.realtime``).
State changes happen only in ``agents.services``.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from conversations.models import Callback, CallbackAttempt, Conversation
from flows.models import Queue
from tenants.models import Agency, TenantOwned


class AgentProfile(models.Model):
    """Opting in to take live work: skills, how many conversations at once, how to reach the agent."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="agent_profile")
    skills = models.JSONField(default=list, blank=True, help_text='Skills, e.g. ["billing", "spanish"].')
    capacity = models.PositiveSmallIntegerField(default=1, validators=[MinValueValidator(1)])
    phone_number = models.CharField(max_length=32, blank=True, help_text="Phone to ring when accepting a call.")
    app_user = models.CharField(max_length=100, blank=True, help_text="Vonage app user to ring instead of a phone.")
    last_offer_at = models.DateTimeField(null=True, blank=True)
    missed_offers_in_a_row = models.PositiveSmallIntegerField(default=0)

    def __str__(self) -> str:
        return f"Agent profile of {self.user}"


class PresenceState(models.TextChoices):
    AVAILABLE = "available", "Available"
    BUSY = "busy", "Busy"
    AWAY = "away", "Away"
    OFFLINE = "offline", "Offline"


class Presence(models.Model):
    """Whether a person can take work now. Kept alive by console heartbeats (see presence_sweep)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="presence")
    state = models.CharField(max_length=16, choices=PresenceState.choices, default=PresenceState.OFFLINE)
    since = models.DateTimeField(default=timezone.now)
    reason = models.CharField(max_length=200, blank=True)
    last_heartbeat = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "presence"

    def __str__(self) -> str:
        return f"{self.user}: {self.get_state_display()}"


class EscalationState(models.TextChoices):
    WAITING = "waiting", "Waiting"
    OFFERED = "offered", "Offered"
    ACCEPTED = "accepted", "Accepted"
    CONNECTED = "connected", "Connected"
    WRAPPED = "wrapped", "Wrapped up"
    ABANDONED = "abandoned", "Abandoned (caller hung up)"
    EXPIRED = "expired", "Expired"
    CALLBACK = "callback", "Turned into a callback"


#: Not yet claimed by anyone: the states an accept may win from.
UNCLAIMED_STATES = (EscalationState.WAITING, EscalationState.OFFERED)
#: Held by an agent: counts against the agent's capacity.
HELD_STATES = (EscalationState.ACCEPTED, EscalationState.CONNECTED)
ACTIVE_STATES = UNCLAIMED_STATES + HELD_STATES


class EscalationKind(models.TextChoices):
    LIVE = "live", "Live contact"
    CALLBACK = "callback", "Callback"


class Escalation(TenantOwned):
    """A conversation handed to a person: why, where it waits, who took it, how it ended.

    A due callback attempt is offered as an escalation of kind ``callback`` (same queues, same offers,
    same claim); its ``created_at`` is the callback's ``place_since`` so it keeps the caller's place.
    """

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="escalations")
    queue = models.ForeignKey(Queue, on_delete=models.PROTECT, related_name="escalations")
    reason_code = models.CharField(max_length=64, blank=True)
    reason_text = models.CharField(max_length=300, blank=True)
    priority = models.PositiveSmallIntegerField(default=5)
    skills = models.JSONField(default=list, blank=True)
    summary = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=16, choices=EscalationState.choices, default=EscalationState.WAITING)
    created_at = models.DateTimeField(default=timezone.now, help_text="Waiting since.")
    offered_at = models.DateTimeField(null=True, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    connected_at = models.DateTimeField(null=True, blank=True)
    wrapped_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    agent = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    disposition = models.CharField(max_length=64, blank=True)
    notes = models.TextField(blank=True)
    via_agency = models.ForeignKey(Agency, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    overflowed = models.BooleanField(default=False)
    # Voice: the agent's leg dialled into the caller's conversation, and what the waiting caller last heard.
    dial_attempts = models.PositiveSmallIntegerField(default=0, help_text="Agent legs dialled so far.")
    agent_leg_uuid = models.CharField(max_length=64, blank=True, help_text="Vonage uuid of the agent's leg.")
    announced_at = models.DateTimeField(null=True, blank=True, help_text="Last place-in-line announcement.")
    announced_place = models.PositiveIntegerField(null=True, blank=True)
    kind = models.CharField(max_length=16, choices=EscalationKind.choices, default=EscalationKind.LIVE)
    callback = models.ForeignKey(Callback, null=True, blank=True, on_delete=models.CASCADE, related_name="escalations")
    callback_attempt = models.OneToOneField(
        CallbackAttempt, null=True, blank=True, on_delete=models.CASCADE, related_name="escalation"
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # Makes escalation_create idempotent: one live escalation per conversation.
            models.UniqueConstraint(
                fields=["conversation"],
                condition=Q(state__in=["waiting", "offered", "accepted", "connected"], kind="live"),
                name="escalation_one_active_per_conversation",
            )
        ]
        indexes = [models.Index(fields=["tenant", "state", "priority", "created_at"], name="escalation_work")]

    def __str__(self) -> str:
        return f"Escalation {self.pk} ({self.get_state_display()}) in {self.queue_id}"


class OfferOutcome(models.TextChoices):
    PENDING = "pending", "Pending"
    ACCEPTED = "accepted", "Accepted"
    DECLINED = "declined", "Declined"
    TIMED_OUT = "timed_out", "Timed out"
    WITHDRAWN = "withdrawn", "Withdrawn"


class EscalationOffer(TenantOwned):
    """One escalation offered to one agent, with a deadline."""

    escalation = models.ForeignKey(Escalation, on_delete=models.CASCADE, related_name="offers")
    agent = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    offered_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    outcome = models.CharField(max_length=16, choices=OfferOutcome.choices, default=OfferOutcome.PENDING)
    responded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["offered_at", "id"]
        indexes = [models.Index(fields=["outcome", "expires_at"], name="offer_due")]

    def __str__(self) -> str:
        return f"Offer of {self.escalation_id} to {self.agent_id} ({self.outcome})"


# --- web chat ------------------------------------------------------------------------------------
def new_chat_public_key() -> str:
    """The widget's public key: identifies a ChatSite in a script tag; it is public, not a secret."""
    import secrets

    return "wk_" + secrets.token_urlsafe(18)


class ChatSite(TenantOwned):
    """A website where the business embeds the chat widget; visitors talk to ``flow``'s live version.

    The widget finds its site by ``public_key``; the chat socket only serves pages whose Origin is
    listed in ``allowed_origins`` (scheme://host[:port], exact match, one per line).
    """

    flow = models.ForeignKey("flows.Flow", on_delete=models.PROTECT, related_name="chat_sites")
    title = models.CharField(max_length=100, default="Chat with us", help_text="Shown at the top of the chat panel.")
    greeting = models.CharField(
        max_length=500, blank=True, help_text="Optional: replaces the script's first greeting line in the chat."
    )
    public_key = models.CharField(max_length=64, unique=True, default=new_chat_public_key, editable=False)
    allowed_origins = models.TextField(
        blank=True, help_text="One origin per line, e.g. https://www.example.com (scheme, host and port must match)."
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["title", "id"]

    def __str__(self) -> str:
        return f"{self.title} ({self.public_key})"

    def origins(self) -> set[str]:
        return {line.strip().rstrip("/").lower() for line in (self.allowed_origins or "").splitlines() if line.strip()}

    def clean(self) -> None:
        super().clean()
        from django.core.exceptions import ValidationError

        from agents.webchat import origin_problem

        problems = [p for p in (origin_problem(o) for o in self.origins()) if p]
        if problems:
            raise ValidationError({"allowed_origins": problems})
