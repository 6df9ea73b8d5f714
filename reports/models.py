"""Rollup tables (per tenant, per local day) and the small amount of state the reports keep.

Rollups are written only by ``reports.services.rollup_day``: for a set of tenants and one local day it
deletes their rows and inserts fresh ones in one transaction, so running it twice gives the same rows
and any past day can be recomputed. They hold sums and counts, never averages or percentages, so a
period is the sum of its days (an average is a sum over a count, computed when read).

Every table is ``TenantOwned`` (scoped like every other tenant row) and keyed by (tenant, day[, ...]);
``day`` is the tenant's local day (``Tenant.timezone``).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from tenants.models import TenantOwned


class DailyTenantStats(TenantOwned):
    """One business, one local day: contacts, AI containment, callbacks, voicemails, leads, appointments.

    A row is written for every tenant rolled up, even with no contacts: ``computed_at`` says how fresh
    the day is (reports show it; the nightly run uses it to know which days are final).
    """

    day = models.DateField()
    contacts = models.PositiveIntegerField(default=0)
    voice = models.PositiveIntegerField(default=0)
    chat = models.PositiveIntegerField(default=0)
    resolved = models.PositiveIntegerField(default=0, help_text="Outcome 'resolved' (by the AI), repeats included.")
    ai_resolved = models.PositiveIntegerField(
        default=0, help_text="Resolved without a person and no repeat contact from the caller within 48 h."
    )
    repeat_contacts = models.PositiveIntegerField(
        default=0, help_text="Resolved, but the same caller came back within 48 h (not contained)."
    )
    escalated = models.PositiveIntegerField(default=0, help_text="Conversations handed to a person.")
    voicemails = models.PositiveIntegerField(default=0)
    callbacks_requested = models.PositiveIntegerField(default=0)
    callbacks_due = models.PositiveIntegerField(default=0, help_text="Callbacks first due this day (decided).")
    callbacks_on_time = models.PositiveIntegerField(default=0, help_text="Of those, offered within 2 minutes.")
    leads = models.PositiveIntegerField(default=0)
    appointments = models.PositiveIntegerField(default=0)
    computed_at = models.DateTimeField()

    class Meta:
        ordering = ["tenant", "day"]
        constraints = [models.UniqueConstraint(fields=["tenant", "day"], name="reports_daily_unique")]

    def __str__(self) -> str:
        return f"{self.day}: {self.contacts} contacts"


class DailyQueueStats(TenantOwned):
    """One queue, one local day: live escalations, service level, speed of answer, abandonment, handling."""

    day = models.DateField()
    queue = models.ForeignKey("flows.Queue", on_delete=models.CASCADE, related_name="+")
    escalations = models.PositiveIntegerField(default=0, help_text="Live escalations that arrived this day.")
    answered = models.PositiveIntegerField(default=0, help_text="Accepted by a person.")
    wait_seconds = models.FloatField(default=0, help_text="Sum of waits (arrival to accept) of answered ones.")
    sl_counted = models.PositiveIntegerField(default=0, help_text="Arrived while open and decided.")
    sl_met = models.PositiveIntegerField(default=0, help_text="Of those, accepted within the queue's threshold.")
    out_of_hours = models.PositiveIntegerField(default=0, help_text="Arrived while closed: not on the SL clock.")
    abandoned = models.PositiveIntegerField(default=0, help_text="The caller hung up (not: chose a callback).")
    chose_callback = models.PositiveIntegerField(default=0, help_text="Turned into a callback at the caller's choice.")
    expired = models.PositiveIntegerField(default=0, help_text="Nobody took it within the queue's maximum wait.")
    callback_escalations = models.PositiveIntegerField(default=0, help_text="Callback attempts offered to agents.")
    handled = models.PositiveIntegerField(default=0, help_text="Wrapped up by an agent (live and callbacks).")
    handle_seconds = models.FloatField(default=0, help_text="Sum of accept-to-wrap-up times of handled ones.")

    class Meta:
        ordering = ["tenant", "day", "queue"]
        constraints = [models.UniqueConstraint(fields=["tenant", "day", "queue"], name="reports_queue_unique")]

    def __str__(self) -> str:
        return f"{self.day} queue {self.queue_id}: {self.escalations} escalations"


class HourlyContacts(TenantOwned):
    """Contacts by local hour of the day and channel (on a fall-back day hour 1 holds both 1 o'clocks)."""

    day = models.DateField()
    hour = models.PositiveSmallIntegerField()
    channel = models.CharField(max_length=8)
    contacts = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["tenant", "day", "hour", "channel"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "day", "hour", "channel"], name="reports_hourly_unique")
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.hour:02d}h {self.channel}: {self.contacts}"


class EscalationReasonDaily(TenantOwned):
    """Why the AI handed over: live escalations by reason code, per queue."""

    day = models.DateField()
    queue = models.ForeignKey("flows.Queue", on_delete=models.CASCADE, related_name="+")
    reason_code = models.CharField(max_length=64)
    escalations = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["tenant", "day", "queue", "reason_code"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "day", "queue", "reason_code"], name="reports_reason_unique")
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.reason_code or 'unknown'}: {self.escalations}"


