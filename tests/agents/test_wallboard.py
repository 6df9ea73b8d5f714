"""The supervisor wallboard: page and socket access, and the figures (computed in SQL)."""

from __future__ import annotations

import datetime as dt

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.urls import include, path
from django.utils import timezone

from agents.consumers import WallboardConsumer
from agents.models import AgentProfile, EscalationKind, EscalationState, Presence, PresenceState
from agents.selectors import wallboard_figures
from conversations.models import CallbackState
from flows.models import BusinessHours, Queue
from tenants.consumers import tenant_group
from tenants.models import AgencyRole
from tenants.scoping import tenant_scope
from tests.agents.test_console import of_type, open_socket, receive_until
from tests.factories import AgencyMembershipFactory, make_callback, make_escalation

urlpatterns = [path("", include("agents.urls")), path("", include("contactcenter.urls"))]

NOW = dt.datetime(2030, 1, 8, 17, 0, tzinfo=dt.UTC)  # Tuesday noon in New York


def ago(seconds: int) -> dt.datetime:
    return NOW - dt.timedelta(seconds=seconds)


def make_fixture(tenant, sam, bob, nina):
    """front-desk (SL 30 s): 2 waiting (5 s and 20 s), 1 accepted within 30 s, 1 accepted after 45 s, in
    business hours (Tue 08:00-18:00 New York); one before opening and one callback, neither counted."""
    with tenant_scope([tenant.id]):
        BusinessHours.objects.create(tenant=tenant, weekly={"tue": [["08:00", "18:00"]]})
        queue = Queue.objects.create(tenant=tenant, name="front-desk", service_level_seconds=30)
        Queue.objects.create(tenant=tenant, name="billing")
        make_escalation(tenant, queue=queue, created_at=ago(5))
        make_escalation(tenant, queue=queue, created_at=ago(20), state=EscalationState.OFFERED)
        make_escalation(
            tenant,
            queue=queue,
            created_at=ago(600),
            accepted_at=ago(590),
            state=EscalationState.ACCEPTED,
            agent=bob,
        )
        make_escalation(
            tenant,
            queue=queue,
            created_at=ago(900),
            accepted_at=ago(855),
            state=EscalationState.WRAPPED,
            agent=sam,
        )
        # 07:00 in New York, before opening: covered after hours, not on the service-level clock.
        make_escalation(
            tenant,
            queue=queue,
            created_at=NOW - dt.timedelta(hours=5),
            accepted_at=NOW - dt.timedelta(hours=4),
            state=EscalationState.WRAPPED,
        )
        # A callback has its own on-time figure.
        make_escalation(
            tenant,
            queue=queue,
            accepted_at=ago(10),
            kind=EscalationKind.CALLBACK,
            state=EscalationState.WRAPPED,
        )
        # Callbacks: one promised for later, one due and offered but flagged overdue, one done (not shown).
        make_callback(tenant, due_at=NOW + dt.timedelta(hours=2))
        make_callback(tenant, due_at=ago(1200), state=CallbackState.QUEUED, overdue_at=ago(300))
        make_callback(tenant, due_at=ago(3000), state=CallbackState.COMPLETED)
        # Yesterday (New York time) does not count towards today's service level.
        make_escalation(tenant, queue=queue, created_at=NOW - dt.timedelta(hours=20), state=EscalationState.ABANDONED)
    for user, state in ((bob, PresenceState.BUSY), (sam, PresenceState.AVAILABLE), (nina, PresenceState.AWAY)):
        AgentProfile.objects.create(user=user)
        Presence.objects.create(user=user, state=state, since=ago(60))
    return queue


