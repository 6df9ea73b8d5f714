"""Eligibility, coverage modes, ordering, offers and the escalation lifecycle (SQLite or Postgres)."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.core.exceptions import PermissionDenied

from agents.models import (
    AgentProfile,
    Escalation,
    EscalationOffer,
    EscalationState,
    OfferOutcome,
    Presence,
    PresenceState,
)
from agents.routing import eligible_agents
from agents.selectors import waiting_work
from agents.services import (
    AlreadyTaken,
    escalation_abandon,
    escalation_accept,
    escalation_create,
    escalation_decline,
    escalation_route,
    escalation_transfer,
    escalation_wrap,
    offers_expire,
    presence_heartbeat,
    presence_set,
    presence_sweep,
)
from flows.engine import EscalationSummary, Reason, TransferToQueue
from flows.models import BusinessHours, EscalationPolicy, Holiday, Queue, RoutingMode
from tenants.models import AgencyRole, CoverageMode
from tenants.scoping import tenant_scope, unscoped
from tests.factories import AgencyMembershipFactory, CoverageFactory, make_conversation

# 2030-01-08 is a Tuesday; the tenants are in America/New_York (UTC-5 in January).
TUESDAY_NOON = dt.datetime(2030, 1, 8, 17, 0, tzinfo=dt.UTC)
TUESDAY_22H = dt.datetime(2030, 1, 9, 3, 0, tzinfo=dt.UTC)


# --- helpers (also used by test_race.py) -------------------------------------------------------
def transfer_json(queue: str = "front-desk", *, priority: int = 5, skills: tuple[str, ...] = ()) -> dict:
    return TransferToQueue(
        queue=queue,
        priority=priority,
        skills=skills,
        summary=EscalationSummary(reason_code="asked_for_human", reason_text="The caller asked for a person."),
        reason=Reason(code="asked_for_human", explanation="The caller said 'agent'."),
    ).model_dump(mode="json")


def make_ready(user, *, now, skills=(), capacity: int = 1, idle_for: int = 60) -> AgentProfile:
    """An agent with a profile, available since `idle_for` seconds before `now`, heartbeat now."""
    profile, _ = AgentProfile.objects.update_or_create(
        user=user, defaults={"skills": list(skills), "capacity": capacity}
    )
    Presence.objects.update_or_create(
        user=user,
        defaults={
            "state": PresenceState.AVAILABLE,
            "since": now - dt.timedelta(seconds=idle_for),
            "last_heartbeat": now,
            "reason": "",
        },
    )
    return profile


def make_escalation(tenant, *, now, queue: str = "front-desk", priority: int = 5, skills=()) -> Escalation:
    Queue.objects.get_or_create(tenant=tenant, name=queue)
    return escalation_create(
        conversation=make_conversation(tenant),
        transfer_action_json=transfer_json(queue, priority=priority, skills=skills),
        now=now,
    )


def ids(agents) -> list[int]:
    return [a.user_id for a in agents]


@pytest.fixture
def in_a(tenant_a):
    with tenant_scope([tenant_a.id]):
        yield tenant_a


@pytest.fixture
def weekday_hours(in_a):
    return BusinessHours.objects.create(
        tenant=in_a, weekly={d: [["09:00", "17:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}
    )


# --- eligibility and coverage -------------------------------------------------------------------
def test_member_with_profile_is_eligible_and_after_hours_agency_only_after_hours(in_a, weekday_hours, bob, nina):
    noon = make_escalation(in_a, now=TUESDAY_NOON)
    with time_machine.travel(TUESDAY_NOON, tick=False):
        make_ready(bob, now=TUESDAY_NOON)
        make_ready(nina, now=TUESDAY_NOON)
        assert ids(eligible_agents(escalation=noon, now=TUESDAY_NOON)) == [bob.pk]
    with time_machine.travel(TUESDAY_22H, tick=False):
        make_ready(bob, now=TUESDAY_22H, idle_for=30)
        make_ready(nina, now=TUESDAY_22H, idle_for=90)
        late = eligible_agents(escalation=noon, now=TUESDAY_22H)
        assert ids(late) == [nina.pk, bob.pk]  # nina idle longer
        assert late[0].via_agency_id is not None and late[0].coverage_mode == CoverageMode.AFTER_HOURS


def test_holiday_counts_as_after_hours(in_a, weekday_hours, bob, nina):
    Holiday.objects.create(tenant=in_a, date=dt.date(2030, 1, 8), name="Staff day")
    make_ready(nina, now=TUESDAY_NOON)
    escalation = make_escalation(in_a, now=TUESDAY_NOON)
    assert ids(eligible_agents(escalation=escalation, now=TUESDAY_NOON)) == [nina.pk]


def test_member_without_profile_is_not_eligible(in_a, weekday_hours, alice, bob):
    make_ready(bob, now=TUESDAY_NOON)
    presence_set(user=alice, state=PresenceState.AVAILABLE, now=TUESDAY_NOON)
    escalation = make_escalation(in_a, now=TUESDAY_NOON)
    assert ids(eligible_agents(escalation=escalation, now=TUESDAY_NOON)) == [bob.pk]


def test_owner_and_supervisor_with_a_profile_can_take_work(in_a, weekday_hours, alice, sam):
    make_ready(alice, now=TUESDAY_NOON, idle_for=10)
    make_ready(sam, now=TUESDAY_NOON, idle_for=20)
    escalation = make_escalation(in_a, now=TUESDAY_NOON)
    assert ids(eligible_agents(escalation=escalation, now=TUESDAY_NOON)) == [sam.pk, alice.pk]


def test_overflow_by_wait_time(in_a, weekday_hours, agency, bob):
    CoverageFactory(agency=agency, tenant=in_a, mode=CoverageMode.OVERFLOW)
    olga = AgencyMembershipFactory(agency=agency, role=AgencyRole.AGENT).user
    Queue.objects.create(tenant=in_a, name="front-desk", overflow_after_seconds=60, overflow_when_no_agents=False)
    escalation = make_escalation(in_a, now=TUESDAY_NOON)
    at_30 = TUESDAY_NOON + dt.timedelta(seconds=30)
    at_61 = TUESDAY_NOON + dt.timedelta(seconds=61)
    make_ready(bob, now=at_30, capacity=1)
    make_ready(olga, now=at_30)
    assert ids(eligible_agents(escalation=escalation, now=at_30)) == [bob.pk]
    make_ready(bob, now=at_61)
    make_ready(olga, now=at_61)
    found = eligible_agents(escalation=escalation, now=at_61)
    assert set(ids(found)) == {bob.pk, olga.pk}
    assert {a.coverage_mode for a in found if a.user_id == olga.pk} == {CoverageMode.OVERFLOW}


def test_overflow_when_no_in_house_agent_is_available(in_a, weekday_hours, agency, bob):
    CoverageFactory(agency=agency, tenant=in_a, mode=CoverageMode.OVERFLOW)
    olga = AgencyMembershipFactory(agency=agency, role=AgencyRole.AGENT).user
    escalation = make_escalation(in_a, now=TUESDAY_NOON)  # the default queue overflows when nobody is in
    make_ready(olga, now=TUESDAY_NOON)
    make_ready(bob, now=TUESDAY_NOON)
    presence_set(user=bob, state=PresenceState.AWAY, now=TUESDAY_NOON)
    assert ids(eligible_agents(escalation=escalation, now=TUESDAY_NOON)) == [olga.pk]
    presence_set(user=bob, state=PresenceState.AVAILABLE, now=TUESDAY_NOON)
    assert ids(eligible_agents(escalation=escalation, now=TUESDAY_NOON)) == [bob.pk]


def test_always_coverage_applies_during_hours(in_a, weekday_hours, agency):
    CoverageFactory(agency=agency, tenant=in_a, mode=CoverageMode.ALWAYS)
    olga = AgencyMembershipFactory(agency=agency, role=AgencyRole.AGENT).user
    make_ready(olga, now=TUESDAY_NOON)
    escalation = make_escalation(in_a, now=TUESDAY_NOON)
    assert ids(eligible_agents(escalation=escalation, now=TUESDAY_NOON)) == [olga.pk]


def test_revoked_coverage_removes_eligibility_at_once(in_a, weekday_hours, nina, coverage_a):
    make_ready(nina, now=TUESDAY_22H)
    escalation = make_escalation(in_a, now=TUESDAY_22H)
    assert ids(eligible_agents(escalation=escalation, now=TUESDAY_22H)) == [nina.pk]
    coverage_a.active = False
    coverage_a.save()
    assert eligible_agents(escalation=escalation, now=TUESDAY_22H) == []
    with pytest.raises(Escalation.DoesNotExist):
        escalation_accept(escalation_id=escalation.pk, agent=nina, now=TUESDAY_22H)


def test_stale_heartbeat_and_non_available_presence_are_not_eligible(in_a, weekday_hours, bob, sam):
    make_ready(bob, now=TUESDAY_NOON - dt.timedelta(seconds=31))
    make_ready(sam, now=TUESDAY_NOON)
    escalation = make_escalation(in_a, now=TUESDAY_NOON)
    assert ids(eligible_agents(escalation=escalation, now=TUESDAY_NOON)) == [sam.pk]
    presence_set(user=sam, state=PresenceState.BUSY, now=TUESDAY_NOON)
    assert eligible_agents(escalation=escalation, now=TUESDAY_NOON) == []


def test_skills_of_queue_and_escalation_are_both_required(in_a, weekday_hours, bob, sam, alice):
    Queue.objects.create(tenant=in_a, name="billing", required_skills=["billing"])
    make_ready(bob, now=TUESDAY_NOON, skills=["billing"])
    make_ready(sam, now=TUESDAY_NOON, skills=["billing", "spanish"])
    make_ready(alice, now=TUESDAY_NOON, skills=["spanish"])
    plain = make_escalation(in_a, now=TUESDAY_NOON, queue="billing")
    spanish = make_escalation(in_a, now=TUESDAY_NOON, queue="billing", skills=("spanish",))
    assert set(ids(eligible_agents(escalation=plain, now=TUESDAY_NOON))) == {bob.pk, sam.pk}
    assert ids(eligible_agents(escalation=spanish, now=TUESDAY_NOON)) == [sam.pk]


def test_capacity_counts_held_escalations(in_a, weekday_hours, bob):
    make_ready(bob, now=TUESDAY_NOON, capacity=1)
    first = make_escalation(in_a, now=TUESDAY_NOON)
    second = make_escalation(in_a, now=TUESDAY_NOON)
    escalation_accept(escalation_id=first.pk, agent=bob, now=TUESDAY_NOON)
    assert eligible_agents(escalation=second, now=TUESDAY_NOON) == []
    with pytest.raises(PermissionDenied):
        escalation_accept(escalation_id=second.pk, agent=bob, now=TUESDAY_NOON)
    AgentProfile.objects.filter(user=bob).update(capacity=2)
    assert ids(eligible_agents(escalation=second, now=TUESDAY_NOON)) == [bob.pk]


# --- another tenant -----------------------------------------------------------------------------
def test_another_tenants_agent_is_never_eligible_and_cannot_accept(tenant_a, tenant_b, charlie, bob):
    with tenant_scope([tenant_a.id]):
        escalation = make_escalation(tenant_a, now=TUESDAY_NOON)
        make_ready(charlie, now=TUESDAY_NOON)
        assert charlie.pk not in ids(eligible_agents(escalation=escalation, now=TUESDAY_NOON))
    with tenant_scope([tenant_b.id]), pytest.raises(Escalation.DoesNotExist):
        escalation_accept(escalation_id=escalation.pk, agent=charlie, now=TUESDAY_NOON)
    # Even a scope wider than the agent's access answers "does not exist", never "forbidden".
    with tenant_scope([tenant_a.id, tenant_b.id]), pytest.raises(Escalation.DoesNotExist):
        escalation_accept(escalation_id=escalation.pk, agent=charlie, now=TUESDAY_NOON)
    with unscoped("test assertion"):
        assert Escalation.objects.get(pk=escalation.pk).state == EscalationState.WAITING


# --- ordering and offers ------------------------------------------------------------------------
def test_waiting_work_is_priority_then_longest_waiting(in_a):
    low_old = make_escalation(in_a, now=TUESDAY_NOON, priority=3)
    high_new = make_escalation(in_a, now=TUESDAY_NOON + dt.timedelta(seconds=20), priority=8)
    high_old = make_escalation(in_a, now=TUESDAY_NOON + dt.timedelta(seconds=10), priority=8)
    later = TUESDAY_NOON + dt.timedelta(minutes=1)
    assert list(waiting_work(tenant_ids=[in_a.id], now=later)) == [high_old, high_new, low_old]


def test_longest_idle_agent_gets_the_single_offer(in_a, weekday_hours, bob, sam):
    make_ready(bob, now=TUESDAY_NOON, idle_for=300)
    make_ready(sam, now=TUESDAY_NOON, idle_for=30)
    escalation = make_escalation(in_a, now=TUESDAY_NOON)
    offers = escalation_route(escalation=escalation, now=TUESDAY_NOON)
    assert [o.agent_id for o in offers] == [bob.pk]
    assert offers[0].expires_at == TUESDAY_NOON + dt.timedelta(seconds=20)
    escalation.refresh_from_db()
    assert escalation.state == EscalationState.OFFERED
    assert escalation_route(escalation=escalation, now=TUESDAY_NOON) == []  # one offer at a time


def test_decline_reoffers_to_the_next_agent(in_a, weekday_hours, bob, sam):
    make_ready(bob, now=TUESDAY_NOON, idle_for=300)
    make_ready(sam, now=TUESDAY_NOON, idle_for=30)
    escalation = make_escalation(in_a, now=TUESDAY_NOON)
    escalation_route(escalation=escalation, now=TUESDAY_NOON)
    later = TUESDAY_NOON + dt.timedelta(seconds=5)
    offers = escalation_decline(escalation=escalation, agent=bob, now=later)
    assert [o.agent_id for o in offers] == [sam.pk]
    assert EscalationOffer.objects.get(escalation=escalation, agent=bob).outcome == OfferOutcome.DECLINED


def test_timeout_reoffers_to_the_next_agent(in_a, weekday_hours, bob, sam):
    make_ready(bob, now=TUESDAY_NOON, idle_for=300)
    make_ready(sam, now=TUESDAY_NOON, idle_for=30)
    escalation = make_escalation(in_a, now=TUESDAY_NOON)
    escalation_route(escalation=escalation, now=TUESDAY_NOON)
    later = TUESDAY_NOON + dt.timedelta(seconds=21)
    for user in (bob, sam):
        presence_heartbeat(user=user, now=later)
    assert offers_expire(now=later) == 1
    outcomes = dict(EscalationOffer.objects.filter(escalation=escalation).values_list("agent_id", "outcome"))
    assert outcomes == {bob.pk: OfferOutcome.TIMED_OUT, sam.pk: OfferOutcome.PENDING}
    assert AgentProfile.objects.get(user=bob).missed_offers_in_a_row == 1


def test_two_missed_offers_in_a_row_set_the_agent_away(in_a, weekday_hours, bob):
    make_ready(bob, now=TUESDAY_NOON)
    escalation = make_escalation(in_a, now=TUESDAY_NOON)
    escalation_route(escalation=escalation, now=TUESDAY_NOON)
    t1 = TUESDAY_NOON + dt.timedelta(seconds=21)
    presence_heartbeat(user=bob, now=t1)
    offers_expire(now=t1)  # re-offered to bob, the only agent
    assert EscalationOffer.objects.filter(escalation=escalation, agent=bob, outcome=OfferOutcome.PENDING).exists()
    t2 = t1 + dt.timedelta(seconds=21)
    presence_heartbeat(user=bob, now=t2)
    offers_expire(now=t2)
    presence = Presence.objects.get(user=bob)
    assert (presence.state, presence.reason) == (PresenceState.AWAY, "missed 2 offers")
    escalation.refresh_from_db()
    assert escalation.state == EscalationState.WAITING
    assert not EscalationOffer.objects.filter(escalation=escalation, outcome=OfferOutcome.PENDING).exists()


def test_broadcast_offers_everyone_and_first_accept_withdraws_the_rest(in_a, weekday_hours, bob, sam, alice):
    Queue.objects.create(tenant=in_a, name="front-desk", routing_mode=RoutingMode.BROADCAST)
    for user in (bob, sam, alice):
        make_ready(user, now=TUESDAY_NOON)
    escalation = make_escalation(in_a, now=TUESDAY_NOON)
    offers = escalation_route(escalation=escalation, now=TUESDAY_NOON)
    assert {o.agent_id for o in offers} == {bob.pk, sam.pk, alice.pk}
    escalation_accept(escalation_id=escalation.pk, agent=sam, now=TUESDAY_NOON)
    outcomes = dict(EscalationOffer.objects.filter(escalation=escalation).values_list("agent_id", "outcome"))
    assert outcomes == {bob.pk: OfferOutcome.WITHDRAWN, sam.pk: OfferOutcome.ACCEPTED, alice.pk: OfferOutcome.WITHDRAWN}
    with pytest.raises(AlreadyTaken):
        escalation_accept(escalation_id=escalation.pk, agent=bob, now=TUESDAY_NOON)


# --- lifecycle ----------------------------------------------------------------------------------
def test_escalation_create_is_idempotent_per_live_conversation(in_a):
    Queue.objects.create(tenant=in_a, name="front-desk", priority=5)
    conversation = make_conversation(in_a)
    first = escalation_create(conversation=conversation, transfer_action_json=transfer_json(), now=TUESDAY_NOON)
    again = escalation_create(conversation=conversation, transfer_action_json=transfer_json(), now=TUESDAY_NOON)
    assert first.pk == again.pk
    assert (first.reason_code, first.summary["reason_text"]) == ("asked_for_human", "The caller asked for a person.")
    escalation_abandon(escalation=first, now=TUESDAY_NOON)
    third = escalation_create(conversation=conversation, transfer_action_json=transfer_json(), now=TUESDAY_NOON)
    assert third.pk != first.pk


def test_accept_by_an_unavailable_agent_is_forbidden(in_a, weekday_hours, bob):
    escalation = make_escalation(in_a, now=TUESDAY_NOON)
    with pytest.raises(PermissionDenied):
        escalation_accept(escalation_id=escalation.pk, agent=bob, now=TUESDAY_NOON)


def test_accept_connect_wrap(in_a, weekday_hours, bob, sam):
    from agents.services import escalation_connect

    make_ready(bob, now=TUESDAY_NOON)
    escalation = make_escalation(in_a, now=TUESDAY_NOON)
    accepted = escalation_accept(escalation_id=escalation.pk, agent=bob, now=TUESDAY_NOON)
    assert (accepted.state, accepted.agent_id, accepted.accepted_at) == ("accepted", bob.pk, TUESDAY_NOON)
    assert escalation_connect(escalation=accepted, now=TUESDAY_NOON)
    with pytest.raises(PermissionDenied):
        escalation_wrap(escalation=accepted, agent=sam, disposition="resolved", notes="")
    wrapped = escalation_wrap(escalation=accepted, agent=bob, disposition="resolved", notes="Booked a cleaning.")
    assert (wrapped.state, wrapped.disposition, wrapped.notes) == ("wrapped", "resolved", "Booked a cleaning.")
    assert wrapped.ended_at is not None


def test_transfer_puts_it_back_in_another_queue(in_a, weekday_hours, bob):
    make_ready(bob, now=TUESDAY_NOON)
    escalation = make_escalation(in_a, now=TUESDAY_NOON)
    escalation_accept(escalation_id=escalation.pk, agent=bob, now=TUESDAY_NOON)
    billing = Queue.objects.create(tenant=in_a, name="billing")
    moved = escalation_transfer(escalation=escalation, queue=billing)
    assert (moved.queue_id, moved.state, moved.agent_id) == (billing.pk, EscalationState.WAITING, None)


def test_transfer_to_another_tenants_queue_is_refused(tenant_a, tenant_b):
    with tenant_scope([tenant_a.id]):
        escalation = make_escalation(tenant_a, now=TUESDAY_NOON)
    with tenant_scope([tenant_b.id]):
        other = Queue.objects.create(tenant=tenant_b, name="front-desk")
    with tenant_scope([tenant_a.id]), pytest.raises(Queue.DoesNotExist):
        escalation_transfer(escalation=escalation, queue=other)


def test_abandon_withdraws_offers(in_a, weekday_hours, bob):
    make_ready(bob, now=TUESDAY_NOON)
    escalation = make_escalation(in_a, now=TUESDAY_NOON)
    escalation_route(escalation=escalation, now=TUESDAY_NOON)
    assert escalation_abandon(escalation=escalation, now=TUESDAY_NOON)
    escalation.refresh_from_db()
    assert escalation.state == EscalationState.ABANDONED
    assert EscalationOffer.objects.get(escalation=escalation).outcome == OfferOutcome.WITHDRAWN
    with pytest.raises(AlreadyTaken):
        escalation_accept(escalation_id=escalation.pk, agent=bob, now=TUESDAY_NOON)


# --- presence -----------------------------------------------------------------------------------
def test_presence_sweep_sets_silent_agents_offline(in_a, bob, sam):
    make_ready(bob, now=TUESDAY_NOON)
    make_ready(sam, now=TUESDAY_NOON)
    later = TUESDAY_NOON + dt.timedelta(seconds=31)
    presence_heartbeat(user=sam, now=later)
    assert presence_sweep(now=later) == [bob.pk]
    assert Presence.objects.get(user=bob).state == PresenceState.OFFLINE
    assert Presence.objects.get(user=sam).state == PresenceState.AVAILABLE


def test_overflow_offer_and_agency_accept_are_recorded(in_a, weekday_hours, agency, bob):
    CoverageFactory(agency=agency, tenant=in_a, mode=CoverageMode.OVERFLOW)
    olga = AgencyMembershipFactory(agency=agency, role=AgencyRole.AGENT).user
    make_ready(olga, now=TUESDAY_NOON)
    escalation = make_escalation(in_a, now=TUESDAY_NOON)
    assert [o.agent_id for o in escalation_route(escalation=escalation, now=TUESDAY_NOON)] == [olga.pk]
    escalation.refresh_from_db()
    assert escalation.overflowed
    accepted = escalation_accept(escalation_id=escalation.pk, agent=olga, now=TUESDAY_NOON)
    assert (accepted.agent_id, accepted.via_agency_id, accepted.overflowed) == (olga.pk, agency.pk, True)


def test_after_hours_agency_accept_records_the_agency(in_a, weekday_hours, nina, agency):
    make_ready(nina, now=TUESDAY_22H)
    escalation = make_escalation(in_a, now=TUESDAY_22H)
    accepted = escalation_accept(escalation_id=escalation.pk, agent=nina, now=TUESDAY_22H)
    assert (accepted.via_agency_id, accepted.overflowed) == (agency.pk, False)


def test_agency_agent_with_a_pending_offer_elsewhere_gets_no_second_offer(in_a, tenant_b, weekday_hours, nina, agency):
    CoverageFactory(agency=agency, tenant=tenant_b, mode=CoverageMode.ALWAYS)
    make_ready(nina, now=TUESDAY_22H)
    with tenant_scope([tenant_b.id]):
        other = make_escalation(tenant_b, now=TUESDAY_22H)
        assert [o.agent_id for o in escalation_route(escalation=other, now=TUESDAY_22H)] == [nina.pk]
    escalation = make_escalation(in_a, now=TUESDAY_22H)
    assert escalation_route(escalation=escalation, now=TUESDAY_22H) == []


def test_unknown_queue_name_falls_back_to_the_default_queue(in_a):
    default = Queue.objects.create(tenant=in_a, name="main")
    EscalationPolicy.objects.create(tenant=in_a, default_queue=default)
    escalation = escalation_create(
        conversation=make_conversation(in_a), transfer_action_json=transfer_json("renamed-queue"), now=TUESDAY_NOON
    )
    assert escalation.queue_id == default.pk


# --- a routing pass over a long line -------------------------------------------------------------
def test_a_routing_pass_offers_the_head_of_the_line_and_stops_asking_once_nobody_is_free(
    in_a, weekday_hours, bob, sam, django_assert_max_num_queries
):
    from agents.services import waiting_work_route

    make_ready(bob, now=TUESDAY_NOON, idle_for=300)
    make_ready(sam, now=TUESDAY_NOON, idle_for=30)
    line = [make_escalation(in_a, now=TUESDAY_NOON + dt.timedelta(seconds=n / 2)) for n in range(30)]
    later = TUESDAY_NOON + dt.timedelta(seconds=20)  # the agents' heartbeats are still fresh
    # Two free agents, one offer each at a time: the first two in line, longest idle first. Once both hold
    # an offer the other 28 are not examined one by one (the query count does not grow with the line).
    with django_assert_max_num_queries(60):
        assert waiting_work_route(tenant_ids=[in_a.id], now=later) == 2
    with unscoped("test assertion"):
        offered = dict(EscalationOffer.objects.values_list("escalation_id", "agent_id"))
    assert offered == {line[0].pk: bob.pk, line[1].pk: sam.pk}
    # Nobody free at all: a pass is a handful of queries, whatever the length of the line.
    with django_assert_max_num_queries(30):
        assert waiting_work_route(tenant_ids=[in_a.id], now=later) == 0


def test_a_burst_of_routing_requests_makes_one_pass_and_a_request_after_it_started_makes_another(
    in_a, monkeypatch, django_capture_on_commit_callbacks
):
    from agents.services import request_routing_pass
    from agents.tasks import route_waiting_task

    queued: list[dict] = []
    monkeypatch.setattr(route_waiting_task, "apply_async", lambda kwargs, **_: queued.append(kwargs))
    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(5):  # five agents accept in the same moment
            request_routing_pass(in_a.id)
    assert queued == [{"tenant_id": in_a.id}]
    route_waiting_task(tenant_id=in_a.id)  # the pass starts: later requests are not covered by it
    with django_capture_on_commit_callbacks(execute=True):
        request_routing_pass(in_a.id)
    assert queued == [{"tenant_id": in_a.id}, {"tenant_id": in_a.id}]
