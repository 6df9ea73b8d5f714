"""Voice escalations end to end: a signed call asks for a person, an agent accepts and is rung into the
caller's conversation, waiting callers hear their place in line, voicemail past the max wait, hang-ups.
Vonage is the FakeVoiceClient; every NCCO we send is validated against the strict models."""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qsl, urlsplit

import pytest
import time_machine
from django.conf import settings
from django.core.exceptions import PermissionDenied

from agents.models import UNCLAIMED_STATES, AgentProfile, Escalation, EscalationState
from agents.services import escalation_accept
from agents.tasks import escalation_dial_task, queue_announce_task
from conversations import hooks
from conversations.models import Conversation
from flows.models import BusinessHours, Queue
from flows.services import flow_publish
from telephony.client import PhoneTarget, TelephonyError, reset_fake_client
from telephony.ncco import validate_ncco
from tenants.scoping import tenant_scope, unscoped
from tests.agents.test_routing import TUESDAY_NOON, make_ready
from tests.factories import make_flow, make_phone_number
from tests.telephony.test_webhooks import NUMBER, answer, input_url, ncco_of, signed_post

AGENT_PHONE = "+15555550142"
PRESS_ZERO = {"dtmf": {"digits": "0", "timed_out": False}}


@pytest.fixture(autouse=True)
def at_noon():
    with time_machine.travel(TUESDAY_NOON, tick=False) as traveller:
        yield traveller


@pytest.fixture
def line(tenant_a, alice):
    """The business's live number (as in tests.telephony.test_webhooks), with a published script."""
    with tenant_scope([tenant_a.id]):
        BusinessHours.objects.create(tenant=tenant_a, weekly={"tue": [["08:00", "18:00"]]})  # open at noon
        flow = make_flow(tenant_a)
        flow_publish(flow=flow, user=alice)
        return make_phone_number(tenant_a, flow=flow, number=NUMBER, fallback_number="+15555550199")


@pytest.fixture
def fake():
    return reset_fake_client()


@pytest.fixture
def ready_bob(bob):
    make_ready(bob, now=TUESDAY_NOON)
    AgentProfile.objects.filter(user=bob).update(phone_number=AGENT_PHONE)
    return bob


def caller_waits(client, capture, call_uuid="leg-1") -> tuple[Conversation, Escalation]:
    """A signed call that presses 0 for a person; the after-commit hooks run."""
    first = ncco_of(answer(client, call_uuid))
    with capture(execute=True):
        held = ncco_of(signed_post(client, input_url(first), {"uuid": call_uuid, **PRESS_ZERO}))
    assert any(a["action"] == "conversation" for a in held)
    with unscoped("test assertions"):
        conversation = Conversation.objects.get(vonage_uuid=call_uuid)
        escalation = Escalation.objects.get(conversation=conversation)
    return conversation, escalation


def accept(escalation, agent, capture, *, execute=True) -> Escalation:
    with tenant_scope([escalation.tenant_id]), capture(execute=execute):
        return escalation_accept(escalation_id=escalation.pk, agent=agent, now=TUESDAY_NOON)


def dials(fake) -> list[dict]:
    return [c for c in fake.calls if c["method"] == "call_into_conversation"]


def transfers(fake) -> list[dict]:
    return [c for c in fake.calls if c["method"] == "transfer"]


def marker_of(event_url: str) -> dict:
    return dict(parse_qsl(urlsplit(event_url).query))


def state_of(escalation) -> Escalation:
    with unscoped("test assertions"):
        return Escalation.objects.get(pk=escalation.pk)


def test_a_caller_asking_for_a_person_creates_exactly_one_escalation(
    client, line, tenant_a, django_capture_on_commit_callbacks
):
    conversation, escalation = caller_waits(client, django_capture_on_commit_callbacks)
    assert escalation.tenant_id == tenant_a.id and escalation.state in UNCLAIMED_STATES
    assert escalation.queue.name == "front-desk" and escalation.reason_code == "caller_requested_human"
    # The hook firing again (a retried webhook) does not create a second one.
    with unscoped("test setup"):
        transfer = next(a for a in conversation.turns.order_by("seq").last().actions if a["type"] == "transfer")
    hooks.escalated(conversation, transfer)
    with unscoped("test assertions"):
        assert Escalation.objects.filter(conversation=conversation).count() == 1


