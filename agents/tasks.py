"""Celery tasks for live work: thin, ids in, scopes entered explicitly.

The two periodic tasks are platform-wide: they use ``unscoped`` only to list the tenants that
have due work, then do each tenant's work inside ``tenant_scope([tenant_id])``.
"""

from __future__ import annotations

import datetime as dt
import logging

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from tenants.scoping import tenant_scope, unscoped
from tenants.tasks import TenantTask

logger = logging.getLogger(__name__)


@shared_task(name="agents.tasks.escalation_route", base=TenantTask)
def escalation_route_task(*, tenant_id: int, escalation_id: int) -> int:
    from agents.models import Escalation
    from agents.services import escalation_route

    escalation = Escalation.objects.filter(pk=escalation_id).first()
    if escalation is None:
        return 0
    return len(escalation_route(escalation=escalation, now=timezone.now()))


@shared_task(name="agents.tasks.offers_expire", acks_late=True)
def offers_expire_task() -> int:
    """Every few seconds: time out offers, re-offer them, and offer waiting work, tenant by tenant."""
    from agents.models import UNCLAIMED_STATES, Escalation, EscalationOffer, OfferOutcome
    from agents.services import offers_expire

    now = timezone.now()
    with unscoped("list the tenants with due offers or waiting escalations"):
        due = set(
            EscalationOffer.objects.filter(outcome=OfferOutcome.PENDING, expires_at__lte=now)
            .values_list("tenant_id", flat=True)
            .distinct()
        )
        waiting = set(
            Escalation.objects.filter(state__in=UNCLAIMED_STATES).values_list("tenant_id", flat=True).distinct()
        )
    timed_out = 0
    for tenant_id in sorted(due | waiting):
        try:
            with tenant_scope([tenant_id]):
                timed_out += offers_expire(now=now)
        except Exception:
            # One tenant's failure must not stop every other tenant's routing.
            logger.exception("offers_expire failed", extra={"tenant_id": tenant_id})
    return timed_out


@shared_task(name="agents.tasks.presence_sweep", acks_late=True)
def presence_sweep_task() -> int:
    """Every few seconds: people without a heartbeat go offline; their pending offers go to others."""
    from agents.models import EscalationOffer, OfferOutcome
    from agents.services import offers_withdraw_for_agents, presence_sweep

    now = timezone.now()
    swept = presence_sweep(now=now)  # per-user rows: no tenant scope involved
    if not swept:
        return 0
    with unscoped("list the tenants with offers pending for agents who went offline"):
        tenant_ids = set(
            EscalationOffer.objects.filter(outcome=OfferOutcome.PENDING, agent_id__in=swept)
            .values_list("tenant_id", flat=True)
            .distinct()
        )
    for tenant_id in sorted(tenant_ids):
        try:
            with tenant_scope([tenant_id]):
                offers_withdraw_for_agents(agent_ids=swept, now=now)
        except Exception:
            logger.exception("withdrawing offers of offline agents failed", extra={"tenant_id": tenant_id})
    return len(swept)


@shared_task(name="agents.tasks.escalation_dial", base=TenantTask, bind=True, max_retries=3)
def escalation_dial_task(self, *, tenant_id: int, escalation_id: int, attempt: int) -> str | None:
    """After an accept: ring the agent into the caller's conversation (idempotent per attempt).

    A temporary Vonage failure is retried (same idempotency key); a permanent one, or the last retry,
    puts the escalation back in the queue so the caller is not left waiting for nobody.
    """
    from agents.models import Escalation
    from agents.services import escalation_requeue
    from agents.voice import agent_dial
    from telephony.client import TelephonyError

    try:
        return agent_dial(escalation_id=escalation_id, attempt=attempt)
    except TelephonyError as exc:
        if exc.retryable and self.request.retries < self.max_retries:
            # throw=False: the retry message is sent and this run ends quietly (an eager run, as in tests,
            # does not re-run a retry that is not raised: run it here).
            retry = self.retry(exc=exc, countdown=2**self.request.retries, throw=False)
            if self.request.is_eager and retry.sig is not None:
                retry.sig.apply()
            return None
        logger.warning("could not ring the agent; back to the queue", extra={"escalation_id": escalation_id})
        escalation = Escalation.objects.filter(pk=escalation_id).first()
        if escalation is not None:
            escalation_requeue(escalation=escalation, now=timezone.now(), attempt=attempt)
        return None


