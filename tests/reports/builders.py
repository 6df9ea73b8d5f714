"""A hand-counted day for the report tests: Tuesday 2030-01-08 at Alpha Dental (New York).

Every figure the rollup computes for that day is counted by hand in EXPECTED below, with the
edge cases spelt out next to the rows that make them. Times are local (New York, UTC-5 in January).

Opening hours: Tuesday 09:00-17:00. Queues: front-desk (service level 30 s), billing (60 s).

Conversations that started on the day (8):
  c1  10:00 voice +15550001 resolved   - the same caller again 47 h 59 min later: a repeat, NOT contained
  c2  11:00 voice +15550002 resolved   - the same caller again 48 h 1 min later: contained; the same number
                                         at another business 1 h later does not count either
  c3  12:30 chat  (no number) resolved - contained
  c4  13:00 voice +15550004 escalated
  c9  14:00 voice +15550009 abandoned
  c10 15:00 voice +15550010 callback
  c5  20:00 voice +15550005 escalated  (after hours)
  c7  23:30 voice +15550007 resolved   - contained; 00:10 on Jan 9 (c8) belongs to the next day
Live escalations (front-desk unless said):
  e1 13:00:00 accepted +20 s, wrapped 300 s after accept        in hours, SL met     asked_for_human
  e2 13:30:00 accepted +45 s, wrapped +200 s                    in hours, SL missed  asked_for_human
  e3 14:00:10 abandoned at +40 s, never accepted                in hours, SL missed  out_of_scope
  e4 15:00:00 the caller chose a callback (state callback)      in hours, SL missed, NOT abandoned  frustrated
  e5 20:00:00 accepted +95 s, wrapped +60 s                     closed: not on the SL clock  asked_for_human
  e6 16:00:00 billing, accepted +60 s exactly (met, boundary) by the agency (connected +10 s), wrapped +100 s
                                                                 urgent
  e9 16:40:00 expired, never accepted                           in hours, SL missed  out_of_scope
  e7 16:30:00 kind callback: accepted +5 s, wrapped +50 s       not a live escalation; counts in handle time
Callbacks first due that day: cb1 09:00 offered +1:30 (on time), cb2 10:00 offered +2:00 (on time, boundary),
  cb3 11:00 offered +5:00 (late), cb4 12:00 cancelled before being offered (not counted), cb5 13:00 never
  offered (late); cb6 due the next day, but requested (created) on the day.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from agents.models import Escalation, EscalationKind, EscalationState
from conversations.models import (
    AppointmentRequest,
    Callback,
    CallbackState,
    Conversation,
    Lead,
    Turn,
    Voicemail,
)
from flows.models import BusinessHours, Flow, FlowVersion, Intent, Queue
from tenants.scoping import tenant_scope

NY = ZoneInfo("America/New_York")
DAY = dt.date(2030, 1, 8)
#: "Now" when the day is rolled up: the next morning, so every escalation is decided.
AFTER = dt.datetime(2030, 1, 9, 12, 0, tzinfo=dt.UTC)


def at(hour: int, minute: int = 0, second: int = 0, *, day: dt.date = DAY) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=NY)


def s(seconds: float) -> dt.timedelta:
    return dt.timedelta(seconds=seconds)


STEPS = [
    {"id": "greeting", "kind": "say"},
    {"id": "menu", "kind": "menu"},
    {"id": "to_person", "kind": "escalate"},
    {"id": "bye", "kind": "end"},
]


def make_version(tenant, *, name="Main line") -> FlowVersion:
    flow = Flow.objects.create(tenant=tenant, name=name, start_step="greeting")
    Intent.objects.create(tenant=tenant, flow=flow, name="hours", examples="what are your hours\nwhen are you open")
    Intent.objects.create(tenant=tenant, flow=flow, name="prices", examples="how much is a cleaning")
    version = FlowVersion.objects.create(
        tenant=tenant, flow=flow, number=1, definition={"steps": STEPS}, content_hash="test"
    )
    Flow.objects.filter(pk=flow.pk).update(published_version=version)
    return version


def conversation(tenant, started, *, number="", channel="voice", outcome="", version=None) -> Conversation:
    return Conversation.objects.create(
        tenant=tenant,
        channel=channel,
        caller_number=number,
        started_at=started,
        outcome=outcome,
        flow_version=version,
    )


def turns(conv: Conversation, *rows: dict) -> None:
    for seq, row in enumerate(rows, start=1):
        Turn.objects.create(tenant_id=conv.tenant_id, conversation=conv, seq=seq, **row)
    Conversation.objects.filter(pk=conv.pk).update(turn_count=len(rows))


def escalation(tenant, conv, queue, created, *, reason="asked_for_human", **extra) -> Escalation:
    return Escalation.objects.create(
        tenant=tenant, conversation=conv, queue=queue, created_at=created, reason_code=reason, **extra
    )


def callback(tenant, due, *, created=None, **extra) -> Callback:
    created = created or at(20, day=DAY - dt.timedelta(days=1))
    return Callback.objects.create(
        tenant=tenant,
        phone="+15550100",
        due_at=due,
        first_due_at=due,
        place_since=created,
        created_at=created,
        **extra,
    )


def build_day(tenant, *, other_tenant=None, agency=None, agent=None) -> dict:
    """The day described in the module docstring. Returns the objects tests refer to."""
    objs: dict = {}
    with tenant_scope([tenant.id]):
        BusinessHours.objects.create(tenant=tenant, weekly={"tue": [["09:00", "17:00"]]})
        front = Queue.objects.create(tenant=tenant, name="front-desk", service_level_seconds=30)
        billing = Queue.objects.create(tenant=tenant, name="billing", service_level_seconds=60)
        version = make_version(tenant)
        objs.update(front=front, billing=billing, version=version, flow=version.flow)

        c1 = conversation(tenant, at(10), number="+15550001", outcome="resolved", version=version)
        conversation(tenant, at(10) + dt.timedelta(hours=47, minutes=59), number="+15550001", outcome="resolved")
        c2 = conversation(tenant, at(11), number="+15550002", outcome="resolved", version=version)
        conversation(tenant, at(11) + dt.timedelta(hours=48, minutes=1), number="+15550002", outcome="resolved")
        c3 = conversation(tenant, at(12, 30), channel="chat", outcome="resolved")
        c4 = conversation(tenant, at(13), number="+15550004", outcome="escalated", version=version)
        c9 = conversation(tenant, at(14), number="+15550009", outcome="abandoned", version=version)
        c10 = conversation(tenant, at(15), number="+15550010", outcome="callback")
        c5 = conversation(tenant, at(20), number="+15550005", outcome="escalated")
        conversation(tenant, at(23, 30), number="+15550007", outcome="resolved")
        conversation(tenant, at(0, 10, day=DAY + dt.timedelta(days=1)), number="+15550008", outcome="resolved")
        objs.update(c1=c1, c2=c2, c3=c3, c4=c4, c9=c9)

        # The funnel and the unmatched questions.
        turns(
            c1,
            {"step": "greeting", "event": "start"},
            {"step": "menu", "utterance": "Do you do teeth whitening?", "out_of_scope": True, "confidence": 0.2},
            {"step": "bye", "utterance": "ok thanks bye", "intent": "goodbye", "confidence": 0.95},
        )
        turns(
            c2,
            {"step": "greeting", "event": "start"},
            {"step": "menu", "utterance": " do you do teeth whitening ", "out_of_scope": True, "confidence": 0.1},
            {"step": "menu", "utterance": "How much is teeth whitening", "intent": "prices", "confidence": 0.3},
            {"step": "bye", "utterance": "what are your hours", "intent": "hours", "confidence": 0.9},
        )
        turns(
            c4,
            {"step": "greeting", "event": "start"},
            {"step": "menu", "utterance": "what are your hours", "intent": "hours", "confidence": 0.9},
            {"step": "to_person", "utterance": "agent please", "reason_code": "asked_for_human"},
        )
        turns(
            c9,
            {"step": "greeting", "event": "start"},
            {"step": "menu", "utterance": "Can I bring my dog?", "out_of_scope": True, "confidence": 0.15},
        )

        esc = {
            "e1": escalation(
                tenant,
                c4,
                front,
                at(13),
                state=EscalationState.WRAPPED,
                accepted_at=at(13) + s(20),
                connected_at=at(13) + s(25),
                wrapped_at=at(13) + s(320),
                ended_at=at(13) + s(320),
            ),
            "e2": escalation(
                tenant,
                c4,
                front,
                at(13, 30),
                state=EscalationState.WRAPPED,
                accepted_at=at(13, 30) + s(45),
                wrapped_at=at(13, 30) + s(245),
            ),
            "e3": escalation(
                tenant,
                c9,
                front,
                at(14, 0, 10),
                reason="out_of_scope",
                state=EscalationState.ABANDONED,
                ended_at=at(14, 0, 50),
            ),
            "e4": escalation(tenant, c10, front, at(15), reason="frustrated", state=EscalationState.CALLBACK),
            "e5": escalation(
                tenant,
                c5,
                front,
                at(20),
                state=EscalationState.WRAPPED,
                accepted_at=at(20) + s(95),
                wrapped_at=at(20) + s(155),
            ),
            "e6": escalation(
                tenant,
                c5,
                billing,
                at(16),
                reason="urgent",
                state=EscalationState.WRAPPED,
                accepted_at=at(16) + s(60),
                connected_at=at(16) + s(70),
                wrapped_at=at(16) + s(160),
                ended_at=at(16) + s(160),
                via_agency=agency,
                agent=agent,
            ),
            "e7": escalation(
                tenant,
                c3,
                front,
                at(16, 30),
                kind=EscalationKind.CALLBACK,
                state=EscalationState.WRAPPED,
                accepted_at=at(16, 30) + s(5),
                wrapped_at=at(16, 30) + s(55),
            ),
            "e9": escalation(tenant, c9, front, at(16, 40), reason="out_of_scope", state=EscalationState.EXPIRED),
        }
        objs.update(esc)

        callback(tenant, at(9), first_offered_at=at(9, 1, 30), state=CallbackState.COMPLETED)
        callback(tenant, at(10), first_offered_at=at(10, 2), state=CallbackState.COMPLETED)
        callback(tenant, at(11), first_offered_at=at(11, 5), state=CallbackState.FAILED)
        callback(tenant, at(12), state=CallbackState.CANCELLED)
        callback(tenant, at(13), state=CallbackState.SCHEDULED)
        callback(tenant, at(9, day=DAY + dt.timedelta(days=1)), created=at(12))

        for n in range(2):
            Voicemail.objects.create(
                tenant=tenant, recording_url="https://example.test/v.mp3", recording_uuid=f"rec-{tenant.pk}-{n}"
            )
        Voicemail.objects.filter(tenant=tenant).update(created_at=at(21))
        Lead.objects.create(tenant=tenant, conversation=c4, name="Pat")
        Lead.objects.filter(tenant=tenant).update(created_at=at(13, 5))
        for n in range(3):
            AppointmentRequest.objects.create(tenant=tenant, conversation=c1, service=f"Cleaning {n}")
        AppointmentRequest.objects.filter(tenant=tenant).update(created_at=at(10, 5))

    if other_tenant is not None:
        with tenant_scope([other_tenant.id]):
            conversation(other_tenant, at(12), number="+15550002", outcome="resolved")
    return objs


#: The day's figures, counted by hand from the docstring above.
EXPECTED_DAILY = {
    "contacts": 8,
    "voice": 7,
    "chat": 1,
    "resolved": 4,
    "repeat_contacts": 1,
    "ai_resolved": 3,
    "escalated": 2,
    "voicemails": 2,
    "callbacks_requested": 1,
    "callbacks_due": 4,
    "callbacks_on_time": 2,
    "leads": 1,
    "appointments": 3,
}
EXPECTED_FRONT_DESK = {
    "escalations": 6,
    "answered": 3,
    "wait_seconds": 160.0,  # 20 + 45 + 95
    "sl_counted": 5,  # e1 e2 e3 e4 e9 (e5 arrived while closed)
    "sl_met": 1,  # e1
    "out_of_hours": 1,  # e5
    "abandoned": 1,  # e3 (e4 chose a callback)
    "chose_callback": 1,
    "expired": 1,
    "callback_escalations": 1,
    "handled": 4,  # e1 e2 e5 e7
    "handle_seconds": 610.0,  # 300 + 200 + 60 + 50
}
EXPECTED_BILLING = {
    "escalations": 1,
    "answered": 1,
    "wait_seconds": 60.0,
    "sl_counted": 1,
    "sl_met": 1,
    "out_of_hours": 0,
    "abandoned": 0,
    "chose_callback": 0,
    "expired": 0,
    "callback_escalations": 0,
    "handled": 1,
    "handle_seconds": 100.0,
}
EXPECTED_TOTALS = {
    **EXPECTED_DAILY,
    "escalations": 7,
    "sl_counted": 6,
    "sl_met": 2,
    "service_level_pct": 33.3,
    "containment_pct": 37.5,
    "asa_seconds": 55.0,  # 220 / 4
    "abandonment_pct": 14.3,  # 1 / 7
    "aht_seconds": 142.0,  # 710 / 5
    "callbacks_on_time_pct": 50.0,
}
EXPECTED_HOURS = {(10, "voice"): 1, (11, "voice"): 1, (12, "chat"): 1, (13, "voice"): 1}
EXPECTED_HOURS.update({(14, "voice"): 1, (15, "voice"): 1, (20, "voice"): 1, (23, "voice"): 1})
EXPECTED_REASONS = {
    ("front-desk", "asked_for_human"): 3,
    ("front-desk", "out_of_scope"): 2,
    ("front-desk", "frustrated"): 1,
    ("billing", "urgent"): 1,
}
#: step: (reached, ended, escalated) over c1 c2 c4 c9 (the conversations with the published version)
EXPECTED_FUNNEL = {
    "greeting": (4, 0, 0),
    "menu": (4, 1, 0),
    "to_person": (1, 1, 1),
    "bye": (2, 2, 0),
}
