"""Callbacks: the promise to call someone back, and when it is due.

Due times come from the tenant's one calendar (``flows.runtime.tenant_calendar``): "as soon as you
open" is the next open moment; a chosen time that falls while closed moves to the next opening; a
retry waits ``retry_after_minutes`` doubled per attempt, then the next opening. Nothing here dials or
offers: ``agents.callbacks`` claims due rows every minute and offers them to agents like escalations.

Every function runs inside a tenant scope entered by a door (webhook, page, console, task).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Any
from zoneinfo import ZoneInfo

from django.db import IntegrityError, transaction
from django.utils import timezone

from conversations import hooks
from conversations.models import (
    OPEN_CALLBACK_STATES,
    Callback,
    CallbackPolicy,
    CallbackPreference,
    CallbackSource,
    CallbackState,
    Conversation,
    Outcome,
)
from flows.hours import next_open
from tenants.models import Tenant

logger = logging.getLogger("switchboard.callbacks")

_E164 = re.compile(r"^\+?[1-9]\d{5,14}$")


class CallbackError(ValueError):
    """A callback that cannot be promised (e.g. no usable phone number); the message says why."""


def policy_for(tenant_id: int) -> CallbackPolicy:
    """The business's callback settings (unsaved defaults when it never changed them)."""
    return CallbackPolicy.objects.filter(tenant_id=tenant_id).first() or CallbackPolicy(tenant_id=tenant_id)


def normalise_phone(raw: str) -> str:
    """'+1 (555) 555-0100' -> '+15555550100'. Raises CallbackError for anything that is not a number."""
    cleaned = re.sub(r"[\s().\-/]", "", str(raw or ""))
    if cleaned.startswith("00"):
        cleaned = "+" + cleaned[2:]
    if not _E164.match(cleaned):
        raise CallbackError(
            f"phone: {raw!r} is not a phone number we can call back; use the international form, e.g. +15555550123."
        )
    return cleaned if cleaned.startswith("+") else "+" + cleaned


def _calendar(tenant: Tenant):
    from flows.runtime import tenant_calendar

    return tenant_calendar(tenant)


def opening_at_or_after(tenant: Tenant, when: dt.datetime) -> dt.datetime:
    """``when`` if the business is open then, else its next opening (``when`` if it never opens)."""
    opened = next_open(_calendar(tenant), when)
    return opened.astimezone(dt.UTC) if opened is not None else when


def callback_due_at(
    *, tenant: Tenant, preference: str, requested_for: dt.datetime | None, now: dt.datetime
) -> dt.datetime:
    """When to call: the chosen time (never in the past), or now; moved to the next opening if closed."""
    wanted = requested_for if preference == CallbackPreference.AT and requested_for is not None else now
    return opening_at_or_after(tenant, max(wanted, now))


def retry_due_at(*, callback: Callback, policy: CallbackPolicy, now: dt.datetime) -> dt.datetime:
    """After attempt n failed: wait retry_after_minutes * 2**(n-1), then the next opening."""
    wait = dt.timedelta(minutes=policy.retry_after_minutes * 2 ** max(callback.attempts - 1, 0))
    return opening_at_or_after(callback.tenant, now + wait)


