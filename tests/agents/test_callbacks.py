"""Callbacks end to end: promised in the call (flow step, past the max wait, after hours), due times from the
one calendar (holidays, DST), the SMS confirmation, dispatch as work that keeps its place, the agent's
"Call back" (agent rung first, customer bridged, once per attempt), outcomes and retries, overdue flags,
and isolation. Vonage is the FakeVoiceClient; every NCCO sent is validated against the strict models."""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qsl, urlsplit

import pytest
import time_machine
from django.conf import settings
from django.core.exceptions import PermissionDenied

from agents.callbacks import callback_dial, callback_finish, callback_leg_event, callbacks_flag_overdue
from agents.models import AgentProfile, Escalation, EscalationKind, EscalationOffer, EscalationState
from agents.selectors import waiting_work
from agents.services import escalation_accept, escalation_wrap
from agents.tasks import callback_dial_task, callback_sms_task, callbacks_dispatch_task
from conversations.callbacks import (
    CallbackError,
    callback_due_at,
    callback_schedule,
    normalise_phone,
    when_text,
)
from conversations.models import Callback, CallbackAttempt, CallbackPolicy, CallbackState
from flows.models import BusinessHours, Holiday, Queue
from telephony.client import TelephonyError, reset_fake_client
from telephony.ncco import validate_ncco
from tenants.models import Coverage, CoverageMode
from tenants.scoping import tenant_scope, unscoped
from tests.agents.test_routing import make_ready
from tests.agents.test_voice import caller_waits, transfers
from tests.factories import make_callback, make_conversation, make_escalation, make_phone_number
from tests.telephony.test_webhooks import NUMBER, ncco_of, signed_post