def test_accepting_rings_the_agent_into_the_callers_conversation_once(
    client, line, tenant_a, ready_bob, fake, django_capture_on_commit_callbacks
):
    conversation, escalation = caller_waits(client, django_capture_on_commit_callbacks)
    accepted = accept(escalation, ready_bob, django_capture_on_commit_callbacks)
    assert accepted.state == EscalationState.ACCEPTED and accepted.dial_attempts == 1
    [dial] = dials(fake)
    assert dial["conversation_name"] == f"sb-{tenant_a.id}-{conversation.pk}"
    assert dial["to"] == PhoneTarget("15555550142") and dial["from_number"] == line.number.lstrip("+")
    assert marker_of(dial["event_url"]) == {"leg": "agent", "escalation": str(escalation.pk), "attempt": "1"}
    assert dial["event_url"].split("?")[0].endswith("/telephony/vonage/event")
    validate_ncco(dial["ncco"])
    assert state_of(escalation).agent_leg_uuid == dial["result"].uuid

    # The task runs again (at-least-once delivery): no second call, also when the leg was not recorded.
    escalation_dial_task(tenant_id=tenant_a.id, escalation_id=escalation.pk, attempt=1)
    with unscoped("forget the leg"):
        Escalation.objects.filter(pk=escalation.pk).update(agent_leg_uuid="")
    escalation_dial_task(tenant_id=tenant_a.id, escalation_id=escalation.pk, attempt=1)
    assert len(dials(fake)) == 1 and fake.deduplicated == 1


def test_an_agent_who_cannot_be_rung_is_refused_before_claiming(
    client, line, bob, fake, django_capture_on_commit_callbacks
):
    make_ready(bob, now=TUESDAY_NOON)  # no phone, no app user
    _, escalation = caller_waits(client, django_capture_on_commit_callbacks)
    with unscoped("test assertions"):
        assert not escalation.offers.exists(), "a call is never offered to someone who cannot be rung"
    with pytest.raises(PermissionDenied, match="phone number or a Vonage app user"):
        accept(escalation, bob, django_capture_on_commit_callbacks)
    after = state_of(escalation)
    assert after.state in UNCLAIMED_STATES and after.agent_id is None and not dials(fake)


def test_the_agent_answering_connects_the_escalation(client, line, ready_bob, fake, django_capture_on_commit_callbacks):
    _, escalation = caller_waits(client, django_capture_on_commit_callbacks)
    accept(escalation, ready_bob, django_capture_on_commit_callbacks)
    [dial] = dials(fake)
    leg = dial["result"].uuid
    marker = marker_of(dial["event_url"])
    assert hooks.leg_event(marker=marker, payload={"uuid": leg, "status": "ringing"})
    assert state_of(escalation).state == EscalationState.ACCEPTED
    assert hooks.leg_event(marker=marker, payload={"uuid": leg, "status": "answered"})
    after = state_of(escalation)
    assert after.state == EscalationState.CONNECTED and after.connected_at == TUESDAY_NOON
    # Events without our marker are not ours.
    assert not hooks.leg_event(marker={}, payload={"uuid": leg, "status": "answered"})


def test_an_unanswered_agent_leg_puts_the_escalation_back_in_the_queue(
    client, line, tenant_a, ready_bob, fake, django_capture_on_commit_callbacks
):
    _, escalation = caller_waits(client, django_capture_on_commit_callbacks)
    accept(escalation, ready_bob, django_capture_on_commit_callbacks)
    [dial] = dials(fake)
    marker = marker_of(dial["event_url"])
    with django_capture_on_commit_callbacks(execute=True):
        hooks.leg_event(marker=marker, payload={"uuid": dial["result"].uuid, "status": "unanswered"})
    after = state_of(escalation)
    assert after.state in UNCLAIMED_STATES and after.agent_id is None and after.agent_leg_uuid == ""
    # Accepted again (attempt 2): a late event of the first attempt changes nothing.
    accept(after, ready_bob, django_capture_on_commit_callbacks)
    assert len(dials(fake)) == 2 and marker_of(dials(fake)[1]["event_url"])["attempt"] == "2"
    hooks.leg_event(marker=marker, payload={"uuid": dial["result"].uuid, "status": "busy"})
    assert state_of(escalation).state == EscalationState.ACCEPTED


