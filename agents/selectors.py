"""Reads about live work. Callers are inside a tenant scope (a door entered it)."""

from __future__ import annotations

import datetime as dt

from django.db.models import QuerySet

from agents.models import UNCLAIMED_STATES, Escalation, EscalationKind, EscalationOffer, OfferOutcome


def waiting_work(*, tenant_ids: list[int], now: dt.datetime) -> QuerySet[Escalation]:
    """Unclaimed escalations in the order they should be worked: higher priority, then longest waiting."""
    return (
        Escalation.objects.filter(tenant_id__in=tenant_ids, state__in=UNCLAIMED_STATES, created_at__lte=now)
        .select_related("queue", "tenant", "conversation", "callback", "callback_attempt")
        .order_by("-priority", "created_at", "id")
    )


def pending_offers_for_agent(*, agent_id: int) -> QuerySet[EscalationOffer]:
    return EscalationOffer.objects.filter(agent_id=agent_id, outcome=OfferOutcome.PENDING).select_related("escalation")


def wallboard_figures(*, tenant_id: int, now: dt.datetime) -> dict:
    """A supervisor's live figures for one tenant (the tenant must be in scope).

    Per queue: unclaimed escalations and the longest wait; today's (in the tenant's time zone)
    live escalations that arrived in business hours (the tenant's calendar) and how many were accepted
    within the queue's ``service_level_seconds``. The
    service level is met / (today's escalations minus those still unclaimed and not yet past the
    threshold, since they can still make it), counted in SQL. People: everyone with an agent
    profile who acts for the tenant (members and agents of agencies with active coverage).
    """
    import functools
    import operator
    import zoneinfo

    from django.db.models import Count, F, Min, Q

    from agents.models import HELD_STATES, AgentProfile, EscalationKind, Presence, PresenceState
    from flows.hours import open_intervals
    from flows.models import Queue
    from flows.runtime import tenant_calendar
    from tenants.models import AgencyMembership, Coverage, Membership, Tenant

    tenant = Tenant.objects.get(pk=tenant_id)
    local_now = now.astimezone(zoneinfo.ZoneInfo(tenant.timezone))
    day_start = local_now.replace(hour=0, minute=0, second=0, microsecond=0)
    queues = list(Queue.objects.filter(tenant_id=tenant_id).order_by("name"))
    waiting = {
        row["queue_id"]: row
        for row in Escalation.objects.filter(tenant_id=tenant_id, state__in=UNCLAIMED_STATES, created_at__lte=now)
        .order_by()
        .values("queue_id")
        .annotate(n=Count("id"), oldest=Min("created_at"))
    }
    today: dict[int, dict] = {}
    if queues:
        met = functools.reduce(
            operator.or_,
            (
                Q(queue_id=q.pk, accepted_at__isnull=False)
                & Q(accepted_at__lte=F("created_at") + dt.timedelta(seconds=q.service_level_seconds))
                for q in queues
            ),
        )
        undecided = functools.reduce(
            operator.or_,
            (
                Q(
                    queue_id=q.pk,
                    state__in=UNCLAIMED_STATES,
                    created_at__gt=now - dt.timedelta(seconds=q.service_level_seconds),
                )
                for q in queues
            ),
        )
        # The service-level clock runs in business hours only (the tenant's one calendar): live contacts
        # that arrived while closed are handled by coverage or become callbacks, and are not counted.
        open_spans = open_intervals(tenant_calendar(tenant), day_start, now)
        in_hours = functools.reduce(
            operator.or_, (Q(created_at__gte=s, created_at__lt=e) for s, e in open_spans), Q(pk__in=[])
        )
        today = {
            row["queue_id"]: row
            for row in Escalation.objects.filter(
                in_hours, tenant_id=tenant_id, kind=EscalationKind.LIVE, created_at__gte=day_start, created_at__lte=now
            )
            .order_by()
            .values("queue_id")
            .annotate(
                total=Count("id"),
                met=Count("id", filter=met),
                undecided=Count("id", filter=undecided),
                accepted=Count("id", filter=Q(accepted_at__isnull=False)),
            )
        }
    rows = []
    for q in queues:
        w = waiting.get(q.pk, {})
        t = today.get(q.pk, {})
        counted = t.get("total", 0) - t.get("undecided", 0)
        oldest = w.get("oldest")
        rows.append(
            {
                "queue_id": q.pk,
                "name": q.name,
                "waiting": w.get("n", 0),
                "longest_wait_seconds": max(0, int((now - oldest).total_seconds())) if oldest else 0,
                "oldest_since": oldest.isoformat() if oldest else None,
                "service_level_seconds": q.service_level_seconds,
                "today_total": t.get("total", 0),
                "today_accepted": t.get("accepted", 0),
                "sl_met": t.get("met", 0),
                "sl_counted": counted,
                "service_level": round(100 * t.get("met", 0) / counted, 1) if counted > 0 else None,
            }
        )

    agency_ids = list(Coverage.objects.filter(tenant_id=tenant_id, active=True).values_list("agency_id", flat=True))
    member_ids = set(Membership.objects.filter(tenant_id=tenant_id).values_list("user_id", flat=True))
    agency_ids_of_user = set(
        AgencyMembership.objects.filter(agency_id__in=agency_ids).values_list("user_id", flat=True)
    )
    profiles = AgentProfile.objects.filter(
        user_id__in=member_ids | agency_ids_of_user, user__is_active=True
    ).select_related("user")
    presence = {p.user_id: p for p in Presence.objects.filter(user_id__in=[p.user_id for p in profiles])}
    holding = dict(
        Escalation.objects.filter(tenant_id=tenant_id, state__in=HELD_STATES, agent__isnull=False)
        .order_by()
        .values("agent_id")
        .annotate(n=Count("id"))
        .values_list("agent_id", "n")
    )
    agents = []
    by_state = {s.value: 0 for s in PresenceState}
    for profile in profiles:
        p = presence.get(profile.user_id)
        state = p.state if p else PresenceState.OFFLINE.value
        by_state[state] = by_state.get(state, 0) + 1
        agents.append(
            {
                "user_id": profile.user_id,
                "name": profile.user.get_full_name(),
                "state": state,
                "reason": p.reason if p else "",
                "since": p.since.isoformat() if p else None,
                "via": "member" if profile.user_id in member_ids else "agency",
                "handling": holding.get(profile.user_id, 0),
            }
        )
    order = {s.value: n for n, s in enumerate(PresenceState)}
    agents.sort(key=lambda a: (order.get(a["state"], 9), a["name"].lower()))
    from conversations.models import Callback, CallbackState

    callbacks = Callback.objects.filter(
        tenant_id=tenant_id, state__in=(CallbackState.SCHEDULED, CallbackState.QUEUED)
    ).aggregate(
        scheduled=Count("id", filter=Q(state=CallbackState.SCHEDULED)),
        due=Count("id", filter=Q(state=CallbackState.QUEUED)),
        overdue=Count("id", filter=Q(overdue_at__isnull=False)),
    )
    return {
        "tenant_id": tenant_id,
        "now": now.isoformat(),
        "callbacks": callbacks,
        "day_start": day_start.isoformat(),
        "queues": rows,
        "agents": agents,
        "agents_by_state": by_state,
        "waiting_total": sum(r["waiting"] for r in rows),
    }


