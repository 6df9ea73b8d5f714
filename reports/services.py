"""Writes of the reports app other than the rollups (``reports.rollup``): acting on the unmatched
review (a draft change to the script, published later by an admin) and the weekly digest e-mail.

Every function runs inside a tenant scope entered by a door (page, task).
"""

from __future__ import annotations

import datetime as dt
import logging
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import transaction
from django.db.models import Max, Sum
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify

from flows.models import Faq, Flow, Intent, key_validator, lines
from flows.nlu_text import normalize
from reports.models import DigestSent, UnmatchedAction, UnmatchedDaily, UnmatchedHandled
from reports.selectors import Period, report_summary, report_unmatched
from tenants.models import Membership, Role, Tenant, User

logger = logging.getLogger(__name__)

MAX_KEYS = 100
DIGEST_CLAIM_TIMEOUT = dt.timedelta(minutes=15)
DIGEST_LOCAL_HOUR = 7


# --- the unmatched review -----------------------------------------------------------------------------
def _examples(*, tenant_id: int, flow: Flow, keys: list[str]) -> list[str]:
    """The questions as callers said them, for texts that really are in this flow's review (most asked
    first). Keys from the form are checked against the rollup, so nothing else can be injected."""
    wanted = sorted({k.strip().lower()[:300] for k in keys if k and k.strip()})[:MAX_KEYS]
    rows = (
        UnmatchedDaily.objects.filter(tenant_id=tenant_id, flow_id=flow.pk, text__in=wanted)
        .order_by()
        .values("text")
        .annotate(said=Max("example"), n=Sum("turns"))
        .order_by("-n", "text")
    )
    said = [row["said"].strip() for row in rows if row["said"].strip()]
    if not said:
        raise ValidationError("These questions are no longer in the review (reload the page to see the current ones).")
    return said


def _mark_handled(
    *, tenant_id: int, flow: Flow, said: list[str], action: str, target: str, user: User | None, now: dt.datetime
) -> None:
    for norm in sorted({normalize(text)[:300] or text.lower()[:300] for text in said}):
        UnmatchedHandled.objects.update_or_create(
            tenant_id=tenant_id,
            flow=flow,
            text=norm,
            defaults={"action": action, "target": target[:100], "handled_by": user, "handled_at": now},
        )


def unmatched_add_examples(
    *, tenant_id: int, flow: Flow, intent: Intent, keys: list[str], user: User | None, now: dt.datetime | None = None
) -> list[str]:
    """Add a group's questions to a draft intent's examples (skipping ones it has); returns those added.

    Only the draft changes: callers keep hearing the live version until an admin publishes.
    """
    now = now or timezone.now()
    if intent.flow_id != flow.pk or intent.tenant_id != tenant_id:
        raise ValidationError("Choose an intent of the same script.")
    said = _examples(tenant_id=tenant_id, flow=flow, keys=keys)
    with transaction.atomic():
        intent = Intent.objects.select_for_update().get(pk=intent.pk, tenant_id=tenant_id)
        current = lines(intent.examples)
        seen = {normalize(line) for line in current}
        added = []
        for text in said:
            if normalize(text) not in seen:
                seen.add(normalize(text))
                added.append(text)
        if added:
            intent.examples = "\n".join([*current, *added])
            intent.save(update_fields=["examples"])
        _mark_handled(
            tenant_id=tenant_id,
            flow=flow,
            said=said,
            action=UnmatchedAction.INTENT_EXAMPLE,
            target=intent.name,
            user=user,
            now=now,
        )
    return added


def _faq_key(flow: Flow, wanted: str, first_question: str) -> str:
    base = slugify(wanted or first_question)[:50].strip("-") or "question"
    if not base[0].isalpha():
        base = f"faq-{base}"[:50]
    key, n = base, 2
    while Faq.objects.filter(flow=flow, key=key).exists():
        key, n = f"{base}-{n}", n + 1
    return key


def unmatched_new_faq(
    *,
    tenant_id: int,
    flow: Flow,
    keys: list[str],
    answer: str,
    key: str = "",
    user: User | None,
    now: dt.datetime | None = None,
) -> Faq:
    """Make a group's questions a new FAQ of the flow's draft, with the approved answer given."""
    now = now or timezone.now()
    answer = (answer or "").strip()
    if not answer:
        raise ValidationError({"answer": "Write the approved answer callers will hear, word for word."})
    if key:
        try:
            key_validator(key)
        except ValidationError as exc:
            raise ValidationError({"key": exc.messages}) from exc
    said = _examples(tenant_id=tenant_id, flow=flow, keys=keys)
    with transaction.atomic():
        faq = Faq(tenant_id=tenant_id, flow=flow, key=_faq_key(flow, key, said[0]), questions="\n".join(said))
        faq.answer = answer
        faq.full_clean()
        faq.save()
        _mark_handled(
            tenant_id=tenant_id,
            flow=flow,
            said=said,
            action=UnmatchedAction.NEW_FAQ,
            target=faq.key,
            user=user,
            now=now,
        )
    return faq