class FunnelStepDaily(TenantOwned):
    """The flow funnel: per published version and step, conversations (started this day) that reached
    the step, ended there, and were handed to a person there."""

    day = models.DateField()
    flow_version = models.ForeignKey("flows.FlowVersion", on_delete=models.CASCADE, related_name="+")
    step = models.CharField(max_length=64)
    reached = models.PositiveIntegerField(default=0)
    ended = models.PositiveIntegerField(default=0, help_text="Conversations whose last step was this one.")
    escalated = models.PositiveIntegerField(default=0, help_text="Of those, handed to a person.")

    class Meta:
        ordering = ["tenant", "day", "flow_version", "step"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "day", "flow_version", "step"], name="reports_funnel_unique")
        ]

    def __str__(self) -> str:
        return f"{self.day} v{self.flow_version_id} {self.step}: {self.reached}"


class UnmatchedDaily(TenantOwned):
    """Caller utterances the script did not understand (out of scope or low confidence), counted per
    flow and lower-cased text. Grouping by similarity happens when the review is read
    (``reports.similarity``), over these distinct texts rather than over every turn."""

    day = models.DateField()
    flow = models.ForeignKey("flows.Flow", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    text = models.CharField(max_length=300, help_text="The utterance, trimmed and lower-cased.")
    example = models.CharField(max_length=300, help_text="One utterance as said (for display).")
    turns = models.PositiveIntegerField(default=0)
    out_of_scope = models.PositiveIntegerField(default=0)
    low_confidence = models.PositiveIntegerField(default=0, help_text="Understood, but below the confidence bar.")

    class Meta:
        ordering = ["tenant", "day", "-turns"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "day", "flow", "text"], name="reports_unmatched_unique")
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.text!r} x{self.turns}"


class AgencyDaily(TenantOwned):
    """An answering agency's work for one client business and day (escalations its agents accepted)."""

    day = models.DateField()
    agency = models.ForeignKey("tenants.Agency", on_delete=models.CASCADE, related_name="+")
    handled = models.PositiveIntegerField(default=0)
    answered_within_sl = models.PositiveIntegerField(default=0)
    wait_seconds = models.FloatField(default=0)
    talk_seconds = models.FloatField(default=0, help_text="Connected (or accepted) to wrap-up/end.")

    class Meta:
        ordering = ["tenant", "day", "agency"]
        constraints = [models.UniqueConstraint(fields=["tenant", "day", "agency"], name="reports_agency_unique")]

    def __str__(self) -> str:
        return f"{self.day} agency {self.agency_id}: {self.handled}"


class OpenSpan(TenantOwned):
    """When the business was open on a day (from its calendar when the day was rolled up). The service
    level joins escalations against these spans in SQL; kept so a figure can be explained later."""

    day = models.DateField()
    start = models.DateTimeField()
    end = models.DateTimeField()

    class Meta:
        ordering = ["tenant", "day", "start"]
        indexes = [models.Index(fields=["tenant", "day"], name="reports_openspan_day")]

    def __str__(self) -> str:
        return f"{self.day}: {self.start:%H:%M}-{self.end:%H:%M} UTC"


class UnmatchedAction(models.TextChoices):
    INTENT_EXAMPLE = "intent_example", "Added as examples of an intent"
    NEW_FAQ = "new_faq", "Made into a new FAQ"
    DISMISSED = "dismissed", "Dismissed"


class UnmatchedHandled(TenantOwned):
    """An unmatched question somebody dealt with: it leaves the review. ``text`` is the normalised form
    (``flows.nlu_text.normalize``), so "Do you do X?" and "do you do x" are one entry."""

    flow = models.ForeignKey("flows.Flow", on_delete=models.CASCADE, related_name="+")
    text = models.CharField(max_length=300)
    action = models.CharField(max_length=16, choices=UnmatchedAction.choices)
    target = models.CharField(max_length=100, blank=True, help_text="The intent name or FAQ key.")
    handled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    handled_at = models.DateTimeField()

    class Meta:
        ordering = ["-handled_at"]
        constraints = [models.UniqueConstraint(fields=["tenant", "flow", "text"], name="reports_handled_unique")]

    def __str__(self) -> str:
        return f"{self.text!r}: {self.get_action_display()}"


class DigestSent(TenantOwned):
    """The weekly e-mail digest of one week (Monday to Sunday, local): claimed, then sent once."""

    week_start = models.DateField()
    claimed_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    recipients = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-week_start"]
        constraints = [models.UniqueConstraint(fields=["tenant", "week_start"], name="reports_digest_unique")]

    def __str__(self) -> str:
        return f"Digest of the week of {self.week_start}"


#: Every rollup table, in the order they are deleted and written.
ROLLUP_MODELS = (
    DailyTenantStats,
    DailyQueueStats,
    HourlyContacts,
    EscalationReasonDaily,
    FunnelStepDaily,
    UnmatchedDaily,
    AgencyDaily,
    OpenSpan,
)