def iso(value) -> str | None:
    return value.isoformat() if value else None


def seconds_since(value, now) -> int:
    return max(0, int((now - value).total_seconds())) if value else 0


def console_item(escalation: Escalation, now, place: int | None = None) -> dict:
    """How the agent console shows one piece of unclaimed or held work (the snapshot's lists, and the item an
    ``escalation.waiting`` event carries so a console can add it without re-reading its state)."""
    return {
        "escalation_id": escalation.pk,
        "tenant_id": escalation.tenant_id,
        "tenant_name": escalation.tenant.name,
        "queue_id": escalation.queue_id,
        "queue_name": escalation.queue.name,
        "state": escalation.state,
        "priority": escalation.priority,
        "reason_code": escalation.reason_code,
        "reason_text": escalation.reason_text,
        "waiting_since": iso(escalation.created_at),
        "wait_seconds": seconds_since(escalation.created_at, now),
        "place": place,
        "kind": escalation.kind,
        "callback": _callback_info(escalation, now) if escalation.kind == EscalationKind.CALLBACK else None,
    }


def _callback_info(escalation: Escalation, now) -> dict:
    callback = escalation.callback
    attempt = escalation.callback_attempt
    return {
        "callback_id": callback.pk,
        "phone": callback.phone,
        "name": callback.name,
        "due_at": iso(callback.due_at),
        "overdue_seconds": seconds_since(callback.due_at, now),
        "attempt": attempt.number if attempt else callback.attempts,
        "max_attempts": callback.max_attempts,
        "last_outcome": callback.last_outcome,
        "reason": callback.reason,
        "agent_leg": attempt.agent_leg_status if attempt else "",
        "customer_leg": attempt.customer_status if attempt else "",
        "can_dial": bool(attempt and not attempt.customer_status and attempt.agent_leg_status in ("", "failed")),
    }
