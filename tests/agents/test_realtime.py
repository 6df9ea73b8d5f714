"""The realtime door: schemas per event type, groups, and sending only after commit."""

from __future__ import annotations

import datetime as dt

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from pydantic import ValidationError

from agents import realtime
from agents.models import PresenceState
from agents.realtime import SCHEMAS, publish
from agents.services import escalation_accept, escalation_route, presence_set
from tenants.scoping import tenant_scope
from tests.agents.test_routing import TUESDAY_NOON, make_escalation, make_ready


@pytest.fixture
def sent(monkeypatch):
    calls: list[tuple[list[str], dict]] = []
    monkeypatch.setattr(realtime, "_send", lambda groups, message: calls.append((groups, message)))
    return calls


def test_publish_sends_only_after_commit(tenant_a, sent, django_capture_on_commit_callbacks):
    with tenant_scope([tenant_a.id]):
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            escalation = make_escalation(tenant_a, now=TUESDAY_NOON)
            assert sent == []  # nothing leaves before the transaction commits
        waiting = [c for c in callbacks if c.__module__ == "agents.realtime"]
        assert waiting, "escalation_create must publish escalation.waiting on commit"
        for callback in waiting:
            callback()
    groups, message = sent[0]
    assert groups == [f"tenant.{tenant_a.id}", f"queue.{escalation.queue_id}"]
    assert message["type"] == "tenant.event"
    assert message["event"]["type"] == "escalation.waiting"
    assert message["event"]["escalation_id"] == escalation.pk


def test_new_waiting_work_carries_the_consoles_item_encoded_once(
    tenant_a, alice, sent, django_capture_on_commit_callbacks
):
    """A console adds new work from the event alone, exactly as its snapshot would list it."""
    import json

    from agents.consumers import console_snapshot

    with tenant_scope([tenant_a.id]):
        with django_capture_on_commit_callbacks(execute=True):
            escalation = make_escalation(tenant_a, now=TUESDAY_NOON)
        snapshot = console_snapshot(user=alice, tenant_ids=[tenant_a.id], now=TUESDAY_NOON)
    _, message = next((g, m) for g, m in sent if m["event"]["type"] == "escalation.waiting")
    item = message["event"]["item"]
    listed = next(w for w in snapshot["waiting"] if w["escalation_id"] == escalation.pk)
    for field in ("tenant_id", "tenant_name", "queue_id", "queue_name", "state", "priority", "reason_text", "kind"):
        assert item[field] == listed[field], field
    assert item["waiting_since"] == listed["waiting_since"]
    assert json.loads(message["text"]) == message["event"]  # consoles forward this text as it is


def test_offer_and_accept_reach_the_agent_group(tenant_a, bob, sent, django_capture_on_commit_callbacks):
    with tenant_scope([tenant_a.id]):
        make_ready(bob, now=TUESDAY_NOON)
        escalation = make_escalation(tenant_a, now=TUESDAY_NOON)
        with django_capture_on_commit_callbacks(execute=True):
            escalation_route(escalation=escalation, now=TUESDAY_NOON)
            escalation_accept(escalation_id=escalation.pk, agent=bob, now=TUESDAY_NOON)
    types = [(m["event"]["type"], g) for g, m in sent]
    assert ("escalation.offered", [f"tenant.{tenant_a.id}", f"queue.{escalation.queue_id}", f"agent.{bob.pk}"]) in types
    assert [t for t, _ in types] == ["escalation.offered", "escalation.accepted"]