def callback_schedule(
    *,
    tenant_id: int,
    phone: str,
    source: str,
    conversation: Conversation | None = None,
    name: str = "",
    queue: Any = None,
    priority: int = 5,
    preference: str = CallbackPreference.ASAP,
    requested_for: dt.datetime | None = None,
    place_since: dt.datetime | None = None,
    reason: str = "",
    summary: dict | None = None,
    now: dt.datetime | None = None,
) -> Callback:
    """Promise a call back (once per conversation while it is open: a retried webhook returns the same one).

    ``place_since`` keeps a waiting caller's place in line (default: now). Sends the SMS confirmation
    after commit (``hooks.callback_scheduled`` subscribers). Raises CallbackError for an unusable number.
    """
    now = now or timezone.now()
    number = normalise_phone(phone)
    source = CallbackSource(source)
    preference = CallbackPreference(preference)
    if conversation is not None:
        existing = Callback.objects.filter(conversation=conversation, state__in=OPEN_CALLBACK_STATES).first()
        if existing is not None:
            return existing
    tenant = Tenant.objects.get(pk=tenant_id)
    policy = policy_for(tenant_id)
    due = callback_due_at(tenant=tenant, preference=preference, requested_for=requested_for, now=now)
    if queue is None:
        from flows.models import EscalationPolicy, Queue

        esc_policy = EscalationPolicy.objects.filter(tenant_id=tenant_id).select_related("default_queue").first()
        queue = (esc_policy.default_queue if esc_policy else None) or Queue.objects.filter(tenant_id=tenant_id).first()
    try:
        with transaction.atomic():
            callback = Callback.objects.create(
                tenant_id=tenant_id,
                conversation=conversation,
                phone=number,
                name=(name or "")[:150],
                queue=queue,
                priority=min(max(int(priority), 0), 9),
                source=source,
                preference=preference,
                requested_for=requested_for if preference == CallbackPreference.AT else None,
                due_at=due,
                first_due_at=due,
                place_since=place_since or now,
                max_attempts=policy.max_attempts,
                reason=(reason or "")[:300],
                summary=summary or {},
                created_at=now,
            )
            if conversation is not None:
                Conversation.objects.filter(pk=conversation.pk).update(outcome=Outcome.CALLBACK)
    except IntegrityError:
        # A concurrent retry of the same webhook promised it first.
        return Callback.objects.get(conversation=conversation, state__in=OPEN_CALLBACK_STATES)
    logger.info(
        "callback scheduled",
        extra={"callback_id": callback.pk, "due_at": due.isoformat(), "source": source.value},
    )
    transaction.on_commit(lambda: hooks.callback_scheduled(callback))
    return callback


def callback_cancel(*, callback: Callback, now: dt.datetime | None = None, note: str = "") -> bool:
    """Staff cancel a promise that is no longer needed (the caller called again, ...)."""
    now = now or timezone.now()
    with transaction.atomic():
        done = Callback.objects.filter(pk=callback.pk, state__in=OPEN_CALLBACK_STATES).update(
            state=CallbackState.CANCELLED, closed_at=now, last_outcome="cancelled", notes=note[:2000] or callback.notes
        )
        if done:
            transaction.on_commit(lambda: hooks.callback_closed(callback))
    return bool(done)


# --- wording ---------------------------------------------------------------------------------------
def _clock(value: dt.datetime) -> str:
    text = value.strftime("%I:%M %p").lstrip("0")
    return text.replace(":00 ", " ")


def when_text(due: dt.datetime, *, tz: str, now: dt.datetime) -> str:
    """How to tell the caller when: 'shortly', 'today at 9 AM', 'tomorrow at 8:30 AM', 'on Monday, December 7 at
    9 AM', in the business's time zone."""
    zone = ZoneInfo(tz)
    local, local_now = due.astimezone(zone), now.astimezone(zone)
    if due - now <= dt.timedelta(minutes=10):
        return "shortly"
    days = (local.date() - local_now.date()).days
    if days == 0:
        return f"today at {_clock(local)}"
    if days == 1:
        return f"tomorrow at {_clock(local)}"
    return f"on {local:%A, %B} {local.day} at {_clock(local)}"


class _Placeholders(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def sms_text(*, callback: Callback, tenant: Tenant, policy: CallbackPolicy, now: dt.datetime) -> str:
    """The confirmation in the business's wording; unknown placeholders are left as they are."""
    values = _Placeholders(
        business=tenant.name, when=when_text(callback.due_at, tz=tenant.timezone, now=now), phone=callback.phone
    )
    return policy.sms_template.format_map(values)[:640]
