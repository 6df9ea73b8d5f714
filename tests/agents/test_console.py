"""The agent console: page access, the snapshot, pushed offers and the socket's actions.

The websocket routes are served here from ``agents.urls.websocket_urlpatterns`` behind the same
middleware as ``contactcenter.asgi`` (and the pages from a URLconf that includes ``agents.urls``),
so these tests do not depend on where the project mounts them.
"""

from __future__ import annotations

import datetime as dt

import pytest
from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from channels.testing import WebsocketCommunicator
from django.urls import include, path
from django.utils import timezone

from agents.models import Escalation, EscalationState, Presence, PresenceState
from agents.services import escalation_route
from agents.urls import websocket_urlpatterns
from conversations.models import Lead, Turn
from flows.models import Queue
from tenants.scoping import tenant_scope, unscoped
from tests.agents.test_routing import make_ready
from tests.factories import UserFactory, make_escalation
from tests.tenants.test_websocket_door import ORIGIN, session_cookie_for

# A URLconf for the pages: this app first, then the project (base.html reverses its names).
urlpatterns = [path("", include("agents.urls")), path("", include("contactcenter.urls"))]

APPLICATION = AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))


async def open_socket(path, user):
    headers = [ORIGIN, (b"cookie", await session_cookie_for(user))]
    communicator = WebsocketCommunicator(APPLICATION, path, headers=headers)
    connected, code = await communicator.connect()
    return communicator, connected, code


async def receive_until(communicator, predicate, *, timeout=3, limit=30):
    """The first message matching predicate (events from other groups may come in between)."""
    seen = []
    for _ in range(limit):
        message = await communicator.receive_json_from(timeout=timeout)
        if predicate(message):
            return message
        seen.append(message)
    raise AssertionError(f"no matching message; got {seen}")


def of_type(kind):
    return lambda m: m.get("type") == kind


async def console_for(user):
    communicator, connected, code = await open_socket("/ws/console/", user)
    assert connected, code
    snapshot = await receive_until(communicator, of_type("snapshot"))
    return communicator, snapshot


@database_sync_to_async
def in_scope(tenant, fn):
    with tenant_scope([tenant.id]):
        return fn()


@database_sync_to_async
def read(fn):
    with unscoped("test assertions"):
        return fn()


# --- the page ----------------------------------------------------------------------------------
@pytest.mark.urls(__name__)
def test_console_page_for_agents_members_and_agency_agents(client_for, bob, alice, nina, tenant_a):
    for user in (bob, alice, nina):
        response = client_for(user).get("/console/")
        assert response.status_code == 200, user.email
        assert b'data-ws-path="/ws/console/"' in response.content
        assert tenant_a.name.encode() in response.content