def test_waiting_callers_hear_their_place_in_line(
    client, line, tenant_a, fake, at_noon, django_capture_on_commit_callbacks
):
    conversation, escalation = caller_waits(client, django_capture_on_commit_callbacks)
    assert queue_announce_task() == {"announced": 1, "expired": 0}
    [move] = transfers(fake)
    assert move["uuid"] == "leg-1"
    validate_ncco(move["ncco"])
    talk, hold = move["ncco"]
    assert talk["text"] == "You are number 1 in line. Thank you for waiting."
    assert hold["action"] == "conversation" and hold["name"] == f"sb-{tenant_a.id}-{conversation.pk}"
    assert hold["startOnEnter"] is False and hold["musicOnHoldUrl"][0].endswith("hold.mp3")

    at_noon.shift(dt.timedelta(seconds=30))  # same place, under a minute: nothing new to say
    assert queue_announce_task() == {"announced": 0, "expired": 0}
    second, _ = caller_waits(client, django_capture_on_commit_callbacks, call_uuid="leg-2")
    assert queue_announce_task() == {"announced": 1, "expired": 0}
    assert transfers(fake)[-1]["uuid"] == "leg-2" and "number 2 in line" in transfers(fake)[-1]["ncco"][0]["text"]
    at_noon.shift(dt.timedelta(seconds=31))  # a minute since the first caller heard it
    assert queue_announce_task() == {"announced": 1, "expired": 0}
    assert transfers(fake)[-1]["uuid"] == "leg-1"
    assert state_of(escalation).announced_place == 1


def test_past_the_max_wait_the_caller_is_offered_a_callback_or_voicemail(
    client, line, fake, at_noon, django_capture_on_commit_callbacks
):
    conversation, escalation = caller_waits(client, django_capture_on_commit_callbacks)
    with unscoped("test setup"):
        Queue.objects.filter(pk=escalation.queue_id).update(max_wait_seconds=120)
    at_noon.shift(dt.timedelta(seconds=121))
    assert queue_announce_task() == {"announced": 0, "expired": 1}
    [move] = transfers(fake)
    assert move["uuid"] == "leg-1"
    validate_ncco(move["ncco"])
    assert "still busy" in move["ncco"][0]["text"] and "press 1" in move["ncco"][0]["text"]
    choice = next(a for a in move["ncco"] if a["action"] == "input")
    assert choice["dtmf"]["maxDigits"] == 1
    assert choice["eventUrl"][0].split("?")[0].endswith(f"/telephony/vonage/input/{conversation.pk}/")
    assert "offer=callback" in choice["eventUrl"][0] and "src=max_wait" in choice["eventUrl"][0]
    after = state_of(escalation)
    assert after.state == EscalationState.EXPIRED and after.ended_at is not None
    assert queue_announce_task() == {"announced": 0, "expired": 0}  # never twice

    # Pressing 2 (or saying nothing) leaves a message instead.
    url = choice["eventUrl"][0].replace(settings.SITE_URL, "")
    voicemail = ncco_of(signed_post(client, url, {"uuid": "leg-1", "dtmf": {"digits": "2", "timed_out": False}}))
    record = next(a for a in voicemail if a["action"] == "record")
    assert record["eventUrl"][0].split("?")[0].endswith(f"/telephony/vonage/recording/{conversation.pk}/")


def test_a_withheld_number_past_the_max_wait_goes_straight_to_voicemail(
    client, line, fake, at_noon, django_capture_on_commit_callbacks
):
    conversation, escalation = caller_waits(client, django_capture_on_commit_callbacks)
    with unscoped("test setup"):
        Queue.objects.filter(pk=escalation.queue_id).update(max_wait_seconds=120)
        Conversation.objects.filter(pk=conversation.pk).update(caller_number="")
    at_noon.shift(dt.timedelta(seconds=121))
    assert queue_announce_task() == {"announced": 0, "expired": 1}
    [move] = transfers(fake)
    assert not any(a["action"] == "input" for a in move["ncco"])
    assert any(a["action"] == "record" for a in move["ncco"])