def test_figures_for_a_hand_made_fixture(tenant_a, tenant_b, sam, bob, nina):
    queue = make_fixture(tenant_a, sam, bob, nina)
    with tenant_scope([tenant_b.id]):
        make_escalation(tenant_b, created_at=ago(100))  # another business: not on this board
    with tenant_scope([tenant_a.id]):
        figures = wallboard_figures(tenant_id=tenant_a.id, now=NOW)
    billing, front = figures["queues"]
    assert billing["name"] == "billing" and billing["waiting"] == 0 and billing["service_level"] is None
    assert front["queue_id"] == queue.pk
    assert front["waiting"] == 2
    assert front["longest_wait_seconds"] == 20
    assert (front["today_total"], front["today_accepted"]) == (4, 2)
    assert (front["sl_met"], front["sl_counted"], front["service_level"]) == (1, 2, 50.0)
    assert figures["waiting_total"] == 2
    assert figures["callbacks"] == {"scheduled": 1, "due": 1, "overdue": 1}
    assert figures["agents_by_state"] == {"available": 1, "busy": 1, "away": 1, "offline": 0}
    by_user = {a["user_id"]: a for a in figures["agents"]}
    assert by_user[nina.pk]["via"] == "agency" and by_user[bob.pk]["handling"] == 1

    # A caller still waiting past the threshold counts as a miss.
    with tenant_scope([tenant_a.id]):
        later = wallboard_figures(tenant_id=tenant_a.id, now=NOW + dt.timedelta(seconds=15))
    front = later["queues"][1]
    assert (front["sl_met"], front["sl_counted"]) == (1, 3)


@pytest.mark.urls(__name__)
def test_wallboard_page_is_for_supervisors(client_for, sam, bob, nina, charlie, tenant_a):
    url = f"/t/{tenant_a.slug}/wallboard/"
    response = client_for(sam).get(url)
    assert response.status_code == 200
    assert (
        b"Wallboard" in response.content
        and f'data-ws-path="/ws/t/{tenant_a.slug}/wallboard/"'.encode() in response.content
    )
    assert client_for(bob).get(url).status_code == 403
    assert client_for(nina).get(url).status_code == 403
    assert client_for(charlie).get(url).status_code == 404


@pytest.mark.urls(__name__)
def test_agency_supervisor_sees_a_covered_tenants_wallboard(client_for, agency, coverage_a, tenant_a):
    boss = AgencyMembershipFactory(agency=agency, role=AgencyRole.SUPERVISOR).user
    assert client_for(boss).get(f"/t/{tenant_a.slug}/wallboard/").status_code == 200


@pytest.mark.django_db(transaction=True)
async def test_wallboard_socket_refuses_other_tenants_and_agents(charlie, bob, tenant_a):
    path_ = f"/ws/t/{tenant_a.slug}/wallboard/"
    _, connected, code = await open_socket(path_, charlie)
    assert not connected and code == 4404
    _, connected, code = await open_socket(path_, bob)
    assert not connected and code == 4403


@pytest.mark.django_db(transaction=True)
async def test_wallboard_socket_sends_figures_and_refreshes_on_events(sam, tenant_a, monkeypatch):
    monkeypatch.setattr(WallboardConsumer, "DEBOUNCE_SECONDS", 0.05)
    communicator, connected, _ = await open_socket(f"/ws/t/{tenant_a.slug}/wallboard/", sam)
    assert connected
    figures = await receive_until(communicator, of_type("figures"))
    assert figures["waiting_total"] == 0

    def add_waiting():
        with tenant_scope([tenant_a.id]):
            make_escalation(tenant_a, created_at=timezone.now() - dt.timedelta(seconds=3))

    await database_sync_to_async(add_waiting)()
    layer = get_channel_layer()
    for _ in range(3):  # a burst of events gives one refresh
        await layer.group_send(tenant_group(tenant_a.id), {"type": "tenant.event", "event": {"type": "test.poke"}})
    figures = await receive_until(communicator, of_type("figures"))
    assert figures["waiting_total"] == 1 and figures["queues"][0]["longest_wait_seconds"] >= 3
    assert await communicator.receive_nothing(timeout=0.2)

    await communicator.send_json_to({"type": "refresh"})
    assert (await receive_until(communicator, of_type("figures")))["waiting_total"] == 1
    await communicator.send_to(text_data="nonsense")
    assert (await receive_until(communicator, of_type("error")))["code"] == "invalid"
    await communicator.disconnect()
