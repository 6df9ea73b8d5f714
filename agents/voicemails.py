"""Voicemails as work: announced to the consoles, e-mailed to the business once, handled by one person.

- A new voicemail (``conversations.hooks.voicemail_recorded``) is published to the business's consoles
  (``voicemail.new``) and e-mailed to its voicemail address (``CallbackPolicy.voicemail_email``, else its
  owners and admins). When the number asked Vonage for a transcription the e-mail waits for it, but at
  most ``TRANSCRIPT_WAIT``: a task due then, and the every-minute sweep, send it without.
- Exactly once: ``voicemail_email_send`` claims the row with one conditional UPDATE of ``emailed_at``
  (``email_error`` says ``EMAIL_CLAIMED`` while the mail is on its way). A failed send releases the
  claim and records ``email_error``; the sweep retries for ``EMAIL_RETRY_FOR``. A claim left behind by
  a worker that died mid-send is released after ``CLAIM_STALE_AFTER``.
- Handling: ``voicemail_handle`` is one conditional UPDATE (two agents cannot both handle it);
  ``voicemail_call_back`` handles it and schedules a callback (``conversations.callbacks``) in one
  transaction, so a callback exists exactly when the voicemail was handled that way.

Every function runs inside a tenant scope entered by a door (webhook hook, page, console, task).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections import Counter
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import transaction
from django.db.models import Q
from django.template.loader import render_to_string
from django.urls import reverse

from agents.realtime import publish
from conversations.models import CallbackPolicy, Voicemail
from tenants.scoping import tenant_scope
from tenants.selectors import tenant_staff_emails

logger = logging.getLogger("switchboard.voicemail")

TRANSCRIPT_WAIT = dt.timedelta(minutes=2)
EMAIL_RETRY_FOR = dt.timedelta(hours=24)
CLAIM_STALE_AFTER = dt.timedelta(minutes=10)
EMAIL_CLAIMED = "(sending)"
EXCERPT_CHARS = 200
CONSOLE_LIMIT = 50
SWEEP_BATCH = 200


class VoicemailError(Exception):
    """A voicemail action that cannot be done; the message says why, for people."""


class VoicemailAlreadyHandled(VoicemailError):
    def __init__(self) -> None:
        super().__init__("Someone already dealt with this voicemail.")


# --- presentation helpers -------------------------------------------------------------------------
def caller_display(number: str) -> str:
    """Vonage sends '15555550123'; people read '+15555550123'. Empty means the caller withheld it."""
    number = (number or "").strip()
    if not number:
        return "Withheld number"
    if number.isdigit() and len(number) > 6:
        return "+" + number
    return number


def duration_text(seconds: int | None) -> str:
    if seconds is None:
        return "unknown length"
    minutes, secs = divmod(max(0, int(seconds)), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def transcript_excerpt(transcript: str, limit: int = EXCERPT_CHARS) -> str:
    text = re.sub(r"\s+", " ", transcript or "").strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "\u2026"


def local_time_text(when: dt.datetime, tz_name: str) -> str:
    try:
        zone = ZoneInfo(tz_name)
    except Exception:
        zone = ZoneInfo("UTC")
    local = when.astimezone(zone)
    return f"{local:%a} {local.day} {local:%b %Y, %H:%M} ({local:%Z})"


def page_url(tenant_slug: str, voicemail_id: int | None = None) -> str:
    url = reverse("tenant-voicemails", args=[tenant_slug])
    return f"{url}?show={voicemail_id}" if voicemail_id else url


def recording_url(tenant_slug: str, voicemail_id: int) -> str:
    """Our proxy for the recording (the browser never sees Vonage's URL or our credentials)."""
    return reverse("tenant-voicemail-recording", args=[tenant_slug, voicemail_id])


# --- reads ----------------------------------------------------------------------------------------
def voicemails_unhandled(*, tenant_ids: list[int]):
    return (
        Voicemail.objects.filter(tenant_id__in=tenant_ids, handled_at__isnull=True)
        .select_related("tenant")
        .order_by("created_at", "id")
    )


def voicemail_console_item(voicemail: Voicemail, now: dt.datetime) -> dict:
    tenant = voicemail.tenant
    return {
        "voicemail_id": voicemail.pk,
        "tenant_id": voicemail.tenant_id,
        "tenant_name": tenant.name,
        "caller_number": caller_display(voicemail.caller_number),
        "can_call_back": bool(voicemail.caller_number),
        "duration_seconds": voicemail.duration_seconds,
        "transcript_excerpt": transcript_excerpt(voicemail.transcript),
        "created_at": voicemail.created_at.isoformat(),
        "age_seconds": max(0, int((now - voicemail.created_at).total_seconds())),
        "recording_url": recording_url(tenant.slug, voicemail.pk),
        "page_url": page_url(tenant.slug, voicemail.pk),
    }


def voicemails_for_console(*, tenant_ids: list[int], now: dt.datetime) -> tuple[list[dict], int]:
    """The unhandled voicemails of these businesses, oldest first (work order), and how many there are."""
    unhandled = voicemails_unhandled(tenant_ids=tenant_ids)
    items = [voicemail_console_item(v, now) for v in unhandled[:CONSOLE_LIMIT]]
    total = len(items) if len(items) < CONSOLE_LIMIT else unhandled.count()
    return items, total


# --- handling ---------------------------------------------------------------------------------------
def voicemail_handle(*, voicemail: Voicemail, user, now: dt.datetime, action: str = "handled") -> Voicemail:
    """Mark it dealt with by ``user``. One conditional UPDATE: of two people at once, one wins and the
    other gets VoicemailAlreadyHandled."""
    claimed = Voicemail.objects.filter(pk=voicemail.pk, handled_at__isnull=True).update(handled_at=now, handled_by=user)
    if claimed != 1:
        raise VoicemailAlreadyHandled()
    voicemail.handled_at, voicemail.handled_by = now, user
    publish(
        "voicemail.handled",
        {"voicemail_id": voicemail.pk, "handled_by": user.pk, "handled_at": now, "action": action},
        tenant_id=voicemail.tenant_id,
    )
    return voicemail


def voicemail_call_back(*, voicemail: Voicemail, user, now: dt.datetime):
    """Schedule a callback to the caller and mark the voicemail handled, in one transaction.

    Raises VoicemailAlreadyHandled (someone else was first) or VoicemailError (no number to call).
    """
    from conversations.callbacks import CallbackError, callback_schedule

    if not voicemail.caller_number:
        raise VoicemailError("The caller withheld their number: there is no one to call back.")
    excerpt = transcript_excerpt(voicemail.transcript) or "no transcript"
    try:
        with transaction.atomic():
            voicemail_handle(voicemail=voicemail, user=user, now=now, action="callback")
            return callback_schedule(
                tenant_id=voicemail.tenant_id,
                phone=voicemail.caller_number,
                source="voicemail",
                conversation=voicemail.conversation,
                reason="Voicemail: " + excerpt,
                now=now,
            )
    except CallbackError as exc:
        voicemail.handled_at = voicemail.handled_by = None  # rolled back
        raise VoicemailError(f"Could not schedule a call back: {exc}") from exc


# --- e-mail -----------------------------------------------------------------------------------------
def voicemail_email_recipients(*, tenant_id: int) -> list[str]:
    """The business's chosen voicemail address, else its owners and admins."""
    policy = CallbackPolicy.objects.filter(tenant_id=tenant_id).first()
    if policy is not None and policy.voicemail_email:
        return [policy.voicemail_email]
    return tenant_staff_emails(tenant_id=tenant_id)


def voicemail_email_message(voicemail: Voicemail, recipients: list[str]) -> EmailMessage:
    tenant = voicemail.tenant
    caller = caller_display(voicemail.caller_number)
    context = {
        "business": tenant.name,
        "caller": caller,
        "when": local_time_text(voicemail.created_at, tenant.timezone),
        "duration": duration_text(voicemail.duration_seconds),
        "transcript": (voicemail.transcript or "").strip(),
        "url": settings.SITE_URL.rstrip("/") + page_url(tenant.slug, voicemail.pk),
    }
    return EmailMessage(
        subject=f"[Switchboard] New voicemail for {tenant.name} from {caller}",
        body=render_to_string("agents/email/voicemail.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=recipients,
    )


def voicemail_email_send(*, voicemail_id: int, now: dt.datetime, wait_for_transcript: bool = False) -> str:
    """Send the voicemail's e-mail unless it was sent (or is being sent) already.

    Returns "sent", "failed" (claim released, ``email_error`` recorded; the sweep retries), "waiting"
    (a transcript is still expected and it is not ``TRANSCRIPT_WAIT`` old yet) or "done" (nothing to do).
    """
    if wait_for_transcript:
        row = Voicemail.objects.filter(pk=voicemail_id).values("transcript", "created_at").first()
        if row is not None and not row["transcript"] and now < row["created_at"] + TRANSCRIPT_WAIT:
            return "waiting"
    claimed = Voicemail.objects.filter(pk=voicemail_id, emailed_at__isnull=True).update(
        emailed_at=now, email_error=EMAIL_CLAIMED
    )
    if claimed != 1:
        return "done"
    try:
        voicemail = Voicemail.objects.select_related("tenant").get(pk=voicemail_id)
        recipients = voicemail_email_recipients(tenant_id=voicemail.tenant_id)
        if not recipients:
            raise VoicemailError("No address to send it to: set one in the callback and voicemail settings.")
        voicemail_email_message(voicemail, recipients).send(fail_silently=False)
    except Exception as exc:
        error = str(exc) if isinstance(exc, VoicemailError) else f"{type(exc).__name__}: {exc}"
        Voicemail.objects.filter(pk=voicemail_id, emailed_at=now).update(emailed_at=None, email_error=error[:300])
        logger.warning(
            "voicemail e-mail failed; the sweep retries", extra={"voicemail_id": voicemail_id, "error": error}
        )
        return "failed"
    Voicemail.objects.filter(pk=voicemail_id, emailed_at=now).update(email_error="")
    logger.info("voicemail e-mailed", extra={"voicemail_id": voicemail_id, "recipients": len(recipients)})
    return "sent"


def _due_filter(now: dt.datetime) -> Q:
    """Not sent, at most a day old, and either past the transcript wait or a failed send to retry."""
    return Q(emailed_at__isnull=True, created_at__gte=now - EMAIL_RETRY_FOR) & (
        Q(created_at__lte=now - TRANSCRIPT_WAIT) | ~Q(email_error="")
    )


def _stale_claims(now: dt.datetime) -> Q:
    return Q(email_error=EMAIL_CLAIMED, emailed_at__lte=now - CLAIM_STALE_AFTER)


def voicemail_email_tenants_due(*, now: dt.datetime) -> list[int]:
    """Call inside ``unscoped``: the businesses with voicemail e-mails due (for the sweep)."""
    return sorted(
        set(Voicemail.objects.filter(_due_filter(now) | _stale_claims(now)).values_list("tenant_id", flat=True))
    )


def voicemail_emails_send_due(*, now: dt.datetime) -> Counter:
    """In the current scope: release stale claims, then send every due e-mail (oldest first)."""
    released = Voicemail.objects.filter(_stale_claims(now)).update(
        emailed_at=None, email_error="Sending was interrupted; retrying."
    )
    counts: Counter = Counter(released=released)
    due = list(Voicemail.objects.filter(_due_filter(now)).order_by("created_at").values_list("pk", flat=True))
    for voicemail_id in due[:SWEEP_BATCH]:
        counts[voicemail_email_send(voicemail_id=voicemail_id, now=now)] += 1
    return counts


# --- hook subscribers (registered in AgentsConfig.ready) -----------------------------------------
def on_voicemail_recorded(voicemail: Voicemail, transcript_expected: bool) -> None:
    """Tell the business's consoles, and e-mail it now (or once the transcript is in, at most 2 min)."""
    from agents.tasks import voicemail_email_task

    with tenant_scope([voicemail.tenant_id]):
        publish(
            "voicemail.new",
            {
                "voicemail_id": voicemail.pk,
                "caller_number": caller_display(voicemail.caller_number),
                "duration_seconds": voicemail.duration_seconds,
                "created_at": voicemail.created_at,
            },
            tenant_id=voicemail.tenant_id,
        )
        kwargs = {"tenant_id": voicemail.tenant_id, "voicemail_id": voicemail.pk}
        if transcript_expected:
            # A short countdown (well under the broker's visibility timeout); the sweep is the safety net.
            countdown = int(TRANSCRIPT_WAIT.total_seconds()) + 1
            transaction.on_commit(
                lambda: voicemail_email_task.apply_async(
                    kwargs={**kwargs, "wait_for_transcript": True}, countdown=countdown
                )
            )
        else:
            transaction.on_commit(lambda: voicemail_email_task.apply_async(kwargs=kwargs))


def on_voicemail_transcribed(voicemail: Voicemail) -> None:
    from agents.tasks import voicemail_email_task

    with tenant_scope([voicemail.tenant_id]):
        publish("voicemail.transcribed", {"voicemail_id": voicemail.pk}, tenant_id=voicemail.tenant_id)
        kwargs = {"tenant_id": voicemail.tenant_id, "voicemail_id": voicemail.pk}
        transaction.on_commit(lambda: voicemail_email_task.apply_async(kwargs=kwargs))
