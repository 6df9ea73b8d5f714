"""The claim race on PostgreSQL: 20 agents accept the same escalation at once; exactly one wins."""

from __future__ import annotations

import threading

import pytest
from django.db import connections
from django.utils import timezone

from agents.models import Escalation, EscalationState
from agents.services import AlreadyTaken, escalation_accept
from tenants.models import Role
from tenants.scoping import tenant_scope, unscoped
from tests.agents.test_routing import make_escalation, make_ready
from tests.factories import MembershipFactory, TenantFactory

AGENTS = 20


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_exactly_one_of_twenty_concurrent_accepts_wins():
    now = timezone.now()
    tenant = TenantFactory()
    agents = [MembershipFactory(tenant=tenant, role=Role.AGENT).user for _ in range(AGENTS)]
    with tenant_scope([tenant.id]):
        for n, agent in enumerate(agents):
            make_ready(agent, now=now, idle_for=10 + n)
        escalation = make_escalation(tenant, now=now)

    barrier = threading.Barrier(AGENTS)
    results: dict[int, str] = {}
    lock = threading.Lock()

    def accept(agent) -> None:
        try:
            barrier.wait(timeout=30)
            with tenant_scope([tenant.id]):
                escalation_accept(escalation_id=escalation.pk, agent=agent, now=now)
            outcome = "won"
        except AlreadyTaken:
            outcome = "taken"
        except Exception as exc:  # anything else is a bug this test must show
            outcome = f"error: {exc!r}"
        finally:
            connections.close_all()
        with lock:
            results[agent.pk] = outcome

    threads = [threading.Thread(target=accept, args=(agent,)) for agent in agents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    outcomes = sorted(results.values())
    assert outcomes.count("won") == 1, outcomes
    assert outcomes.count("taken") == AGENTS - 1, outcomes
    winner = next(pk for pk, outcome in results.items() if outcome == "won")
    with unscoped("test assertions"):
        row = Escalation.objects.get(pk=escalation.pk)
    assert (row.state, row.agent_id) == (EscalationState.ACCEPTED, winner)