NY = "America/New_York"
TUESDAY_NOON = dt.datetime(2030, 1, 8, 17, 0, tzinfo=dt.UTC)  # 12:00 in New York
TUESDAY_NIGHT = dt.datetime(2030, 1, 9, 3, 0, tzinfo=dt.UTC)  # 22:00 in New York
WEDNESDAY_8AM = dt.datetime(2030, 1, 9, 13, 0, tzinfo=dt.UTC)
AGENT_PHONE = "+15555550142"
WEEKDAYS_8_TO_6 = {d: [["08:00", "18:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}


@pytest.fixture
def clock():
    with time_machine.travel(TUESDAY_NOON, tick=False) as traveller:
        yield traveller


@pytest.fixture
def fake():
    return reset_fake_client()


@pytest.fixture
def business(tenant_a, alice):
    """Open weekdays 08:00-18:00 New York, a front desk queue and a phone number to call from."""
    from flows.services import flow_publish
    from tests.factories import make_flow

    with tenant_scope([tenant_a.id]):
        BusinessHours.objects.create(tenant=tenant_a, weekly=WEEKDAYS_8_TO_6)
        Queue.objects.get_or_create(tenant=tenant_a, name="front-desk")
        flow = make_flow(tenant_a)
        flow_publish(flow=flow, user=alice)
        make_phone_number(tenant_a, flow=flow, number=NUMBER)
    return tenant_a


@pytest.fixture
def ready_bob(bob, clock):
    make_ready(bob, now=TUESDAY_NOON)
    AgentProfile.objects.filter(user=bob).update(phone_number=AGENT_PHONE)
    return bob


def schedule(tenant, capture, **kwargs) -> Callback:
    kwargs.setdefault("phone", "+1 (555) 555-0123")
    kwargs.setdefault("source", "flow")
    with tenant_scope([tenant.id]), capture(execute=True):
        return callback_schedule(tenant_id=tenant.id, **kwargs)


def fresh(obj):
    with unscoped("test assertions"):
        return type(obj).objects.get(pk=obj.pk)


def sms(fake) -> list[dict]:
    return [c for c in fake.calls if c["method"] == "send_sms"]


def bridges(fake) -> list[dict]:
    return [c for c in fake.calls if c["method"] == "call_agent_then_customer"]


def dispatch(capture) -> list[Escalation]:
    with capture(execute=True):
        callbacks_dispatch_task()
    with unscoped("test assertions"):
        return list(Escalation.objects.filter(kind=EscalationKind.CALLBACK).order_by("id"))


# --- due times from the one calendar ---------------------------------------------------------------
def test_due_times_follow_the_calendar_holidays_and_dst(business):
    with tenant_scope([business.id]):
        # Open: as soon as possible means now.
        assert callback_due_at(tenant=business, preference="asap", requested_for=None, now=TUESDAY_NOON) == (
            TUESDAY_NOON
        )
        # Closed at night: the next opening, 08:00 New York.
        assert callback_due_at(tenant=business, preference="asap", requested_for=None, now=TUESDAY_NIGHT) == (
            WEDNESDAY_8AM
        )
        # A chosen time while closed moves to the next opening; one in opening hours is kept.
        saturday = dt.datetime(2030, 1, 12, 15, 0, tzinfo=dt.UTC)
        monday_8 = dt.datetime(2030, 1, 14, 13, 0, tzinfo=dt.UTC)
        assert callback_due_at(tenant=business, preference="at", requested_for=saturday, now=TUESDAY_NOON) == monday_8
        thursday_10 = dt.datetime(2030, 1, 10, 15, 0, tzinfo=dt.UTC)
        assert callback_due_at(tenant=business, preference="at", requested_for=thursday_10, now=TUESDAY_NOON) == (
            thursday_10
        )
        # A holiday is skipped (a new one applies at once, no republishing).
        Holiday.objects.create(tenant=business, date=dt.date(2030, 1, 9), name="Staff day")
        thursday_8 = dt.datetime(2030, 1, 10, 13, 0, tzinfo=dt.UTC)
        assert callback_due_at(tenant=business, preference="asap", requested_for=None, now=TUESDAY_NIGHT) == (
            thursday_8
        )
        # DST: asked on Friday night before the spring change (March 10, 2030), due Monday 08:00 EDT = 12:00 UTC.
        friday_night = dt.datetime(2030, 3, 9, 3, 0, tzinfo=dt.UTC)
        assert callback_due_at(tenant=business, preference="asap", requested_for=None, now=friday_night) == (
            dt.datetime(2030, 3, 11, 12, 0, tzinfo=dt.UTC)
        )


def test_phone_numbers_are_checked_and_normalised():
    assert normalise_phone("+1 (555) 555-0123") == "+15555550123"
    assert normalise_phone("0044 20 7946 0018") == "+442079460018"
    with pytest.raises(CallbackError, match="not a phone number we can call back"):
        normalise_phone("call me maybe")
    with pytest.raises(CallbackError):
        normalise_phone("")


def test_when_text_speaks_the_business_time_zone():
    assert when_text(TUESDAY_NOON, tz=NY, now=TUESDAY_NOON) == "shortly"
    assert when_text(WEDNESDAY_8AM, tz=NY, now=TUESDAY_NIGHT) == "tomorrow at 8 AM"
    assert when_text(dt.datetime(2030, 1, 8, 21, 30, tzinfo=dt.UTC), tz=NY, now=TUESDAY_NOON) == "today at 4:30 PM"
    assert when_text(dt.datetime(2030, 1, 14, 13, 0, tzinfo=dt.UTC), tz=NY, now=TUESDAY_NOON) == (
        "on Monday, January 14 at 8 AM"
    )


# --- promising ------------------------------------------------------------------------------------------
def test_a_callback_asked_for_at_night_is_due_at_opening_and_confirmed_by_sms_once(
    business, fake, django_capture_on_commit_callbacks
):
    with time_machine.travel(TUESDAY_NIGHT, tick=False):
        with tenant_scope([business.id]):
            conversation = make_conversation(business, dialled_number=NUMBER)
        callback = schedule(business, django_capture_on_commit_callbacks, conversation=conversation)
        assert callback.due_at == WEDNESDAY_8AM and callback.phone == "+15555550123"
        assert fresh(conversation).outcome == "callback"
        [text] = sms(fake)
        assert text["to"] == "15555550123" and text["from_"] == NUMBER.lstrip("+")
        assert text["text"] == f"{business.name}: thanks for calling. We will call you back tomorrow at 8 AM."
        # A retried webhook promises nothing twice; a redelivered SMS task sends nothing twice.
        again = schedule(business, django_capture_on_commit_callbacks, conversation=conversation)
        assert again.pk == callback.pk
        assert callback_sms_task(tenant_id=business.id, callback_id=callback.pk) == "already_sent"
        assert len(sms(fake)) == 1
        # Nothing is dispatched before it is due.
        assert dispatch(django_capture_on_commit_callbacks) == []


def test_the_sms_uses_the_business_wording_and_a_failed_send_is_retried(
    business, fake, django_capture_on_commit_callbacks
):
    with tenant_scope([business.id]):
        CallbackPolicy.objects.create(tenant=business, sms_template="{business}: we'll ring {phone} {when}. {oops}")
    fake.fail_next(TelephonyError("send_sms: 503", retryable=True))
    with time_machine.travel(TUESDAY_NIGHT, tick=False):
        callback = schedule(business, django_capture_on_commit_callbacks)
    [text] = sms(fake)  # the eager retry sent it
    assert text["text"] == f"{business.name}: we'll ring +15555550123 tomorrow at 8 AM. {{oops}}"
    assert fresh(callback).sms_sent_at is not None


def test_an_unusable_number_is_refused_with_a_reason(business, django_capture_on_commit_callbacks):
    with pytest.raises(CallbackError, match="international form"):
        schedule(business, django_capture_on_commit_callbacks, phone="12")
    with unscoped("test assertions"):
        assert not Callback.objects.exists()


def test_the_flow_step_promises_a_callback_at_the_chosen_time(
    business, alice, fake, django_capture_on_commit_callbacks
):
    """A script asks when to call (a datetime slot) and promises it: the callback is due then."""
    from conversations.services import conversation_record_turn
    from flows.definition import FlowDefinition
    from flows.engine import Event, compile_flow, start, step
    from flows.runtime import EmptyUnderstander

    defn = FlowDefinition.model_validate(
        {
            "name": "Callbacks",
            "start": "when",
            "hours": {"timezone": NY, "weekly": WEEKDAYS_8_TO_6},
            "steps": [
                {
                    "id": "when",
                    "kind": "ask",
                    "slot": "when",
                    "slot_type": "datetime",
                    "prompt": "When?",
                    "next": "cb",
                    "on_fail": "cb",
                },
                {"id": "cb", "kind": "offer_callback", "prompt": "We'll call you then.", "time_slot": "when"},
            ],
        }
    )
    flow = compile_flow(defn, EmptyUnderstander())
    state, _ = start(flow, Event.start(TUESDAY_NOON))
    state, actions = step(flow, state, Event.utterance("thursday at 10 am", TUESDAY_NOON))
    offer = next(a for a in actions if a.type == "offer_callback")
    assert offer.when and offer.when.startswith("2030-01-10T10:00")
    with time_machine.travel(TUESDAY_NOON, tick=False), tenant_scope([business.id]):
        conversation = make_conversation(business)
        with django_capture_on_commit_callbacks(execute=True):
            conversation_record_turn(conversation=conversation, event_kind="utterance", state=state, actions=actions)
        callback = Callback.objects.get(conversation=conversation)
    assert callback.due_at == dt.datetime(2030, 1, 10, 15, 0, tzinfo=dt.UTC)
    assert callback.preference == "at" and callback.source == "flow" and callback.phone == "+15555550111"


# --- past the max wait and after hours ---------------------------------------------------------------
@pytest.fixture
def line(business):
    return business


def test_pressing_1_past_the_max_wait_keeps_the_callers_place(
    client, line, fake, clock, django_capture_on_commit_callbacks
):
    conversation, escalation = caller_waits(client, django_capture_on_commit_callbacks)
    with unscoped("test setup"):
        Queue.objects.filter(pk=escalation.queue_id).update(max_wait_seconds=120)
    clock.shift(dt.timedelta(seconds=121))
    from agents.tasks import queue_announce_task

    assert queue_announce_task()["expired"] == 1
    [offer] = transfers(fake)
    url = next(a for a in offer["ncco"] if a["action"] == "input")["eventUrl"][0].replace(settings.SITE_URL, "")
    with django_capture_on_commit_callbacks(execute=True):
        said = ncco_of(signed_post(client, url, {"uuid": "leg-1", "dtmf": {"digits": "1", "timed_out": False}}))
    assert "We will call you back at the number you are calling from, shortly." in said[0]["text"]
    with unscoped("test assertions"):
        callback = Callback.objects.get(conversation=conversation)
    assert callback.source == "max_wait" and callback.place_since == escalation.created_at
    assert fresh(escalation).state == EscalationState.CALLBACK
    assert len(sms(fake)) == 1
    # It is due now: dispatched at once, ahead of a live call that arrived later with the same priority.
    with tenant_scope([line.id]):
        later = make_escalation(line, queue_id=escalation.queue_id, created_at=TUESDAY_NOON + dt.timedelta(seconds=30))
        work = list(waiting_work(tenant_ids=[line.id], now=TUESDAY_NOON + dt.timedelta(seconds=200)))
    assert [w.kind for w in work[:2]] == [EscalationKind.CALLBACK, EscalationKind.LIVE] and work[1].pk == later.pk


def test_after_hours_with_nobody_covering_the_caller_is_offered_a_callback(
    client, business, fake, django_capture_on_commit_callbacks
):
    with time_machine.travel(TUESDAY_NIGHT, tick=False):
        conversation, escalation = caller_waits(client, django_capture_on_commit_callbacks)
        assert fresh(escalation).state == EscalationState.EXPIRED
        [offer] = transfers(fake)
        validate_ncco(offer["ncco"])
        assert "closed right now" in offer["ncco"][0]["text"]
        url = next(a for a in offer["ncco"] if a["action"] == "input")["eventUrl"][0]
        assert dict(parse_qsl(urlsplit(url).query))["src"] == "after_hours"
        with django_capture_on_commit_callbacks(execute=True):
            said = ncco_of(
                signed_post(
                    client,
                    url.replace(settings.SITE_URL, ""),
                    {
                        "uuid": "leg-1",
                        "speech": {"results": [{"text": "yes please call me back", "confidence": "0.9"}]},
                    },
                )
            )
        assert "tomorrow at 8 AM" in said[0]["text"]
        with unscoped("test assertions"):
            callback = Callback.objects.get(conversation=conversation)
        assert callback.source == "after_hours" and callback.due_at == WEDNESDAY_8AM


def test_after_hours_with_agency_coverage_the_caller_waits_for_the_agency(
    client, business, agency, fake, django_capture_on_commit_callbacks
):
    with unscoped("test setup"):
        Coverage.objects.create(tenant=business, agency=agency, mode=CoverageMode.AFTER_HOURS, active=True)
    with time_machine.travel(TUESDAY_NIGHT, tick=False):
        _, escalation = caller_waits(client, django_capture_on_commit_callbacks)
    assert fresh(escalation).state == EscalationState.WAITING
    assert transfers(fake) == []


# --- dispatch and the agent's "Call back" --------------------------------------------------------------
@pytest.fixture
def due_callback(business, clock, django_capture_on_commit_callbacks):
    with tenant_scope([business.id]):
        conversation = make_conversation(business, dialled_number=NUMBER)
    return schedule(business, django_capture_on_commit_callbacks, conversation=conversation, name="Pat Lee")


def take(escalation, agent, capture):
    with tenant_scope([escalation.tenant_id]), capture(execute=True):
        return escalation_accept(escalation_id=escalation.pk, agent=agent, now=TUESDAY_NOON)


def test_a_due_callback_is_offered_taken_dialled_once_and_finished(
    business, ready_bob, due_callback, fake, django_capture_on_commit_callbacks
):
    [escalation] = dispatch(django_capture_on_commit_callbacks)
    assert dispatch(django_capture_on_commit_callbacks) == [escalation]  # claimed once
    assert escalation.callback_id == due_callback.pk and escalation.created_at == due_callback.place_since
    with unscoped("test assertions"):
        assert EscalationOffer.objects.filter(escalation=escalation, agent=ready_bob).exists()
    assert fresh(due_callback).state == CallbackState.QUEUED and fresh(due_callback).first_offered_at is not None
    taken = take(escalation, ready_bob, django_capture_on_commit_callbacks)
    assert taken.state == EscalationState.ACCEPTED
    assert bridges(fake) == []  # nothing is dialled until the agent presses "Call back"

    with tenant_scope([business.id]), django_capture_on_commit_callbacks(execute=True):
        attempt = callback_dial(escalation_id=escalation.pk, agent=ready_bob, now=TUESDAY_NOON)
    [call] = bridges(fake)
    validate_ncco(call["ncco"])
    assert call["to"].number == AGENT_PHONE.lstrip("+") and call["customer_number"] == "15555550123"
    assert call["idempotency_key"] == fresh(attempt).dial_key == f"callback-{due_callback.pk}-attempt-1-ring-1"
    assert "Calling back Pat Lee for" in call["ncco"][0]["text"]
    connect = call["ncco"][1]
    assert connect["endpoint"] == [{"type": "phone", "number": "15555550123"}] and connect["from"] == NUMBER.lstrip("+")

    # Pressing again while it rings, or a redelivered task, dials nothing more.
    with tenant_scope([business.id]), pytest.raises(PermissionDenied, match="already being dialled"):
        callback_dial(escalation_id=escalation.pk, agent=ready_bob, now=TUESDAY_NOON)
    callback_dial_task(tenant_id=business.id, attempt_id=attempt.pk, ring=1)
    assert len(bridges(fake)) == 1

    # The agent answers, the customer answers: connected, "reached" suggested.
    marker = dict(parse_qsl(urlsplit(call["event_url"]).query))
    with tenant_scope([business.id]), django_capture_on_commit_callbacks(execute=True):
        callback_leg_event(attempt_id=attempt.pk, ring=1, leg=marker["leg"], payload={"status": "answered"})
        callback_leg_event(attempt_id=attempt.pk, ring=1, leg="callback-customer", payload={"status": "answered"})
    assert fresh(escalation).state == EscalationState.CONNECTED
    assert fresh(attempt).customer_status == "answered" and fresh(attempt).bridged_at is not None

    with tenant_scope([business.id]), pytest.raises(PermissionDenied, match="Record how the callback went"):
        escalation_wrap(escalation=fresh(escalation), agent=ready_bob, disposition="resolved")
    with tenant_scope([business.id]), django_capture_on_commit_callbacks(execute=True):
        done = callback_finish(escalation_id=escalation.pk, agent=ready_bob, outcome="reached", notes="Booked Thu 10am")
    assert done.state == CallbackState.COMPLETED and done.closed_at is not None and done.last_outcome == "reached"
    assert fresh(escalation).state == EscalationState.WRAPPED and fresh(escalation).disposition == "callback_reached"
    assert fresh(attempt).outcome == "reached"


def test_an_agent_phone_that_does_not_answer_may_be_rung_again_without_dialling_the_customer(
    business, ready_bob, due_callback, fake, django_capture_on_commit_callbacks
):
    [escalation] = dispatch(django_capture_on_commit_callbacks)
    take(escalation, ready_bob, django_capture_on_commit_callbacks)
    with tenant_scope([business.id]), django_capture_on_commit_callbacks(execute=True):
        attempt = callback_dial(escalation_id=escalation.pk, agent=ready_bob, now=TUESDAY_NOON)
    with tenant_scope([business.id]), django_capture_on_commit_callbacks(execute=True):
        callback_leg_event(attempt_id=attempt.pk, ring=1, leg="callback", payload={"status": "unanswered"})
        callback_leg_event(attempt_id=attempt.pk, ring=1, leg="callback", payload={"status": "unanswered"})  # retry
    with tenant_scope([business.id]), django_capture_on_commit_callbacks(execute=True):
        callback_dial(escalation_id=escalation.pk, agent=ready_bob, now=TUESDAY_NOON)
    with tenant_scope([business.id]), django_capture_on_commit_callbacks(execute=True):
        # A late event of the first ring changes nothing for the second.
        callback_leg_event(attempt_id=attempt.pk, ring=1, leg="callback", payload={"status": "answered"})
    keys = [c["idempotency_key"] for c in bridges(fake)]
    assert keys == [f"callback-{due_callback.pk}-attempt-1-ring-1", f"callback-{due_callback.pk}-attempt-1-ring-2"]
    assert fresh(attempt).agent_leg_status == "ringing" and fresh(escalation).state == EscalationState.ACCEPTED


def test_no_answer_retries_with_backoff_in_opening_hours_until_the_attempt_limit(
    business, ready_bob, clock, fake, django_capture_on_commit_callbacks
):
    with tenant_scope([business.id]):
        CallbackPolicy.objects.create(tenant=business, max_attempts=2, retry_after_minutes=30)
    callback = schedule(business, django_capture_on_commit_callbacks)
    [first] = dispatch(django_capture_on_commit_callbacks)
    take(first, ready_bob, django_capture_on_commit_callbacks)
    with tenant_scope([business.id]), django_capture_on_commit_callbacks(execute=True):
        again = callback_finish(escalation_id=first.pk, agent=ready_bob, outcome="no_answer")
    assert again.state == CallbackState.SCHEDULED and again.attempts == 1
    assert again.due_at == TUESDAY_NOON + dt.timedelta(minutes=30)
    assert dispatch(django_capture_on_commit_callbacks) == [first]  # not due yet

    clock.move_to(TUESDAY_NOON + dt.timedelta(minutes=31))
    make_ready(ready_bob, now=TUESDAY_NOON + dt.timedelta(minutes=31))
    second = dispatch(django_capture_on_commit_callbacks)[-1]
    assert second.pk != first.pk and fresh(second).callback_attempt.number == 2
    with tenant_scope([second.tenant_id]), django_capture_on_commit_callbacks(execute=True):
        escalation_accept(escalation_id=second.pk, agent=ready_bob, now=TUESDAY_NOON + dt.timedelta(minutes=31))
        last = callback_finish(escalation_id=second.pk, agent=ready_bob, outcome="voicemail")
    assert last.state == CallbackState.FAILED and last.attempts == 2 and last.closed_at is not None
    assert fresh(callback).last_outcome == "voicemail"


def test_a_retry_that_would_fall_after_closing_moves_to_the_next_opening(
    business, ready_bob, fake, django_capture_on_commit_callbacks
):
    late = dt.datetime(2030, 1, 8, 22, 50, tzinfo=dt.UTC)  # 17:50 New York, ten minutes before closing
    with time_machine.travel(late, tick=False):
        make_ready(ready_bob, now=late)
        schedule(business, django_capture_on_commit_callbacks)
        [escalation] = dispatch(django_capture_on_commit_callbacks)
        with tenant_scope([business.id]), django_capture_on_commit_callbacks(execute=True):
            escalation_accept(escalation_id=escalation.pk, agent=ready_bob, now=late)
            callback = callback_finish(escalation_id=escalation.pk, agent=ready_bob, outcome="no_answer")
    assert callback.due_at == WEDNESDAY_8AM


def test_overdue_callbacks_are_flagged_to_supervisors_once(business, clock, django_capture_on_commit_callbacks):
    callback = schedule(business, django_capture_on_commit_callbacks)
    dispatch(django_capture_on_commit_callbacks)  # offered, but nobody is available
    with tenant_scope([business.id]):
        assert callbacks_flag_overdue(now=TUESDAY_NOON + dt.timedelta(minutes=14)) == []
        assert callbacks_flag_overdue(now=TUESDAY_NOON + dt.timedelta(minutes=16)) == [callback.pk]
        assert callbacks_flag_overdue(now=TUESDAY_NOON + dt.timedelta(minutes=30)) == []
    assert fresh(callback).overdue_at == TUESDAY_NOON + dt.timedelta(minutes=16)


# --- isolation ---------------------------------------------------------------------------------------------
def test_another_tenants_agent_and_tasks_cannot_touch_a_callback(
    business, tenant_b, ready_bob, due_callback, charlie, fake, django_capture_on_commit_callbacks
):
    [escalation] = dispatch(django_capture_on_commit_callbacks)
    take(escalation, ready_bob, django_capture_on_commit_callbacks)
    with tenant_scope([tenant_b.id]):
        with pytest.raises(Escalation.DoesNotExist):
            callback_dial(escalation_id=escalation.pk, agent=charlie, now=TUESDAY_NOON)
        with pytest.raises(Escalation.DoesNotExist):
            callback_finish(escalation_id=escalation.pk, agent=charlie, outcome="reached")
    with tenant_scope([business.id]), django_capture_on_commit_callbacks(execute=False):
        attempt = callback_dial(escalation_id=escalation.pk, agent=ready_bob, now=TUESDAY_NOON)
    assert callback_dial_task(tenant_id=tenant_b.id, attempt_id=attempt.pk, ring=1) is None
    assert callback_sms_task(tenant_id=tenant_b.id, callback_id=due_callback.pk) == "skipped"
    assert bridges(fake) == []
    with tenant_scope([tenant_b.id]):
        assert not CallbackAttempt.objects.filter(pk=attempt.pk).exists()


@pytest.mark.django_db(transaction=True)
async def test_console_call_back_and_finish_and_another_tenants_console_gets_not_found(
    business, tenant_b, ready_bob, due_callback, charlie, fake
):
    from channels.db import database_sync_to_async

    from tests.agents.test_console import console_for, of_type, receive_until

    @database_sync_to_async
    def setup():
        with tenant_scope([business.id]):
            esc_id = Escalation.objects.get(callback=due_callback).pk  # dispatched when promised (due now)
            escalation_accept(escalation_id=esc_id, agent=ready_bob, now=TUESDAY_NOON)
        return esc_id

    escalation_id = await setup()
    console, snapshot = await console_for(ready_bob)
    [item] = snapshot["active"]
    assert item["kind"] == "callback" and item["callback"]["phone"] == "+15555550123"
    assert item["callback"]["can_dial"] is True and item["callback"]["attempt"] == 1

    await console.send_json_to({"type": "callback.dial", "escalation_id": escalation_id})
    ok = await receive_until(console, of_type("ok"))
    assert ok["action"] == "callback.dial" and ok["ring"] == 1
    assert len(bridges(fake)) == 1
    await console.send_json_to({"type": "callback.finish", "escalation_id": escalation_id, "outcome": "maybe"})
    error = await receive_until(console, of_type("error"))
    assert error["code"] == "invalid" and "outcome" in error["message"]

    other, _ = await console_for(charlie)
    await other.send_json_to({"type": "callback.dial", "escalation_id": escalation_id})
    assert (await receive_until(other, of_type("error")))["code"] == "not_found"
    await other.disconnect()

    await console.send_json_to({"type": "callback.finish", "escalation_id": escalation_id, "outcome": "reached"})
    ok = await receive_until(console, of_type("ok"))
    assert ok["callback_state"] == "completed"
    await console.disconnect()


def test_a_late_answer_of_an_older_ring_is_hung_up_before_it_dials_the_customer_again(
    business, ready_bob, due_callback, fake, django_capture_on_commit_callbacks
):
    [escalation] = dispatch(django_capture_on_commit_callbacks)
    take(escalation, ready_bob, django_capture_on_commit_callbacks)
    with tenant_scope([business.id]), django_capture_on_commit_callbacks(execute=True):
        attempt = callback_dial(escalation_id=escalation.pk, agent=ready_bob, now=TUESDAY_NOON)
    with tenant_scope([business.id]), django_capture_on_commit_callbacks(execute=True):
        callback_leg_event(attempt_id=attempt.pk, ring=1, leg="callback", payload={"status": "timeout"})
    with tenant_scope([business.id]), django_capture_on_commit_callbacks(execute=True):
        callback_dial(escalation_id=escalation.pk, agent=ready_bob, now=TUESDAY_NOON)
    first_leg = bridges(fake)[0]["result"].uuid
    with tenant_scope([business.id]), django_capture_on_commit_callbacks(execute=True):
        callback_leg_event(
            attempt_id=attempt.pk, ring=1, leg="callback", payload={"status": "answered", "uuid": first_leg}
        )
    assert [c for c in fake.calls if c["method"] == "hangup"] == [{"method": "hangup", "uuid": first_leg}]
    assert fresh(escalation).state == EscalationState.ACCEPTED  # the current ring is still ringing


def test_a_redelivered_dial_after_a_worker_died_mid_call_does_not_call_again(
    business, ready_bob, due_callback, fake, django_capture_on_commit_callbacks
):
    [escalation] = dispatch(django_capture_on_commit_callbacks)
    take(escalation, ready_bob, django_capture_on_commit_callbacks)
    with tenant_scope([business.id]), django_capture_on_commit_callbacks(execute=False):
        attempt = callback_dial(escalation_id=escalation.pk, agent=ready_bob, now=TUESDAY_NOON)
    # The first delivery claimed the ring and died before Vonage answered (nothing recorded after the claim).
    with unscoped("test setup"):
        CallbackAttempt.objects.filter(pk=attempt.pk).update(agent_leg_status="placing")
    assert callback_dial_task(tenant_id=business.id, attempt_id=attempt.pk, ring=1) is None
    assert bridges(fake) == []
    # Vonage's events for that call still arrive; a failure lets the agent ring again.
    with tenant_scope([business.id]), django_capture_on_commit_callbacks(execute=True):
        callback_leg_event(attempt_id=attempt.pk, ring=1, leg="callback", payload={"status": "failed"})
        callback_dial(escalation_id=escalation.pk, agent=ready_bob, now=TUESDAY_NOON)
    assert [c["idempotency_key"] for c in bridges(fake)] == [f"callback-{due_callback.pk}-attempt-1-ring-2"]


def test_waiting_work_is_offered_as_soon_as_the_agent_finishes(
    business, ready_bob, clock, fake, django_capture_on_commit_callbacks
):
    first = schedule(business, django_capture_on_commit_callbacks, phone="+15555550123")
    second = schedule(business, django_capture_on_commit_callbacks, phone="+15555550124")
    [one, two] = dispatch(django_capture_on_commit_callbacks)
    assert (one.callback_id, two.callback_id) == (first.pk, second.pk)
    take(one, ready_bob, django_capture_on_commit_callbacks)
    with unscoped("test assertions"):
        assert not EscalationOffer.objects.filter(escalation=two).exists()  # bob is at capacity
    with tenant_scope([business.id]), django_capture_on_commit_callbacks(execute=True):
        callback_finish(escalation_id=one.pk, agent=ready_bob, outcome="reached")
    with unscoped("test assertions"):
        assert EscalationOffer.objects.filter(escalation=two, agent=ready_bob, outcome="pending").exists()


def test_tenant_tasks_with_another_tenants_id_touch_nothing(
    business, tenant_b, ready_bob, clock, fake, django_capture_on_commit_callbacks
):
    from agents.tasks import callbacks_dispatch_tenant_task, escalation_offer_callback_task, route_waiting_task

    with time_machine.travel(TUESDAY_NIGHT, tick=False), tenant_scope([business.id]):
        callback = make_callback(business, due_at=TUESDAY_NOON - dt.timedelta(minutes=1))
        live = make_escalation(business, created_at=TUESDAY_NIGHT)
        live.conversation.vonage_uuid = "leg-9"
        live.conversation.save()
    assert callbacks_dispatch_tenant_task(tenant_id=tenant_b.id) == 0
    assert escalation_offer_callback_task(tenant_id=tenant_b.id, escalation_id=live.pk, source="after_hours") is False
    assert route_waiting_task(tenant_id=tenant_b.id) == 0
    assert fresh(callback).state == CallbackState.SCHEDULED
    assert fresh(live).state == EscalationState.WAITING and transfers(fake) == []
    with unscoped("test assertions"):
        assert not EscalationOffer.objects.exists()
    # The right tenant's id does the work.
    assert callbacks_dispatch_tenant_task(tenant_id=business.id) == 1


# --- on time: a callback is offered at its own second, and a burst drains as fast as agents accept ----------
@pytest.fixture
def triggers(monkeypatch):
    """The short-countdown dispatch triggers sent to the broker (not run: the test runs them at their time)."""
    from agents.tasks import callbacks_dispatch_tenant_task

    sent: list[dict] = []
    monkeypatch.setattr(
        callbacks_dispatch_tenant_task,
        "apply_async",
        lambda kwargs, countdown=None, **_: sent.append({**kwargs, "countdown": countdown}),
    )
    return sent


def test_a_callback_falling_due_before_the_next_beat_is_offered_at_its_due_second(
    business, ready_bob, clock, fake, triggers, django_capture_on_commit_callbacks
):
    from agents.tasks import callbacks_dispatch_tenant_task

    with tenant_scope([business.id]):
        soon = [make_callback(business, due_at=TUESDAY_NOON + dt.timedelta(seconds=25)) for _ in range(3)]
        later = make_callback(business, due_at=TUESDAY_NOON + dt.timedelta(seconds=95))
    assert dispatch(django_capture_on_commit_callbacks) == []  # nothing is due yet
    # One trigger for the three due at the same second; none for the one after the next beat.
    assert triggers == [{"tenant_id": business.id, "countdown": 25}]

    clock.move_to(TUESDAY_NOON + dt.timedelta(seconds=25))
    with django_capture_on_commit_callbacks(execute=True):
        assert callbacks_dispatch_tenant_task(tenant_id=business.id) == 3
    offered = fresh(soon[0]).first_offered_at
    assert offered == TUESDAY_NOON + dt.timedelta(seconds=25)  # offered at its time, not at the next minute
    assert fresh(later).state == CallbackState.SCHEDULED


def test_a_callback_promised_for_a_moment_before_the_next_beat_gets_its_own_trigger(
    business, clock, fake, triggers, django_capture_on_commit_callbacks
):
    in_40_s = TUESDAY_NOON + dt.timedelta(seconds=40)
    callback = schedule(business, django_capture_on_commit_callbacks, preference="at", requested_for=in_40_s)
    assert callback.due_at == in_40_s
    assert triggers == [{"tenant_id": business.id, "countdown": 40}]
    # A time beyond the next beat is left to the beat (nothing waits long in the broker).
    schedule(
        business,
        django_capture_on_commit_callbacks,
        phone="+15555550124",
        preference="at",
        requested_for=TUESDAY_NOON + dt.timedelta(hours=2),
    )
    assert len(triggers) == 1


def test_an_agent_with_a_free_slot_is_offered_the_next_callback_as_soon_as_they_accept(
    business, bob, clock, fake, django_capture_on_commit_callbacks
):
    make_ready(bob, now=TUESDAY_NOON, capacity=2)
    AgentProfile.objects.filter(user=bob).update(phone_number=AGENT_PHONE)
    for n in range(3):
        schedule(business, django_capture_on_commit_callbacks, phone=f"+1555555012{n}")
    one, two, three = dispatch(django_capture_on_commit_callbacks)
    with unscoped("test assertions"):
        # Longest idle: one offer at a time per person.
        assert list(EscalationOffer.objects.values_list("escalation_id", flat=True)) == [one.pk]
    take(one, bob, django_capture_on_commit_callbacks)
    with unscoped("test assertions"):
        # Bob can hold two: the next in line is offered now, not at the next offer sweep.
        assert EscalationOffer.objects.filter(escalation=two, agent=bob, outcome="pending").exists()
    take(fresh(two), bob, django_capture_on_commit_callbacks)
    with unscoped("test assertions"):
        assert not EscalationOffer.objects.filter(escalation=three).exists()  # now at capacity