def unmatched_dismiss(
    *, tenant_id: int, flow: Flow, keys: list[str], user: User | None, now: dt.datetime | None = None
) -> int:
    """Take a group out of the review without changing the script (not worth answering)."""
    said = _examples(tenant_id=tenant_id, flow=flow, keys=keys)
    _mark_handled(
        tenant_id=tenant_id,
        flow=flow,
        said=said,
        action=UnmatchedAction.DISMISSED,
        target="",
        user=user,
        now=now or timezone.now(),
    )
    return len(said)


# --- the weekly digest ------------------------------------------------------------------------------
def digest_week_start(tenant: Tenant, now: dt.datetime) -> dt.date:
    """The Monday of the last complete local week (Monday to Sunday) before ``now``."""
    today = now.astimezone(ZoneInfo(tenant.timezone)).date()
    return today - dt.timedelta(days=today.weekday() + 7)


def digest_is_due(tenant: Tenant, now: dt.datetime) -> bool:
    """From 07:00 local on the Monday after the week; never for a week before the business existed."""
    local = now.astimezone(ZoneInfo(tenant.timezone))
    week_end = digest_week_start(tenant, now) + dt.timedelta(days=7)
    if local.date() == week_end and local.hour < DIGEST_LOCAL_HOUR:
        return False
    created = tenant.created_at.astimezone(ZoneInfo(tenant.timezone)).date() if tenant.created_at else None
    return created is None or created < week_end


def digest_recipients(tenant_id: int) -> list[str]:
    return sorted(
        set(
            Membership.objects.filter(tenant_id=tenant_id, role__in=[Role.OWNER, Role.ADMIN], user__is_active=True)
            .values_list("user__email", flat=True)
            .order_by()
        )
    )


def digest_context(*, tenant: Tenant, week_start: dt.date) -> dict:
    period = Period(
        key="week",
        label=f"Week of {week_start:%B} {week_start.day}",
        start=week_start,
        end=week_start + dt.timedelta(days=6),
    )
    summary = report_summary(tenant=tenant, period=period)
    site = settings.SITE_URL
    return {
        "tenant": tenant,
        "period": period,
        "totals": summary["totals"],
        "reasons": summary["reasons"][:5],
        "unmatched": report_unmatched(tenant=tenant, period=period, limit=5, examples=3),
        "reports_url": f"{site}{reverse('reports-dashboard', args=[tenant.slug])}?period=7d",
        "review_url": f"{site}{reverse('reports-unmatched', args=[tenant.slug])}?period=30d",
    }


def digest_send(*, tenant: Tenant, week_start: dt.date, now: dt.datetime | None = None) -> bool:
    """Send one week's digest to the business's owners and admins, once (True when this call sent it).

    The (tenant, week) row is claimed first; a claim older than 15 minutes without ``sent_at`` (a
    worker died mid-send) may be taken over, so a digest is neither lost nor sent twice in practice.
    """
    now = now or timezone.now()
    with transaction.atomic():
        row, created = DigestSent.objects.get_or_create(
            tenant_id=tenant.id, week_start=week_start, defaults={"claimed_at": now}
        )
        if not created:
            if row.sent_at is not None or row.claimed_at > now - DIGEST_CLAIM_TIMEOUT:
                return False
            taken = DigestSent.objects.filter(pk=row.pk, sent_at__isnull=True, claimed_at=row.claimed_at).update(
                claimed_at=now
            )
            if taken != 1:
                return False  # another worker took it over
    recipients = digest_recipients(tenant.id)
    if recipients:
        context = digest_context(tenant=tenant, week_start=week_start)
        subject = f"{settings.ACCOUNT_EMAIL_SUBJECT_PREFIX}{tenant.name}: your week ({context['period'].label})"
        text = render_to_string("reports/email/digest.txt", context)
        html = render_to_string("reports/email/digest.html", context)
        connection = get_connection()
        messages = []
        for address in recipients:
            message = EmailMultiAlternatives(
                subject, text, settings.DEFAULT_FROM_EMAIL, [address], connection=connection
            )
            message.attach_alternative(html, "text/html")
            messages.append(message)
        connection.send_messages(messages)
    DigestSent.objects.filter(pk=row.pk).update(sent_at=timezone.now(), recipients=len(recipients))
    logger.info("weekly digest sent", extra={"week_start": week_start.isoformat(), "recipients": len(recipients)})
    return True
