"""Celery tasks for live work: thin, ids in, scopes entered explicitly.

The two periodic tasks are platform-wide: they use ``unscoped`` only to list the tenants that
have due work, then do each tenant's work inside ``tenant_scope([tenant_id])``.
"""

from __future__ import annotations

import logging

from celery import shared_task
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
            Escalation.objects.filter(state__in=UNCLAIMED_STATES, conversation__channel="voice")
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
