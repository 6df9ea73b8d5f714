"""Who may take an escalation right now, and in which order (longest idle first).

Eligible people act for the escalation's tenant:
- members of any role with an ``AgentProfile`` (the profile is the opt-in to take live work);
- members of agencies with *active* coverage whose mode applies at ``now``: ``always``;
  ``after_hours`` when the tenant's calendar (``flows.hours``) is not open; ``overflow`` when the
  queue's ``overflow_after_seconds`` have passed since the escalation started waiting, or when
  ``overflow_when_no_agents`` is set and no in-house agent is available;
and each of them must have every required skill (the queue's and the escalation's), be
``available`` with a heartbeat in the last 30 seconds, and hold fewer accepted/connected
escalations (in any tenant) than their capacity; for a live phone call, also a usable phone number or
a Vonage app user to ring them on (a web chat or a callback needs neither here).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import Count

from agents.models import HELD_STATES, AgentProfile, Escalation, Presence, PresenceState
from flows.hours import status_at
from flows.runtime import tenant_calendar
from tenants.models import AgencyMembership, Coverage, CoverageMode, Membership, Tenant
from tenants.scoping import unscoped

HEARTBEAT_FRESH = dt.timedelta(seconds=30)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class EligibleAgent:
    user_id: int
    idle_since: dt.datetime
    via_agency_id: int | None = None
    coverage_mode: str | None = None


def tenant_is_closed(tenant: Tenant, now: dt.datetime) -> bool:
    """Closed or holiday per the tenant's one calendar (needs the tenant in scope)."""
    return status_at(tenant_calendar(tenant), now) != "open"


def required_skills(escalation: Escalation) -> set[str]:
    return {str(s) for s in (escalation.queue.required_skills or [])} | {str(s) for s in (escalation.skills or [])}


def _reachable(profile: AgentProfile) -> bool:
    """The agent can be rung into a call: a usable phone number or a Vonage app user."""
    from telephony.ncco import digits_only

    return bool((profile.app_user or "").strip() or digits_only((profile.phone_number or "").strip()))


def needs_phone(escalation: Escalation) -> bool:
    """A live phone call: whoever takes it is rung into it, so they need a number or an app user."""
    conversation = escalation.conversation
    return escalation.kind == "live" and conversation.channel == "voice" and bool(conversation.vonage_uuid)


def held_counts(user_ids) -> dict[int, int]:
    """How many accepted/connected escalations each of these people holds, in every tenant they answer for
    (capacity counts all of them); only counts leave the unscoped block."""
    with unscoped("agent load is counted across all tenants the agent works for"):
        return dict(
            Escalation.objects.filter(agent_id__in=list(user_ids), state__in=HELD_STATES)
            .values("agent_id")
            .annotate(n=Count("id"))
            .values_list("agent_id", "n")
        )


def has_free_slot(user_id: int) -> bool:
    """The person holds fewer escalations than their profile's capacity (no profile: no slot)."""
    capacity = AgentProfile.objects.filter(user_id=user_id).values_list("capacity", flat=True).first() or 0
    return held_counts([user_id]).get(user_id, 0) < capacity


def _ready(
    user_ids: set[int], *, skills: set[str], now: dt.datetime, reachable_only: bool = False
) -> dict[int, dt.datetime]:
    """Of these users, the ones able to take work now, with the moment they became idle."""
    if not user_ids:
        return {}
    presence = dict(
        Presence.objects.filter(
            user_id__in=user_ids, state=PresenceState.AVAILABLE, last_heartbeat__gte=now - HEARTBEAT_FRESH
        ).values_list("user_id", "since")
    )
    profiles = AgentProfile.objects.filter(user_id__in=presence.keys(), user__is_active=True)
    load = held_counts(presence.keys())
    ready: dict[int, dt.datetime] = {}
    for profile in profiles:
        if not skills <= {str(s) for s in (profile.skills or [])}:
            continue
        if load.get(profile.user_id, 0) >= profile.capacity:
            continue
        if reachable_only and not _reachable(profile):
            continue
        ready[profile.user_id] = max(presence[profile.user_id], profile.last_offer_at or _EPOCH)
    return ready


def _coverage_applies(
    coverage: Coverage, *, escalation: Escalation, now: dt.datetime, in_house_available: bool, closed: bool
) -> bool:
    if coverage.mode == CoverageMode.ALWAYS:
        return True
    if coverage.mode == CoverageMode.AFTER_HOURS:
        return closed
    if coverage.mode == CoverageMode.OVERFLOW:
        queue = escalation.queue
        waited = (now - escalation.created_at).total_seconds()
        if queue.overflow_after_seconds is not None and waited >= queue.overflow_after_seconds:
            return True
        return bool(queue.overflow_when_no_agents and not in_house_available)
    return False


def eligible_agents(*, escalation: Escalation, now: dt.datetime) -> list[EligibleAgent]:
    """Everyone who may take this escalation at ``now``, longest idle first."""
    tenant_id = escalation.tenant_id
    skills = required_skills(escalation)
    phone = needs_phone(escalation)
    members = set(Membership.objects.filter(tenant_id=tenant_id).values_list("user_id", flat=True))
    in_house = _ready(members, skills=skills, now=now, reachable_only=phone)
    found: dict[int, EligibleAgent] = {
        uid: EligibleAgent(user_id=uid, idle_since=since) for uid, since in in_house.items()
    }
    coverages = list(Coverage.objects.filter(tenant_id=tenant_id, active=True))
    if coverages:
        closed = (
            tenant_is_closed(escalation.tenant, now)
            if any(c.mode == CoverageMode.AFTER_HOURS for c in coverages)
            else False
        )
        applying = {
            c.agency_id: c.mode
            for c in coverages
            if _coverage_applies(c, escalation=escalation, now=now, in_house_available=bool(in_house), closed=closed)
        }
        agency_of: dict[int, int] = {}
        for user_id, agency_id in AgencyMembership.objects.filter(agency_id__in=applying).values_list(
            "user_id", "agency_id"
        ):
            agency_of.setdefault(user_id, agency_id)
        for uid, since in _ready(set(agency_of) - set(found), skills=skills, now=now, reachable_only=phone).items():
            agency_id = agency_of[uid]
            found[uid] = EligibleAgent(
                user_id=uid, idle_since=since, via_agency_id=agency_id, coverage_mode=applying[agency_id]
            )
    return sorted(found.values(), key=lambda a: (a.idle_since, a.user_id))


def eligibility_of(*, escalation: Escalation, user_id: int, now: dt.datetime) -> EligibleAgent | None:
    return next((a for a in eligible_agents(escalation=escalation, now=now) if a.user_id == user_id), None)
