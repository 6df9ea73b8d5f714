"""Celery tasks: thin, ids in, scopes entered per tenant."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from agents.models import EscalationOffer, EscalationState, OfferOutcome, Presence, PresenceState
from agents.tasks import escalation_route_task, offers_expire_task, presence_sweep_task
from tenants.scoping import tenant_scope, unscoped
from tests.agents.test_routing import TUESDAY_NOON, make_escalation, make_ready


def test_route_task_needs_a_tenant_and_offers_inside_its_scope(tenant_a, bob):
    with tenant_scope([tenant_a.id]):
        make_ready(bob, now=TUESDAY_NOON)
        escalation = make_escalation(tenant_a, now=TUESDAY_NOON)
    with pytest.raises(TypeError, match="tenant_id"):
        escalation_route_task(escalation_id=escalation.pk)
    with time_machine.travel(TUESDAY_NOON + dt.timedelta(seconds=1), tick=False):
        assert escalation_route_task(tenant_id=tenant_a.id, escalation_id=escalation.pk) == 1


def test_route_task_cannot_reach_another_tenants_escalation(tenant_a, tenant_b, bob):
    with tenant_scope([tenant_a.id]):
        make_ready(bob, now=TUESDAY_NOON)
        escalation = make_escalation(tenant_a, now=TUESDAY_NOON)
    with time_machine.travel(TUESDAY_NOON, tick=False):
        assert escalation_route_task(tenant_id=tenant_b.id, escalation_id=escalation.pk) == 0


def test_offers_expire_task_works_tenant_by_tenant(tenant_a, tenant_b, bob, sam, charlie):
    with tenant_scope([tenant_a.id]):
        make_ready(bob, now=TUESDAY_NOON, idle_for=300)
        make_ready(sam, now=TUESDAY_NOON, idle_for=10)
        a = make_escalation(tenant_a, now=TUESDAY_NOON)
    with tenant_scope([tenant_b.id]):
        make_ready(charlie, now=TUESDAY_NOON)
        b = make_escalation(tenant_b, now=TUESDAY_NOON)
    with time_machine.travel(TUESDAY_NOON, tick=False):
        offers_expire_task()  # routes waiting work of both tenants
    later = TUESDAY_NOON + dt.timedelta(seconds=21)
    with unscoped("test setup"):
        Presence.objects.update(last_heartbeat=later)
    with time_machine.travel(later, tick=False):
        assert offers_expire_task() == 2
    with unscoped("test assertions"):
        by_agent = {(o.escalation_id, o.agent_id): o.outcome for o in EscalationOffer.objects.all()}
    assert by_agent[(a.pk, bob.pk)] == OfferOutcome.TIMED_OUT
    assert by_agent[(a.pk, sam.pk)] == OfferOutcome.PENDING
    assert by_agent[(b.pk, charlie.pk)] == OfferOutcome.PENDING  # charlie is B's only agent: offered again
    assert (b.pk, bob.pk) not in by_agent and (a.pk, charlie.pk) not in by_agent


def test_presence_sweep_task_takes_offers_back_from_silent_agents(tenant_a, bob, sam):
    with tenant_scope([tenant_a.id]):
        make_ready(bob, now=TUESDAY_NOON, idle_for=300)
        make_ready(sam, now=TUESDAY_NOON, idle_for=10)
        escalation = make_escalation(tenant_a, now=TUESDAY_NOON)
    with time_machine.travel(TUESDAY_NOON, tick=False):
        escalation_route_task(tenant_id=tenant_a.id, escalation_id=escalation.pk)
    later = TUESDAY_NOON + dt.timedelta(seconds=15)
    Presence.objects.filter(user=sam).update(last_heartbeat=later)
    with time_machine.travel(TUESDAY_NOON + dt.timedelta(seconds=31), tick=False):
        assert presence_sweep_task() == 1
    assert Presence.objects.get(user=bob).state == PresenceState.OFFLINE
    with tenant_scope([tenant_a.id]):
        outcomes = dict(EscalationOffer.objects.filter(escalation=escalation).values_list("agent_id", "outcome"))
        escalation.refresh_from_db()
    assert outcomes == {bob.pk: OfferOutcome.WITHDRAWN, sam.pk: OfferOutcome.PENDING}
    assert escalation.state == EscalationState.OFFERED