@shared_task(name="agents.tasks.queue_announce", acks_late=True)
def queue_announce_task() -> dict[str, int]:
    """Every 30 s: tell waiting callers their place in line; past the queue's max wait, voicemail."""
    from agents.models import UNCLAIMED_STATES, Escalation
    from agents.voice import queue_announce

    now = timezone.now()
    with unscoped("list the tenants with callers waiting for a person"):
        tenant_ids = set(
            Escalation.objects.filter(state__in=UNCLAIMED_STATES, kind="live", conversation__channel="voice")
            .exclude(conversation__vonage_uuid__isnull=True)
            .values_list("tenant_id", flat=True)
            .distinct()
        )
    totals = {"announced": 0, "expired": 0}
    for tenant_id in sorted(tenant_ids):
        try:
            with tenant_scope([tenant_id]):
                for key, value in queue_announce(now=now).items():
                    totals[key] += value
        except Exception:
            logger.exception("queue announcements failed", extra={"tenant_id": tenant_id})
    return totals


@shared_task(name="agents.tasks.voicemail_email", base=TenantTask)
def voicemail_email_task(*, tenant_id: int, voicemail_id: int, wait_for_transcript: bool = False) -> str:
    """E-mail one voicemail to its business (idempotent: the row is claimed, so it goes out once)."""
    from agents.voicemails import voicemail_email_send

    return voicemail_email_send(voicemail_id=voicemail_id, now=timezone.now(), wait_for_transcript=wait_for_transcript)


@shared_task(name="agents.tasks.voicemail_email_sweep", acks_late=True)
def voicemail_email_sweep_task() -> dict[str, int]:
    """Every minute: e-mail voicemails whose transcript did not come within 2 minutes, retry failed sends."""
    from agents.voicemails import voicemail_email_tenants_due, voicemail_emails_send_due

    now = timezone.now()
    with unscoped("list the tenants with voicemail e-mails due"):
        tenant_ids = voicemail_email_tenants_due(now=now)
    totals: dict[str, int] = {}
    for tenant_id in tenant_ids:
        try:
            with tenant_scope([tenant_id]):
                for key, value in voicemail_emails_send_due(now=now).items():
                    totals[key] = totals.get(key, 0) + value
        except Exception:
            logger.exception("voicemail e-mail sweep failed", extra={"tenant_id": tenant_id})
    return totals


# --- callbacks -------------------------------------------------------------------------------------------
@shared_task(name="agents.tasks.callbacks_dispatch", acks_late=True)
def callbacks_dispatch_task() -> int:
    """Every minute: claim due callbacks tenant by tenant and offer them to agents; flag overdue ones.

    Due work lives in the database (``Callback.due_at``), never in a Celery ETA: a lost message, a
    restarted broker or a killed worker only delays a callback until the next run.
    """
    from agents.callbacks import callbacks_dispatch, callbacks_flag_overdue, dispatch_triggers_schedule
    from conversations.models import Callback, CallbackState

    now = timezone.now()
    horizon = now + dt.timedelta(seconds=settings.CALLBACK_DISPATCH_SECONDS)
    with unscoped("list the tenants with due, overdue or soon due callbacks"):
        tenant_ids = set(
            Callback.objects.filter(
                state__in=(CallbackState.SCHEDULED, CallbackState.QUEUED), due_at__lte=horizon
            ).values_list("tenant_id", flat=True)
        )
    dispatched = 0
    for tenant_id in sorted(tenant_ids):
        try:
            with tenant_scope([tenant_id]):
                dispatched += len(callbacks_dispatch(now=now))
                callbacks_flag_overdue(now=now)
                # Those falling due before the next run are dispatched at their own second, not up to a
                # period late (a burst due at opening is offered at opening).
                dispatch_triggers_schedule(now=now)
        except Exception:
            logger.exception("callback dispatch failed", extra={"tenant_id": tenant_id})
    return dispatched