@pytest.mark.urls(__name__)
def test_console_page_refuses_people_without_a_business(client_for, client, tenant_a):
    loner = UserFactory()
    assert client_for(loner).get("/console/").status_code == 403
    response = client.get("/console/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


# --- the snapshot --------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
async def test_snapshot_lists_only_the_covered_tenants_waiting_work(nina, charlie, bob, tenant_a, tenant_b):
    def setup():
        tenant_a.greeting = "Alpha Dental, this is Nina."
        tenant_a.agent_notes = "Emergencies: page Dr Ruiz."
        tenant_a.save()
        now = timezone.now()
        with tenant_scope([tenant_a.id]):
            low = make_escalation(tenant_a, priority=3, created_at=now - dt.timedelta(seconds=90))
            urgent = make_escalation(tenant_a, priority=8, created_at=now - dt.timedelta(seconds=10))
            old = make_escalation(tenant_a, priority=3, created_at=now - dt.timedelta(seconds=300))
        with tenant_scope([tenant_b.id]):
            in_b = make_escalation(tenant_b)
        return [urgent.pk, old.pk, low.pk], in_b.pk

    order_a, in_b = await database_sync_to_async(setup)()

    communicator, snapshot = await console_for(nina)
    assert [w["escalation_id"] for w in snapshot["waiting"]] == order_a  # priority, then longest waiting
    assert [w["place"] for w in snapshot["waiting"]] == [1, 2, 3]
    first = snapshot["waiting"][0]
    assert first["tenant_name"] == "Alpha Dental" and first["wait_seconds"] >= 9
    (tenant,) = snapshot["tenants"]
    assert tenant["greeting"] == "Alpha Dental, this is Nina." and tenant["agent_notes"].startswith("Emergencies")
    assert snapshot["presence"]["state"] == "offline" and snapshot["offers"] == [] and snapshot["active"] == []
    await communicator.disconnect()

    communicator, snapshot = await console_for(charlie)
    assert [w["escalation_id"] for w in snapshot["waiting"]] == [in_b]
    assert [t["name"] for t in snapshot["tenants"]] == ["Beta Plumbing"]
    await communicator.disconnect()

    communicator, snapshot = await console_for(bob)
    assert in_b not in [w["escalation_id"] for w in snapshot["waiting"]]
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_console_socket_refuses_people_without_a_business(tenant_a):
    loner = await database_sync_to_async(UserFactory)()
    _, connected, code = await open_socket("/ws/console/", loner)
    assert not connected and code == 4403


# --- pushed offers and actions --------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
async def test_offer_pushed_after_commit_reaches_the_offered_agent(bob, tenant_a):
    await database_sync_to_async(lambda: make_ready(bob, now=timezone.now()))()
    communicator, _ = await console_for(bob)
    escalation = await in_scope(tenant_a, lambda: make_escalation(tenant_a))
    await in_scope(tenant_a, lambda: escalation_route(escalation=escalation, now=timezone.now()))

    event = await receive_until(communicator, of_type("escalation.offered"))
    assert event["agent_id"] == bob.pk and event["escalation_id"] == escalation.pk
    await communicator.send_json_to({"type": "snapshot"})
    snapshot = await receive_until(communicator, of_type("snapshot"))
    (offer,) = snapshot["offers"]
    assert offer["escalation_id"] == escalation.pk and offer["expires_at"] and offer["expires_in_seconds"] > 0
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_accept_wins_once_and_the_second_agent_is_told_it_was_taken(bob, sam, tenant_a):
    def setup():
        now = timezone.now()
        make_ready(bob, now=now)
        make_ready(sam, now=now)
        with tenant_scope([tenant_a.id]):
            escalation = make_escalation(tenant_a)
            Turn.objects.create(
                tenant=tenant_a, conversation=escalation.conversation, seq=1, utterance="I need a person", reply="Sure."
            )
            Lead.objects.create(
                tenant=tenant_a, conversation=escalation.conversation, name="Pat Lee", phone="+15550100"
            )
            Escalation.objects.filter(pk=escalation.pk).update(
                summary={"reason_code": "asked_for_human", "reason_text": "Wants a person", "intent_path": ["billing"]}
            )
        return escalation

    escalation = await database_sync_to_async(setup)()
    bob_socket, _ = await console_for(bob)
    sam_socket, _ = await console_for(sam)

    await bob_socket.send_json_to({"type": "offer.accept", "escalation_id": escalation.pk, "ref": "a1"})
    ok = await receive_until(bob_socket, lambda m: m["type"] in ("ok", "error"))
    assert ok == {"type": "ok", "action": "offer.accept", "escalation_id": escalation.pk, "ref": "a1"}
    snapshot = await receive_until(bob_socket, of_type("snapshot"))
    (active,) = snapshot["active"]
    assert active["escalation_id"] == escalation.pk and active["state"] == "accepted"
    assert active["transcript"][0]["caller"] == "I need a person"
    assert active["summary"]["intent_path"] == ["billing"]
    assert active["leads"][0]["name"] == "Pat Lee"
    assert snapshot["waiting"] == []

    await sam_socket.send_json_to({"type": "offer.accept", "escalation_id": escalation.pk})
    error = await receive_until(sam_socket, of_type("error"))
    assert error == {"type": "error", "code": "already_taken", "message": "Another agent took this call."}

    row = await read(lambda: Escalation.objects.get(pk=escalation.pk))
    assert (row.state, row.agent_id) == (EscalationState.ACCEPTED, bob.pk)

    # Wrap-up closes it.
    await bob_socket.send_json_to(
        {"type": "escalation.wrap", "escalation_id": escalation.pk, "disposition": "resolved", "notes": "Booked."}
    )
    ok = await receive_until(bob_socket, lambda m: m["type"] in ("ok", "error"))
    assert ok["type"] == "ok" and ok["action"] == "escalation.wrap"
    snapshot = await receive_until(bob_socket, of_type("snapshot"))
    assert snapshot["active"] == []
    row = await read(lambda: Escalation.objects.get(pk=escalation.pk))
    assert (row.state, row.disposition, row.notes) == (EscalationState.WRAPPED, "resolved", "Booked.")

    await bob_socket.disconnect()
    await sam_socket.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_another_tenants_escalation_is_not_found_like_a_missing_one(bob, charlie, tenant_a, tenant_b):
    await database_sync_to_async(lambda: make_ready(bob, now=timezone.now()))()
    foreign = await in_scope(tenant_b, lambda: make_escalation(tenant_b))
    communicator, _ = await console_for(bob)
    answers = []
    for kind in ("offer.accept", "offer.decline"):
        for escalation_id in (foreign.pk, 999_999):
            await communicator.send_json_to({"type": kind, "escalation_id": escalation_id})
            answers.append(await receive_until(communicator, of_type("error")))
    await communicator.send_json_to(
        {"type": "escalation.wrap", "escalation_id": foreign.pk, "disposition": "other", "notes": ""}
    )
    answers.append(await receive_until(communicator, of_type("error")))
    assert {a["code"] for a in answers} == {"not_found"}
    assert len({a["message"] for a in answers}) == 1
    row = await read(lambda: Escalation.objects.get(pk=foreign.pk))
    assert row.state == EscalationState.WAITING and row.agent_id is None
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_invalid_messages_get_readable_errors(bob, tenant_a):
    communicator, _ = await console_for(bob)
    cases = [
        ("not json", "not valid JSON"),
        ('["snapshot"]', "JSON object"),
        ('{"type": "dance"}', "Unknown message type 'dance'"),
        ('{"type": "offer.accept"}', "'escalation_id' is required"),
        ('{"type": "offer.accept", "escalation_id": "abc"}', "escalation_id"),
        ('{"type": "presence.set", "state": "asleep"}', "state"),
        ('{"type": "escalation.wrap", "escalation_id": 1, "disposition": "meh"}', "disposition"),
        ('{"type": "heartbeat", "extra": 1}', "'extra' is not expected"),
    ]
    for text, expected in cases:
        await communicator.send_to(text_data=text)
        error = await receive_until(communicator, of_type("error"))
        assert expected in error["message"], (text, error)
        assert error["code"] in ("invalid", "unknown_type")
    # The socket is still open and useful.
    await communicator.send_json_to({"type": "snapshot", "ref": 7})
    assert (await receive_until(communicator, of_type("snapshot")))["ref"] == 7
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_presence_set_and_heartbeat_update_presence(nina, tenant_a):
    communicator, _ = await console_for(nina)
    await communicator.send_json_to({"type": "presence.set", "state": "available", "reason": ""})
    ok = await receive_until(communicator, of_type("ok"))
    assert ok == {"type": "ok", "action": "presence.set", "state": "available"}
    snapshot = await receive_until(communicator, of_type("snapshot"))
    assert snapshot["presence"]["state"] == "available"
    presence = await read(lambda: Presence.objects.get(user=nina))
    assert presence.state == PresenceState.AVAILABLE

    await database_sync_to_async(lambda: Presence.objects.filter(user=nina).update(last_heartbeat=None))()
    await communicator.send_json_to({"type": "heartbeat"})
    assert (await receive_until(communicator, of_type("ok")))["action"] == "heartbeat"
    presence = await read(lambda: Presence.objects.get(user=nina))
    assert presence.last_heartbeat is not None
    assert (timezone.now() - presence.last_heartbeat).total_seconds() < 5

    await communicator.send_json_to({"type": "presence.set", "state": "away", "reason": "lunch"})
    await receive_until(communicator, of_type("ok"))
    presence = await read(lambda: Presence.objects.get(user=nina))
    assert (presence.state, presence.reason) == (PresenceState.AWAY, "lunch")
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_transfer_moves_the_call_to_another_queue_of_the_same_business(bob, tenant_a, tenant_b):
    def setup():
        make_ready(bob, now=timezone.now())
        with tenant_scope([tenant_a.id]):
            escalation = make_escalation(tenant_a)
            billing = Queue.objects.create(tenant=tenant_a, name="billing")
        with tenant_scope([tenant_b.id]):
            foreign = Queue.objects.create(tenant=tenant_b, name="elsewhere")
        return escalation, billing, foreign

    escalation, billing, foreign = await database_sync_to_async(setup)()
    communicator, _ = await console_for(bob)
    await communicator.send_json_to({"type": "offer.accept", "escalation_id": escalation.pk})
    await receive_until(communicator, of_type("ok"))
    await communicator.send_json_to(
        {"type": "escalation.transfer", "escalation_id": escalation.pk, "queue_id": foreign.pk}
    )
    assert (await receive_until(communicator, of_type("error")))["code"] == "not_found"
    await communicator.send_json_to(
        {"type": "escalation.transfer", "escalation_id": escalation.pk, "queue_id": billing.pk}
    )
    ok = await receive_until(communicator, lambda m: m["type"] in ("ok", "error"))
    assert ok["type"] == "ok", ok
    row = await read(lambda: Escalation.objects.get(pk=escalation.pk))
    assert row.queue_id == billing.pk and row.agent_id is None
    assert row.state in (EscalationState.WAITING, EscalationState.OFFERED)  # routed again
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_losers_of_a_claim_are_answered_without_the_database_and_strangers_still_get_not_found(
    bob, sam, charlie, tenant_a, monkeypatch
):
    from agents.services import escalation_accept, escalation_transfer, taken_in

    @database_sync_to_async
    def setup():
        make_ready(bob, now=timezone.now())
        with tenant_scope([tenant_a.id]):
            escalation = make_escalation(tenant_a)
            escalation_accept(escalation_id=escalation.pk, agent=bob, now=timezone.now())
        return escalation

    escalation = await setup()
    assert taken_in(escalation.pk) == tenant_a.id
    sam_socket, _ = await console_for(sam)

    def database_path(**kwargs):
        raise AssertionError("a known loser must not reach the database")

    def blocking_cache_read(*args, **kwargs):
        raise AssertionError("the claim this process just saw won is remembered: no Redis read on the event loop")

    monkeypatch.setattr("agents.consumers.escalation_accept", database_path)
    monkeypatch.setattr("agents.consumers._visible_escalation", database_path)
    monkeypatch.setattr("agents.services.cache.get", blocking_cache_read)
    await sam_socket.send_json_to({"type": "offer.accept", "escalation_id": escalation.pk})
    error = await receive_until(sam_socket, of_type("error"))
    assert error["code"] == "already_taken"
    monkeypatch.undo()
    stranger, _ = await console_for(charlie)
    await stranger.send_json_to({"type": "offer.accept", "escalation_id": escalation.pk})
    assert (await receive_until(stranger, of_type("error")))["code"] == "not_found"

    @database_sync_to_async
    def transfer():
        with tenant_scope([tenant_a.id]):
            other = Queue.objects.create(tenant=tenant_a, name="billing")
            escalation_transfer(escalation=Escalation.objects.get(pk=escalation.pk), queue=other)

    await transfer()
    assert taken_in(escalation.pk) is None  # waiting again: accepts go to the database
    for socket in (sam_socket, stranger):
        await socket.disconnect()
