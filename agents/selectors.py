"""Reads about live work. Callers are inside a tenant scope (a door entered it)."""

from __future__ import annotations

import datetime as dt

from django.db.models import QuerySet

from agents.models import UNCLAIMED_STATES, Escalation, EscalationOffer, OfferOutcome


def waiting_work(*, tenant_ids: list[int], now: dt.datetime) -> QuerySet[Escalation]:
    """Unclaimed escalations in the order they should be worked: higher priority, then longest waiting."""
    return (
        Escalation.objects.filter(tenant_id__in=tenant_ids, state__in=UNCLAIMED_STATES, created_at__lte=now)
        .select_related("queue", "tenant")
        .order_by("-priority", "created_at", "id")
    )


def pending_offers_for_agent(*, agent_id: int) -> QuerySet[EscalationOffer]:
    return EscalationOffer.objects.filter(agent_id=agent_id, outcome=OfferOutcome.PENDING).select_related("escalation")