@shared_task(name="agents.tasks.callbacks_dispatch_tenant", base=TenantTask)
def callbacks_dispatch_tenant_task(*, tenant_id: int) -> int:
    """A callback that is due already (asked for while open) is offered now, not on the next minute."""
    from agents.callbacks import callbacks_dispatch

    return len(callbacks_dispatch(now=timezone.now()))


@shared_task(name="agents.tasks.callback_dial", base=TenantTask, bind=True, max_retries=3)
def callback_dial_task(self, *, tenant_id: int, attempt_id: int, ring: int) -> str | None:
    """After "Call back": ring the agent, who is then bridged to the customer (one call per attempt and
    ring: the idempotency key is the attempt's ``dial_key``). Temporary Vonage failures are retried with
    the same key; otherwise the agent is told and may press "Call back" again."""
    from django.core.exceptions import PermissionDenied

    from agents.callbacks import callback_dial_failed, callback_dial_release, callback_dial_run
    from telephony.client import TelephonyError

    try:
        return callback_dial_run(attempt_id=attempt_id, ring=ring)
    except TelephonyError as exc:
        if exc.retryable and self.request.retries < self.max_retries:
            callback_dial_release(attempt_id=attempt_id, ring=ring)
            retry = self.retry(exc=exc, countdown=2**self.request.retries, throw=False)
            if self.request.is_eager and retry.sig is not None:
                retry.sig.apply()
            return None
        callback_dial_failed(attempt_id=attempt_id, ring=ring, reason=str(exc))
    except PermissionDenied as exc:
        callback_dial_failed(attempt_id=attempt_id, ring=ring, reason=str(exc))
    return None


@shared_task(name="agents.tasks.callback_sms", base=TenantTask, bind=True, max_retries=5)
def callback_sms_task(self, *, tenant_id: int, callback_id: int) -> str | None:
    """Text the caller when we will call back (once; temporary Vonage failures retried with backoff)."""
    from agents.callbacks import callback_sms_send
    from telephony.client import TelephonyError

    try:
        return callback_sms_send(callback_id=callback_id)
    except TelephonyError as exc:
        if self.request.retries < self.max_retries:
            retry = self.retry(exc=exc, countdown=5 * 2**self.request.retries, throw=False)
            if self.request.is_eager and retry.sig is not None:
                retry.sig.apply()
        return None


@shared_task(name="agents.tasks.escalation_offer_callback", base=TenantTask)
def escalation_offer_callback_task(*, tenant_id: int, escalation_id: int, source: str) -> bool:
    """A caller escalated while closed with nobody covering: offer a callback (or voicemail) now."""
    from agents.models import UNCLAIMED_STATES, Escalation
    from agents.voice import closed_and_uncovered, offer_callback_to_caller

    escalation = (
        Escalation.objects.select_related("conversation", "tenant", "queue")
        .filter(pk=escalation_id, state__in=UNCLAIMED_STATES)
        .first()
    )
    if escalation is None or escalation.conversation.ended_at is not None:
        return False
    if not closed_and_uncovered(escalation):
        return False  # someone came online (or coverage started) meanwhile: the caller keeps waiting
    return offer_callback_to_caller(escalation=escalation, now=timezone.now(), source=source)


@shared_task(name="agents.tasks.route_waiting", base=TenantTask)
def route_waiting_task(*, tenant_id: int) -> int:
    """Offer this business's waiting work now (an agent just became free, or callbacks were dispatched)."""
    from django.core.cache import cache

    from agents.services import route_pass_key, waiting_work_route

    cache.delete(route_pass_key(tenant_id))  # requests from now on queue another pass (services.request_routing_pass)
    return waiting_work_route(tenant_ids=[tenant_id], now=timezone.now())


@shared_task(name="agents.tasks.chat_visitor_gone", base=TenantTask)
def chat_visitor_gone_task(*, tenant_id: int, conversation_id: int) -> bool:
    """A minute after a chat visitor's last tab closed: if they did not come back, abandon their waiting."""
    from agents.webchat import chat_visitor_gone

    return chat_visitor_gone(conversation_id=conversation_id)