def test_a_caller_hanging_up_abandons_the_escalation(client, line, fake, django_capture_on_commit_callbacks):
    _, escalation = caller_waits(client, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        response = signed_post(client, "/telephony/vonage/event", {"uuid": "leg-1", "status": "completed"})
    assert response.status_code == 200
    assert state_of(escalation).state == EscalationState.ABANDONED
    assert queue_announce_task() == {"announced": 0, "expired": 0}


def test_tasks_never_touch_another_tenants_escalation(
    client, line, tenant_a, tenant_b, ready_bob, fake, django_capture_on_commit_callbacks
):
    _, escalation = caller_waits(client, django_capture_on_commit_callbacks)
    accept(escalation, ready_bob, django_capture_on_commit_callbacks, execute=False)  # the dial not sent yet
    assert escalation_dial_task(tenant_id=tenant_b.id, escalation_id=escalation.pk, attempt=1) is None
    assert not fake.calls and state_of(escalation).agent_leg_uuid == ""
    with tenant_scope([tenant_b.id]):
        from agents.voice import queue_announce

        assert queue_announce(now=TUESDAY_NOON) == {"announced": 0, "expired": 0}
    assert not fake.calls
    assert escalation_dial_task(tenant_id=tenant_a.id, escalation_id=escalation.pk, attempt=1)
    assert len(dials(fake)) == 1


def test_a_caller_hanging_up_while_the_agent_is_rung_abandons_and_hangs_up_the_agent_leg(
    client, line, ready_bob, fake, django_capture_on_commit_callbacks
):
    _, escalation = caller_waits(client, django_capture_on_commit_callbacks)
    accept(escalation, ready_bob, django_capture_on_commit_callbacks)
    [dial] = dials(fake)
    with django_capture_on_commit_callbacks(execute=True):
        signed_post(client, "/telephony/vonage/event", {"uuid": "leg-1", "status": "completed"})
    assert state_of(escalation).state == EscalationState.ABANDONED
    assert {"method": "hangup", "uuid": dial["result"].uuid} in fake.calls


def test_a_call_the_ai_handled_alone_ends_without_looking_for_escalations(
    client, line, fake, django_capture_on_commit_callbacks
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    ncco_of(answer(client, "solo-1"))
    with CaptureQueriesContext(connection) as captured, django_capture_on_commit_callbacks(execute=True):
        signed_post(client, "/telephony/vonage/event", {"uuid": "solo-1", "status": "completed"})
    with unscoped("test assertions"):
        assert Conversation.objects.get(vonage_uuid="solo-1").ended_at is not None
    assert not [q["sql"] for q in captured.captured_queries if "agents_escalation" in q["sql"]]


def test_a_temporary_vonage_failure_is_retried_and_a_permanent_one_requeues(
    client, line, ready_bob, fake, django_capture_on_commit_callbacks
):
    _, escalation = caller_waits(client, django_capture_on_commit_callbacks)
    fake.fail_next(TelephonyError("create_call: Vonage answered 503", retryable=True, status_code=503))
    accept(escalation, ready_bob, django_capture_on_commit_callbacks)
    assert len(fake.failures) == 1 and len(dials(fake)) == 1
    assert state_of(escalation).state == EscalationState.ACCEPTED

    with django_capture_on_commit_callbacks(execute=True):
        hooks.leg_event(
            marker=marker_of(dials(fake)[0]["event_url"]), payload={"uuid": "x", "status": "failed"}
        )  # another leg's event is ignored
    assert state_of(escalation).state == EscalationState.ACCEPTED
    with unscoped("test setup"):
        Escalation.objects.filter(pk=escalation.pk).update(state=EscalationState.WAITING, agent=None)
    fake.fail_next(TelephonyError("create_call: invalid request", retryable=False))
    accept(state_of(escalation), ready_bob, django_capture_on_commit_callbacks)
    after = state_of(escalation)
    assert len(fake.failures) == 2 and after.state in UNCLAIMED_STATES and after.agent_id is None


def test_vonage_failing_on_every_retry_puts_the_escalation_back_in_the_queue(
    client, line, ready_bob, fake, django_capture_on_commit_callbacks
):
    _, escalation = caller_waits(client, django_capture_on_commit_callbacks)
    for _ in range(4):
        fake.fail_next(TelephonyError("create_call: Vonage answered 503", retryable=True, status_code=503))
    accept(escalation, ready_bob, django_capture_on_commit_callbacks)
    after = state_of(escalation)
    assert len(fake.failures) == 4 and not dials(fake)  # the first try and 3 retries
    assert after.state in UNCLAIMED_STATES and after.agent_id is None


def test_the_agent_legs_signed_status_webhook_connects_the_escalation(
    client, line, ready_bob, fake, django_capture_on_commit_callbacks
):
    """The same as above, through the real signed event webhook Vonage calls for the agent's leg."""
    from tests.telephony.test_webhooks import signed_post

    _, escalation = caller_waits(client, django_capture_on_commit_callbacks)
    accept(escalation, ready_bob, django_capture_on_commit_callbacks)
    [dial] = dials(fake)
    path = dial["event_url"].split("://", 1)[1].split("/", 1)[1]
    response = signed_post(client, "/" + path, {"uuid": dial["result"].uuid, "status": "answered"})
    assert response.status_code == 200
    assert state_of(escalation).state == EscalationState.CONNECTED