def test_a_won_broadcast_is_told_to_everyone_once_and_withdrawn_only_from_the_other_offers(
    tenant_a, bob, sam, alice, sent, django_capture_on_commit_callbacks
):
    from agents.services import escalation_route
    from flows.models import Queue, RoutingMode

    with tenant_scope([tenant_a.id]):
        Queue.objects.create(tenant=tenant_a, name="front-desk", routing_mode=RoutingMode.BROADCAST)
        for user in (bob, sam, alice):
            make_ready(user, now=TUESDAY_NOON)
        escalation = make_escalation(tenant_a, now=TUESDAY_NOON)
        escalation_route(escalation=escalation, now=TUESDAY_NOON)
        sent.clear()
        with django_capture_on_commit_callbacks(execute=True):
            escalation_accept(escalation_id=escalation.pk, agent=sam, now=TUESDAY_NOON)
    by_type = {m["event"]["type"]: g for g, m in sent}
    assert f"tenant.{tenant_a.id}" in by_type["escalation.accepted"]  # every console drops it from its lists
    assert sorted(by_type["escalation.withdrawn"]) == sorted([f"agent.{bob.pk}", f"agent.{alice.pk}"])


def test_presence_change_goes_to_each_tenant_of_the_person(tenant_a, nina, sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        presence_set(user=nina, state=PresenceState.AVAILABLE, now=TUESDAY_NOON)
    (groups, message), *_ = sent
    assert groups == [f"tenant.{tenant_a.id}", f"agent.{nina.pk}"]
    assert message["event"] == {
        "type": "presence.changed",
        "user_id": nina.pk,
        "state": "available",
        "reason": "",
        "since": "2030-01-08T17:00:00Z",
    }


def test_unknown_event_type_and_bad_payload_are_refused(sent):
    with pytest.raises(ValueError, match="Unknown realtime event type"):
        publish("escalation.teleported", {}, tenant_id=1)
    with pytest.raises(ValidationError):
        publish("escalation.offered", {"escalation_id": 1}, tenant_id=1)
    with pytest.raises(ValidationError):
        publish("presence.changed", {"user_id": 1, "state": "asleep", "reason": "", "since": TUESDAY_NOON}, tenant_id=1)


def test_every_event_type_has_a_schema():
    assert set(SCHEMAS) == {
        "escalation.waiting",
        "escalation.offered",
        "escalation.accepted",
        "escalation.wrapped",
        "escalation.withdrawn",
        "presence.changed",
        "voicemail.new",
        "voicemail.transcribed",
        "voicemail.handled",
        "callback.call_state",
        "callback.changed",
    }


@pytest.mark.django_db
def test_message_arrives_on_the_channel_layer(django_capture_on_commit_callbacks):
    """Through the configured layer (in-memory locally, Redis when REDIS_URL is set)."""
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)("agent.424242", channel)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            publish(
                "escalation.offered",
                {
                    "escalation_id": 7,
                    "queue_id": 3,
                    "agent_id": 424242,
                    "expires_at": dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
                },
                tenant_id=999999,
                agent_ids=[424242],
            )
        message = async_to_sync(layer.receive)(channel)
    finally:
        async_to_sync(layer.group_discard)("agent.424242", channel)
    assert message["event"]["type"] == "escalation.offered"
    assert message["event"]["expires_at"] == "2030-01-01T00:00:00Z"


@pytest.mark.redis
@pytest.mark.django_db
def test_a_workers_events_reach_the_console_in_commit_order_over_one_loop(django_capture_on_commit_callbacks):
    """Celery tasks publish from threads with no event loop: every send goes through the process's one
    publisher loop (one Redis connection), in order, instead of a new loop and connection per group."""
    import threading

    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)("agent.434343", channel)

    def worker() -> None:
        from django.db import connection

        try:
            for n in range(1, 31):
                with django_capture_on_commit_callbacks(execute=True):
                    publish(
                        "escalation.accepted",
                        {"escalation_id": n, "queue_id": 3, "agent_id": 434343, "accepted_at": TUESDAY_NOON},
                        tenant_id=999999,
                        agent_ids=[434343],
                    )
        finally:
            connection.close()

    try:
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join(timeout=30)

        async def receive_all() -> list[int]:
            return [(await layer.receive(channel))["event"]["escalation_id"] for _ in range(30)]

        received = async_to_sync(receive_all)()
    finally:
        async_to_sync(layer.group_discard)("agent.434343", channel)
    assert received == list(range(1, 31))
    assert [t.name for t in threading.enumerate()].count("realtime-publisher") == 1
