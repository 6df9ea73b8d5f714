"""The pure conversation engine: each step kind, each escalation trigger, purity and persistence."""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import pytest

from flows.definition import (
    AskStep,
    BusinessHours,
    CaptureLeadStep,
    ConditionRule,
    ConditionStep,
    EndStep,
    EscalateStep,
    EscalationPolicy,
    Faq,
    FaqStep,
    FlowDefinition,
    Holiday,
    HoursBranchStep,
    Intent,
    MenuStep,
    Messages,
    OfferCallbackStep,
    RequestAppointmentStep,
    SayStep,
    UrgentKeyword,
    VoicemailStep,
    from_yaml,
)
from flows.engine import (
    CompiledFlow,
    ConversationState,
    EscalationSummary,
    Event,
    FlowCompileError,
    OfferCallback,
    Say,
    TransferToQueue,
    actions_from_json,
    actions_to_json,
    compile_flow,
    detect_frustration,
    step,
)

UTC = dt.UTC
OPEN = dt.datetime(2025, 3, 11, 14, 0, tzinfo=UTC)  # Tue 10:00 in New York
CLOSED = dt.datetime(2025, 3, 12, 1, 0, tzinfo=UTC)  # Tue 21:00 in New York
HOLIDAY = dt.datetime(2025, 12, 25, 15, 0, tzinfo=UTC)  # Christmas 10:00 in New York


# ---------------------------------------------------------------- fake understanding


@dataclass(frozen=True)
class FakeResult:
    label: str | None
    confidence: float
    out_of_scope: bool
    candidates: tuple[tuple[str, float], ...] = ()
    normalized_text: str = ""


class KeywordNLU:
    """label -> keywords; first match wins, else out of scope."""

    def __init__(self, rules: dict[str, list[str]]):
        self.rules = rules
        self.seen: list[str] = []

    def predict(self, text: str) -> FakeResult:
        self.seen.append(text)
        t = text.lower()
        for label, words in self.rules.items():
            if any(w in t for w in words):
                return FakeResult(label, 0.91, False, ((label, 0.91),), t)
        return FakeResult(None, 0.15, True, (("book", 0.15),), t)


NLU_RULES = {
    "book": ["book", "appointment"],
    "bye": ["bye", "that's all"],
    "faq:hours": ["hours", "when are you open"],
    "faq:price": ["how much", "price"],
    "refund": ["refund"],  # an intent no menu routes
    "faq:unknown": ["parking"],  # a label the flow does not define
}


def make_defn(policy: EscalationPolicy | None = None, **menu_kw) -> FlowDefinition:
    menu = {
        "id": "menu",
        "prompt": "How can I help?",
        "reprompt": "Say book, or ask about our hours.",
        "routes": {"book": "ask_name", "bye": "bye_end"},
        "dtmf": {"1": "ask_name", "2": "vm"},
        "escalate_to": "esc_desk",
    }
    menu.update(menu_kw)
    return FlowDefinition(
        name="Test office",
        start="hello",
        policy=policy
        or EscalationPolicy(
            default_queue="general",
            default_priority=3,
            urgent_keywords=[
                UrgentKeyword(phrase="emergency", reason_label="dental_emergency", step="esc_urgent"),
                UrgentKeyword(phrase="lawyer", reason_label="legal"),
            ],
        ),
        hours=BusinessHours(
            timezone="America/New_York",
            weekly={d: [("09:00", "17:00")] for d in ("mon", "tue", "wed", "thu", "fri")},
            holidays=[Holiday(date=dt.date(2025, 12, 25), name="Christmas")],
        ),
        intents=[
            Intent(name="book", examples=["book", "appointment"]),
            Intent(name="bye", examples=["bye", "that's all"]),
            Intent(name="refund", examples=["refund", "money back"]),
        ],
        faqs=[
            Faq(key="hours", questions=["hours?"], answer="We're open 9 to 5.", voice_answer="Nine to five."),
            Faq(key="price", questions=["price?"], answer="A cleaning is $95."),
        ],
        steps=[
            SayStep(
                id="hello", text="Hi! This is the Test office.", voice_text="Hi, thanks for calling.", next="branch"
            ),
            HoursBranchStep(id="branch", open="menu", closed="closed_menu", holiday="holiday_say"),
            SayStep(id="holiday_say", text="We're closed for the holiday.", next="closed_menu"),
            MenuStep(**menu),
            AskStep(
                id="ask_name",
                slot="name",
                slot_type="name",
                prompt="Your name?",
                next="ask_phone",
                on_fail="esc_desk",
                escalate_to="esc_desk",
            ),
            AskStep(
                id="ask_phone",
                slot="phone",
                slot_type="phone",
                prompt="Your phone number?",
                reprompt="Please say your 10-digit number.",
                error_texts={"invalid_phone": "That number looks incomplete."},
                next="ask_when",
                on_fail="esc_desk",
            ),
            AskStep(id="ask_when", slot="when", slot_type="datetime", prompt="When?", next="req", on_fail="esc_desk"),
            RequestAppointmentStep(id="req", slot="when", service="Cleaning", text="Requested!", next="lead"),
            CaptureLeadStep(id="lead", fields=["name", "phone", "when"], text="Saved your details.", next="bye_end"),
            MenuStep(
                id="closed_menu",
                prompt="We're closed. Press 2 for voicemail or 3 for a call back.",
                routes={"bye": "bye_end"},
                dtmf={"2": "vm", "3": "cb"},
                no_input="vm",
                answer_faqs=False,
            ),
            VoicemailStep(id="vm", prompt="Leave a message after the tone."),
            OfferCallbackStep(id="cb", prompt="We'll call you back tomorrow.", next="bye_end"),
            EscalateStep(id="esc_desk", queue="desk", priority=4, skills=["scheduling"], text="Connecting you."),
            EscalateStep(id="esc_urgent", queue="urgent", priority=8, text="Urgent line, hold on.", reason="emergency"),
            EndStep(id="bye_end", text="Bye!"),
        ],
    )


def with_steps(steps) -> FlowDefinition:
    """The test office with other steps (and a policy that names no steps)."""
    return make_defn().model_copy(
        update={"steps": steps, "start": steps[0].id, "policy": EscalationPolicy(default_queue="general")}
    )


def make_flow(**kw) -> CompiledFlow:
    return compile_flow(make_defn(**kw), KeywordNLU(NLU_RULES))


@pytest.fixture
def flow() -> CompiledFlow:
    return make_flow()


def say(text, now=OPEN, **kw) -> Event:
    return Event.utterance(text, now, **kw)


def run(flow, events, state=None):
    """Feed events; return final state and the actions of the last event."""
    state = state or ConversationState()
    actions = []
    for ev in events:
        state, actions = step(flow, state, ev)
    return state, actions


def started(flow, now=OPEN, channel="voice"):
    return step(flow, ConversationState(), Event.start(now, channel))


def kinds(actions):
    return [type(a).__name__ for a in actions]


def transfer(actions) -> TransferToQueue:
    t = [a for a in actions if isinstance(a, TransferToQueue)]
    assert len(t) == 1, actions
    return t[0]


# ---------------------------------------------------------------- start, say, hours_branch, menu


def test_start_during_open_hours(flow):
    state, actions = started(flow)
    assert kinds(actions) == ["Say", "Ask"]
    assert actions[0].text == "Hi! This is the Test office."
    assert actions[0].voice_text == "Hi, thanks for calling."
    assert actions[0].reason.code == "conversation_started"
    ask = actions[1]
    assert ask.prompt == "How can I help?" and ask.slot is None
    assert ask.reason.code == "business_hours_open"
    assert ask.expect_dtmf == ("1", "2", "0")
    assert ask.input_kind == "speech+dtmf"
    assert "book" in ask.hints
    assert state.current_step == "menu" and state.waiting_for == "menu"
    assert state.history == ("hello", "branch", "menu")
    state, _ = step(flow, state, say("book"))
    assert (state.waiting_for, state.waiting_slot) == ("ask", "name")


def test_start_when_closed_and_on_holiday(flow):
    _, actions = started(flow, CLOSED)
    assert actions[1].prompt.startswith("We're closed.")
    assert actions[1].reason.code == "business_hours_closed"
    assert "America/New_York" in actions[1].reason.explanation
    _, actions = started(flow, HOLIDAY)
    assert [a.text for a in actions if isinstance(a, Say)] == [
        "Hi! This is the Test office.",
        "We're closed for the holiday.",
    ]
    assert actions[1].reason.code == "business_hours_holiday"
    assert "Christmas" in actions[1].reason.explanation


def test_chat_channel_asks_for_text(flow):
    _, actions = started(flow, channel="chat")
    assert actions[-1].input_kind == "text"


def test_intent_routes_to_ask(flow):
    state, _ = started(flow)
    state, actions = step(flow, state, say("I want to book a cleaning"))
    assert kinds(actions) == ["Ask"]
    assert actions[0].prompt == "Your name?" and actions[0].slot == "name"
    assert actions[0].reason.code == "intent_matched"
    assert "book (0.91)" in actions[0].reason.explanation
    assert state.intent_path == ("book",)
    assert state.waiting_for == "ask"


def test_dtmf_routes(flow):
    state, _ = started(flow)
    state, actions = step(flow, state, Event.keys("1", OPEN))
    assert actions[-1].slot == "name"
    assert actions[-1].reason.code == "dtmf_matched"
    state, _ = started(flow)
    state, actions = step(flow, state, Event(kind="utterance", text="2", now=OPEN, channel="chat"))  # typed key
    assert kinds(actions) == ["Voicemail"]


def test_unmapped_dtmf_is_a_misunderstanding(flow):
    state, _ = started(flow)
    state, actions = step(flow, state, Event.keys("7", OPEN))
    assert kinds(actions) == ["Say", "Ask"]
    assert actions[0].text == "Sorry, I didn't catch that."
    assert actions[0].reason.code == "dtmf_not_mapped"
    assert state.misunderstandings == 1


def test_full_booking_path(flow):
    state, _ = started(flow)
    state, _ = step(flow, state, say("book please"))
    state, actions = step(flow, state, say("my name is jane doe"))
    assert actions[-1].slot == "phone" and actions[-1].max_digits == 15
    assert actions[-1].reason.explanation == "name = 'Jane Doe'"
    state, actions = step(flow, state, Event.keys("2125550123", OPEN))
    assert actions[-1].slot == "when"
    state, actions = step(flow, state, say("tomorrow at 3 pm"))
    assert kinds(actions) == ["RequestAppointment", "Say", "CaptureLead", "Say", "Say", "HangUp"]
    appt = actions[0]
    assert appt.when == "2025-03-12T15:00:00-04:00" and appt.service == "Cleaning"
    assert appt.slots["name"] == "Jane Doe"
    assert actions[1].text == "Requested!"
    lead = actions[2]
    assert lead.fields == {"name": "Jane Doe", "phone": "+12125550123", "when": "2025-03-12T15:00:00-04:00"}
    assert actions[4].text == "Bye!"
    assert state.finished and state.outcome == "resolved"
    assert state.slots == lead.fields


# ---------------------------------------------------------------- FAQs


def test_faq_answered_in_place_then_anything_else(flow):
    state, _ = started(flow)
    state, actions = step(flow, state, say("what are your hours?"))
    assert kinds(actions) == ["Say", "Ask"]
    assert actions[0].text == "We're open 9 to 5." and actions[0].voice_text == "Nine to five."
    assert actions[0].reason.code == "faq_answered"
    assert actions[1].prompt == "Is there anything else I can help you with?"
    assert state.current_step == "menu" and state.served
    state, actions = step(flow, state, say("bye"))
    assert kinds(actions) == ["Say", "HangUp"]
    assert state.outcome == "resolved"


def test_faq_with_after_faq():
    flow = make_flow(after_faq="bye_end")
    state, _ = started(flow)
    _, actions = step(flow, state, say("how much is a cleaning"))
    assert [a.text for a in actions if isinstance(a, Say)] == ["A cleaning is $95.", "Bye!"]


def test_faq_step_and_unknown_faq_label():
    flow = make_flow()
    state, _ = started(flow)
    state, actions = step(flow, state, say("is there parking"))  # label faq:unknown -> not covered
    assert actions[0].text == "Sorry, I didn't catch that." and actions[0].reason.code == "out_of_scope"
    defn = make_defn().model_copy(
        update={"steps": [FaqStep(id="hello", faq="hours", next="bye_end"), EndStep(id="bye_end")], "start": "hello"}
    )
    flow2 = CompiledFlow(
        defn, MappingProxyType(defn.step_index()), KeywordNLU({}), faqs=MappingProxyType({"hours": defn.faqs[0]})
    )
    state, actions = step(flow2, ConversationState(), Event.start(OPEN))
    assert kinds(actions) == ["Say", "Say", "HangUp"]
    assert actions[0].text == "We're open 9 to 5."
    assert state.outcome == "resolved"


# ---------------------------------------------------------------- misunderstanding and no_match


def test_out_of_scope_reprompts_then_escalates(flow):
    state, _ = started(flow)
    state, actions = step(flow, state, say("do you sell boats"))
    assert kinds(actions) == ["Say", "Ask"]
    assert actions[0].text == "Sorry, I didn't catch that."
    assert actions[1].prompt == "Say book, or ask about our hours."
    assert actions[0].reason.code == "out_of_scope"
    assert state.misunderstandings == 1 and not state.finished
    state, actions = step(flow, state, say("can you fix my car"))
    t = transfer(actions)
    assert t.reason.code == "repeated_misunderstanding"
    assert t.queue == "desk" and t.priority == 4 and t.skills == ("scheduling",)  # menu's escalate_to
    assert actions[0].text == "Connecting you."
    assert state.outcome == "escalated" and state.escalation_reason == "repeated_misunderstanding"
    assert t.summary.last_utterances == ("do you sell boats", "can you fix my car")


def test_intent_not_routed_here_is_out_of_scope(flow):
    state, _ = started(flow)
    state, actions = step(flow, state, say("I want a refund"))
    assert actions[0].reason.code == "out_of_scope"
    assert "refund" in actions[0].reason.explanation


def test_understanding_resets_the_counter(flow):
    state, _ = started(flow)
    state, _ = step(flow, state, say("blah"))
    state, _ = step(flow, state, say("what are your hours"))
    assert state.misunderstandings == 0
    state, actions = step(flow, state, say("blah again"))
    assert not state.finished and kinds(actions) == ["Say", "Ask"]


def test_no_match_step():
    defn = make_defn(no_match="vm")
    flow = compile_flow(defn, KeywordNLU(NLU_RULES))
    state, _ = started(flow)
    state, actions = step(flow, state, say("something odd"))
    assert kinds(actions) == ["Voicemail"]
    assert actions[0].reason.code == "out_of_scope"
    assert state.outcome == "voicemail" and state.finished


def test_max_attempts_on_menu_escalates():
    pol = EscalationPolicy(default_queue="general", max_misunderstandings=5)
    flow = make_flow(policy=pol, max_attempts=2)
    state, _ = started(flow)
    state, _ = step(flow, state, say("huh"))
    state, actions = step(flow, state, say("what"))
    assert transfer(actions).reason.code == "max_attempts"


def test_escalation_without_escalate_to_uses_policy_default():
    flow = make_flow(escalate_to=None)
    state, _ = started(flow)
    state, actions = step(flow, state, say("agent"))
    t = transfer(actions)
    assert (t.queue, t.priority, t.skills) == ("general", 3, ())
    assert actions[0].text == "Let me get someone who can help."


# ---------------------------------------------------------------- policy triggers (before routing)


@pytest.mark.parametrize(
    "text", ["agent please", "Can I talk to a REAL PERSON", "operator", "I want to speak to someone"]
)
def test_human_requested_by_phrase(flow, text):
    state, _ = started(flow)
    state, actions = step(flow, state, say(text))
    t = transfer(actions)
    assert t.reason.code == "caller_requested_human"
    assert "asked for a person" in t.reason.explanation
    assert t.queue == "desk"
    assert state.escalation_reason == "caller_requested_human"


def test_human_requested_by_dtmf_zero(flow):
    state, _ = started(flow)
    state, actions = step(flow, state, Event.keys("0", OPEN))
    t = transfer(actions)
    assert t.reason.code == "caller_requested_human" and "pressed 0" in t.reason.explanation


def test_dtmf_zero_inside_a_phone_number_is_not_a_human_request(flow):
    state, _ = started(flow)
    state, _ = step(flow, state, say("book"))
    state, _ = step(flow, state, say("John Smith"))
    state, actions = step(flow, state, Event.keys("0", OPEN))
    assert not state.finished
    assert actions[0].text == "That number looks incomplete."


def test_human_phrase_wins_over_intent_routing(flow):
    state, _ = started(flow)
    _, actions = step(flow, state, say("book an appointment with a human"))
    assert transfer(actions).reason.code == "caller_requested_human"
    assert flow.understander.seen == []  # policy ran before routing


def test_urgent_keyword_uses_its_step(flow):
    state, _ = started(flow)
    state, actions = step(flow, state, say("it's an emergency, my tooth fell out"))
    t = transfer(actions)
    assert t.reason.code == "urgent_keyword"
    assert '"emergency"' in t.reason.explanation and "dental_emergency" in t.reason.explanation
    assert (t.queue, t.priority) == ("urgent", 8)
    assert actions[0].text == "Urgent line, hold on."
    assert state.current_step == "esc_urgent"
    assert t.summary.flow_step == "menu"


def test_urgent_keyword_without_step_uses_current_escalate_to(flow):
    state, _ = started(flow)
    _, actions = step(flow, state, say("I'm calling my lawyer"))
    t = transfer(actions)
    assert t.reason.code == "urgent_keyword" and "legal" in t.reason.explanation
    assert t.queue == "desk"


def test_urgent_keyword_inside_an_ask(flow):
    state, _ = started(flow)
    state, _ = step(flow, state, say("book"))
    _, actions = step(flow, state, say("forget the name, this is an emergency"))
    assert transfer(actions).queue == "urgent"


@pytest.mark.parametrize(
    "text", ["This is ridiculous", "I'M SO TIRED OF THIS STUPID MACHINE", "hello?!! anyone", "I'm fed up with this"]
)
def test_frustration(flow, text):
    state, _ = started(flow)
    _, actions = step(flow, state, say(text))
    t = transfer(actions)
    assert t.reason.code == "caller_frustrated"
    assert t.reason.explanation.startswith("Caller sounds frustrated")


def test_frustration_detector():
    assert detect_frustration("WHY IS THIS NOT WORKING") == "wrote in ALL CAPS"
    assert "ridiculous" in detect_frustration("this is ridiculous")
    assert detect_frustration("book!!!") == "used repeated exclamation marks"
    assert detect_frustration("seriously?!") == "used repeated exclamation marks"
    assert detect_frustration("Thanks!!") is None
    assert detect_frustration("I have a terrible toothache") is None
    assert detect_frustration("JOHN SMITH") is None
    assert detect_frustration("hello") is None


def test_frustration_can_be_disabled():
    flow = make_flow(policy=EscalationPolicy(default_queue="general", frustration=False))
    state, _ = started(flow)
    state, actions = step(flow, state, say("this is ridiculous, book me"))
    assert not state.finished and actions[-1].slot == "name"


def test_policy_order_human_before_urgent_before_frustration(flow):
    state, _ = started(flow)
    _, actions = step(flow, state, say("EMERGENCY!! GET ME A HUMAN NOW"))
    assert transfer(actions).reason.code == "caller_requested_human"
    _, actions = step(flow, state, say("this stupid emergency"))
    assert transfer(actions).reason.code == "urgent_keyword"


# ---------------------------------------------------------------- policy triggers (after routing)


def test_low_asr_confidence_reprompts_then_escalates(flow):
    state, _ = started(flow)
    state, actions = step(flow, state, say("bk", asr_confidence=0.2))
    assert kinds(actions) == ["Say", "Ask"]
    assert actions[0].reason.code == "low_asr_confidence"
    assert state.low_asr_count == 1
    assert flow.understander.seen == []  # an unsure transcript is not routed
    state, actions = step(flow, state, Event(kind="asr_failure", now=OPEN))
    t = transfer(actions)
    assert t.reason.code == "low_asr_confidence"
    assert "2 time(s) in a row" in t.reason.explanation


def test_confident_utterance_resets_low_asr(flow):
    state, _ = started(flow)
    state, _ = step(flow, state, say("bk", asr_confidence=0.1))
    state, _ = step(flow, state, say("hours", asr_confidence=0.95))
    assert state.low_asr_count == 0
    state, _ = step(flow, state, say("bk", asr_confidence=0.1))
    assert not state.finished


def test_repeated_question(flow):
    state, _ = started(flow)
    state, _ = step(flow, state, say("what are your hours"))
    state, actions = step(flow, state, say("your hours again?"))
    assert actions[0].reason.code == "faq_answered"
    state, actions = step(flow, state, say("HOURS please, when are you open"))
    t = transfer(actions)
    assert t.reason.code == "repeated_question"
    assert "faq:hours 3 times" in t.reason.explanation
    assert t.summary.intent_path == ("faq:hours", "faq:hours", "faq:hours")
    assert state.label_counts == {"faq:hours": 3}


def test_repeat_limit_is_configurable():
    flow = make_flow(policy=EscalationPolicy(default_queue="general", repeat_question_limit=1))
    state, _ = started(flow)
    state, _ = step(flow, state, say("hours"))
    _, actions = step(flow, state, say("hours"))
    assert transfer(actions).reason.code == "repeated_question"


# ---------------------------------------------------------------- ask steps


def test_ask_invalid_uses_error_text_then_on_fail(flow):
    state, _ = started(flow)
    state, _ = step(flow, state, say("book"))
    state, _ = step(flow, state, say("Jane Doe"))
    state, actions = step(flow, state, say("five five five"))
    assert kinds(actions) == ["Say", "Ask"]
    assert actions[0].text == "That number looks incomplete."
    assert actions[1].prompt == "Please say your 10-digit number."
    assert actions[0].reason.code == "slot_invalid"
    assert "invalid_phone" in actions[0].reason.explanation
    assert state.attempts == 1 and state.misunderstandings == 0
    state, _ = step(flow, state, say("one two"))
    state, actions = step(flow, state, say("three"))
    t = transfer(actions)
    assert t.reason.code == "slot_failed"
    assert "'phone' after 3 attempts" in t.reason.explanation
    assert t.queue == "desk"
    assert t.summary.slots == {"name": "Jane Doe"}


def test_ask_without_error_text_says_not_understood(flow):
    state, _ = started(flow)
    state, _ = step(flow, state, say("book"))
    state, actions = step(flow, state, say("what do you mean"))
    assert actions[0].text == "Sorry, I didn't catch that."
    assert actions[1].prompt == "Your name?"


def test_optional_ask_can_be_skipped():
    steps = [
        AskStep(
            id="hello", slot="email", slot_type="email", prompt="Email?", required=False, next="done", on_fail="done"
        ),
        EndStep(id="done", text="Done"),
    ]
    flow = compile_flow(with_steps(steps), KeywordNLU({}))
    state, _ = started(flow)
    state, actions = step(flow, state, say("no thanks"))
    assert state.slots == {"email": None} and state.finished
    assert actions[0].reason.code == "slot_skipped"
    state, _ = started(flow)
    state, actions = step(flow, state, Event.silence(OPEN))
    assert state.slots == {"email": None}


def test_yes_no_and_choice_by_dtmf():
    steps = [
        AskStep(id="hello", slot="ok", slot_type="yes_no", prompt="OK?", next="svc", on_fail="done"),
        AskStep(
            id="svc",
            slot="svc",
            slot_type="choice",
            choices=["Cleaning", "Whitening"],
            prompt="Which?",
            next="done",
            on_fail="done",
        ),
        EndStep(id="done", text="Done"),
    ]
    flow = compile_flow(with_steps(steps), KeywordNLU({}))
    state, actions = started(flow)
    assert actions[-1].expect_dtmf == ("1", "2", "0") and actions[-1].hints == ("yes", "no")
    state, actions = step(flow, state, Event.keys("1", OPEN))
    assert state.slots == {"ok": True}
    assert actions[-1].hints == ("Cleaning", "Whitening")
    state, _ = step(flow, state, Event.keys("2", OPEN))
    assert state.slots == {"ok": True, "svc": "Whitening"}


# ---------------------------------------------------------------- silence


def test_silence_in_menu_reprompts_then_ends(flow):
    state, _ = started(flow)
    state, actions = step(flow, state, Event.silence(OPEN))
    assert kinds(actions) == ["Ask"]
    assert actions[0].prompt == "Say book, or ask about our hours."
    assert actions[0].reason.code == "no_input"
    state, _ = step(flow, state, Event.silence(OPEN))
    state, actions = step(flow, state, Event.silence(OPEN))
    assert kinds(actions) == ["Say", "HangUp"]
    assert actions[0].text == "Thank you for calling. Goodbye."
    assert state.outcome == "ended"


def test_silence_in_menu_with_no_input_step(flow):
    state, _ = started(flow, CLOSED)
    for _ in range(3):
        state, actions = step(flow, state, Event.silence(CLOSED))
    assert kinds(actions) == ["Voicemail"]
    assert state.outcome == "voicemail"


def test_silence_in_ask_goes_to_on_fail(flow):
    state, _ = started(flow)
    state, _ = step(flow, state, say("book"))
    state, _ = step(flow, state, Event.silence(OPEN))
    state, _ = step(flow, state, say(""))  # empty transcript = silence
    state, actions = step(flow, state, Event.silence(OPEN))
    assert transfer(actions).reason.code == "slot_failed"


# ---------------------------------------------------------------- other step kinds


def test_voicemail_and_callback_steps(flow):
    state, _ = started(flow, CLOSED)
    state, actions = step(flow, state, Event.keys("2", CLOSED))
    assert kinds(actions) == ["Voicemail"]
    assert actions[0].prompt == "Leave a message after the tone."
    assert state.finished and state.outcome == "voicemail"
    state, _ = started(flow, CLOSED)
    state, actions = step(flow, state, Event.keys("3", CLOSED))
    assert kinds(actions) == ["OfferCallback", "Say", "HangUp"]
    assert isinstance(actions[0], OfferCallback) and actions[0].prompt == "We'll call you back tomorrow."
    assert state.outcome == "callback"


def test_escalate_step_reached_by_route_uses_step_reason():
    defn = make_defn(routes={"book": "esc_urgent", "bye": "esc_desk"})
    flow = compile_flow(defn, KeywordNLU(NLU_RULES))
    state, _ = started(flow)
    _, actions = step(flow, state, say("book"))
    t = transfer(actions)
    assert t.reason.code == "emergency" and (t.queue, t.priority) == ("urgent", 8)
    assert "book" in t.reason.explanation
    _, actions = step(flow, state, say("bye"))
    assert transfer(actions).reason.code == "flow_escalation"


def condition_flow() -> CompiledFlow:
    defn = make_defn()
    steps = [
        AskStep(id="hello", slot="age", slot_type="number", prompt="Age?", next="check", on_fail="done"),
        ConditionStep(
            id="check",
            rules=[
                ConditionRule(slot="age", op="lt", value=18, next="minor"),
                ConditionRule(slot="age", op="in", value=[65, 70], next="senior"),
                ConditionRule(slot="nick", op="present", next="done"),
            ],
            **{"else": "adult"},
        ),
        SayStep(id="minor", text="A parent must come along.", next="done"),
        SayStep(id="senior", text="You get a discount.", next="done"),
        SayStep(id="adult", text="Great.", next="done"),
        AskStep(id="nick_ask", slot="nick", prompt="Nick?", next="done", on_fail="done"),
        EndStep(id="done", text="Bye"),
    ]
    defn = defn.model_copy(update={"steps": steps})
    return CompiledFlow(defn, MappingProxyType(defn.step_index()), KeywordNLU({}))


@pytest.mark.parametrize(
    ("age", "said", "code"),
    [
        ("12", "A parent must come along.", "condition_matched"),
        ("seventy", "You get a discount.", "condition_matched"),
        ("40", "Great.", "condition_else"),
    ],
)
def test_condition_step(age, said, code):
    flow = condition_flow()
    state, _ = started(flow)
    state, actions = step(flow, state, say(age))
    assert actions[0].text == said
    assert actions[0].reason.code == code


def test_flow_loop_guard():
    defn = make_defn()
    steps = [SayStep(id="hello", text="A", next="b"), SayStep(id="b", text="B", next="hello")]
    defn = defn.model_copy(update={"steps": steps})
    with pytest.raises(FlowCompileError, match="loop_without_exit"):
        compile_flow(defn, KeywordNLU({}))
    flow = CompiledFlow(defn, MappingProxyType(defn.step_index()), KeywordNLU({}))  # unvalidated on purpose
    state, actions = started(flow)
    assert len([a for a in actions if isinstance(a, Say) and a.text in "AB"]) == 25
    assert actions[-2].text == "Let me get someone who can help."
    assert actions[-3].text == "Sorry, something went wrong on our side."
    t = transfer(actions)
    assert t.reason.code == "flow_loop" and t.queue == "general"


def test_runtime_dead_end_escalates():
    defn = make_defn()
    defn = defn.model_copy(update={"steps": [SayStep(id="hello", text="Hi")]})
    flow = CompiledFlow(defn, MappingProxyType(defn.step_index()), KeywordNLU({}))
    _, actions = started(flow)
    assert transfer(actions).reason.code == "flow_dead_end"


# ---------------------------------------------------------------- state, purity, persistence


def test_finished_conversation_ignores_events(flow):
    state, _ = started(flow)
    state, _ = step(flow, state, say("bye"))
    assert state.finished
    again, actions = step(flow, state, say("hello?"))
    assert actions == [] and again == state


def test_input_state_is_never_mutated(flow):
    state, _ = started(flow)
    state, _ = step(flow, state, say("book"))
    snapshot = state.model_dump()
    new, _ = step(flow, state, say("Jane Doe"))
    assert state.model_dump() == snapshot
    assert new.slots == {"name": "Jane Doe"} and state.slots == {}
    with pytest.raises(Exception):  # noqa: B017 - frozen model
        state.current_step = "x"


def test_deterministic(flow):
    events = [
        Event.start(OPEN),
        say("blah"),
        say("hours"),
        say("book"),
        say("Jane Doe"),
        Event.keys("2125550123", OPEN),
    ]
    a = run(flow, events)
    b = run(flow, events)
    assert a == b


def test_state_json_round_trip_between_requests(flow):
    state, _ = started(flow)
    for ev in [say("what are your hours"), say("book"), say("it's jane doe")]:
        state = ConversationState.from_json(state.to_json())
        state, _ = step(flow, state, ev)
    data = json.loads(state.to_json())
    assert data["slots"] == {"name": "Jane Doe"}
    assert data["intent_path"] == ["faq:hours", "book"]
    assert data["recent_utterances"][-1] == "it's jane doe"
    assert ConversationState.from_json(state.to_json()) == state


def test_recent_utterances_keep_last_five(flow):
    state, _ = started(flow)
    for i in range(7):
        state, _ = step(flow, state, say(f"hours {i}") if i % 2 else say(f"blah {i}"))
        if state.finished:
            break
    assert len(state.recent_utterances) <= 5


def test_resume_with_start_repeats_prompt(flow):
    state, _ = started(flow)
    state, actions = step(flow, state, Event.start(OPEN))
    assert kinds(actions) == ["Ask"] and actions[0].reason.code == "resumed"


def test_first_chat_message_answers_the_first_prompt(flow):
    state, actions = step(flow, ConversationState(), Event(kind="utterance", text="book", now=OPEN, channel="chat"))
    assert kinds(actions) == ["Say", "Ask"]
    assert actions[0].text.startswith("Hi!")
    assert actions[1].slot == "name"
    assert state.channel == "chat"


def test_first_chat_greeting_just_gets_the_welcome(flow):
    state, actions = step(flow, ConversationState(), Event(kind="utterance", text="Hello!", now=OPEN, channel="chat"))
    assert kinds(actions) == ["Say", "Ask"] and actions[1].prompt == "How can I help?"
    assert state.misunderstandings == 0


def test_hangup_event(flow):
    state, _ = started(flow)
    state, actions = step(flow, state, Event(kind="hangup", now=OPEN))
    assert actions == [] and state.finished and state.outcome == "ended"


def test_events_need_aware_now():
    with pytest.raises(ValueError, match="timezone-aware"):
        Event.start(dt.datetime(2025, 3, 11, 10, 0))


def test_actions_serialise(flow):
    state, _ = started(flow)
    state, _ = step(flow, state, say("book"))
    _, actions = step(flow, state, say("agent"))
    data = actions_to_json(actions)
    json.dumps(data)
    assert data[-1]["type"] == "transfer" and data[-1]["summary"]["reason_code"] == "caller_requested_human"
    assert actions_from_json(data) == actions


def test_escalation_summary_is_readable(flow):
    state, _ = started(flow)
    state, _ = step(flow, state, say("what are your hours"))
    state, _ = step(flow, state, say("book"))
    state, _ = step(flow, state, say("jane doe"))
    _, actions = step(flow, state, say("actually can I talk to a real person"))
    summary = transfer(actions).summary
    assert isinstance(summary, EscalationSummary)
    assert summary.intent_path == ("faq:hours", "book")
    assert summary.flow_step == "ask_phone"
    assert summary.text == "Let me get someone who can help."  # ask_phone names no escalate step
    assert transfer(actions).queue == "general"
    text = summary.as_text()
    assert text.splitlines()[0].startswith("Escalated (caller_requested_human): Caller asked for a person")
    assert "Caller wanted: faq:hours > book" in text
    assert "name=Jane Doe" in text
    assert '"actually can I talk to a real person"' in text
    assert "At step: ask_phone (voice)" in text


def test_every_action_has_a_reason(flow):
    events = [Event.start(OPEN), say("blah"), say("hours"), say("book"), say("Jane"), say("x"), say("agent")]
    state = ConversationState()
    for ev in events:
        state, actions = step(flow, state, ev)
        for a in actions:
            assert re.fullmatch(r"[a-z_]+", a.reason.code) and a.reason.explanation


def test_said_texts_come_from_the_definition(flow):
    defn = flow.definition
    approved = set(defn.messages.model_dump().values())
    for s in defn.steps:
        for f in ("text", "voice_text", "prompt", "reprompt"):
            if getattr(s, f, None):
                approved.add(getattr(s, f))
        approved |= set(getattr(s, "error_texts", {}).values())
    approved |= {f.answer for f in defn.faqs} | {f.voice_answer for f in defn.faqs if f.voice_answer}
    scripts = [
        [
            Event.start(OPEN),
            say("boats"),
            say("hours"),
            say("book"),
            say("J"),
            say("Jane"),
            say("5"),
            say("x"),
            say("y"),
        ],
        [Event.start(CLOSED), say("refund"), Event.keys("9", CLOSED), Event.keys("3", CLOSED)],
        [Event.start(OPEN), say("lawyer")],
    ]
    for events in scripts:
        state = ConversationState()
        for ev in events:
            state, actions = step(flow, state, ev)
            for a in actions:
                for attr in ("text", "voice_text", "prompt", "reprompt"):
                    value = getattr(a, attr, None)
                    assert value is None or value in approved, value


def test_compile_rejects_invalid_definitions():
    defn = make_defn().model_copy(update={"start": "nope"})
    with pytest.raises(FlowCompileError) as exc:
        compile_flow(defn, KeywordNLU({}))
    assert exc.value.problems[0].code == "start_missing"
    with pytest.raises(TypeError):
        compile_flow(make_defn(), object())
    with pytest.raises(FlowCompileError, match="unknown_queue"):
        compile_flow(make_defn(), KeywordNLU({}), known_queues={"desk"})


def test_custom_messages():
    defn = make_defn().model_copy(update={"messages": Messages(not_understood="Pardon?")})
    flow = compile_flow(defn, KeywordNLU(NLU_RULES))
    state, _ = started(flow)
    _, actions = step(flow, state, say("zzz"))
    assert actions[0].text == "Pardon?"


# ---------------------------------------------------------------- the dental example end to end


class ExampleNLU:
    """Token-overlap matcher over the flow's own examples and FAQ questions (a stand-in for flows.nlu)."""

    def __init__(self, defn: FlowDefinition):
        self.index = [(i.name, e) for i in defn.intents for e in i.examples]
        self.index += [(f"faq:{f.key}", q) for f in defn.faqs for q in f.questions]

    @staticmethod
    def toks(text: str) -> set[str]:
        return set(re.findall(r"[a-z']+", text.lower())) - {"i", "a", "the", "to", "my", "you", "do", "is", "can"}

    def predict(self, text: str) -> FakeResult:
        said = self.toks(text)
        best, score = None, 0.0
        for label, example in self.index:
            ex = self.toks(example)
            s = len(said & ex) / max(len(said | ex), 1)
            if s > score:
                best, score = label, s
        if score < 0.3:
            return FakeResult(None, score, True, ((best, score),) if best else (), text.lower())
        return FakeResult(best, round(score, 2), False, ((best, score),), text.lower())


@pytest.fixture
def dental() -> CompiledFlow:
    defn = from_yaml((Path(__file__).resolve().parents[2] / "flows" / "examples" / "dental.yaml").read_text())
    return compile_flow(defn, ExampleNLU(defn), known_queues={"front-desk", "urgent", "on-call"})


def test_dental_booking_in_business_hours(dental):
    state, actions = started(dental)
    assert actions[0].voice_text.startswith("Thank you for calling Bright Smile Dental")
    assert actions[-1].prompt.startswith("How can I help you today?")
    state, actions = step(dental, state, say("how much is a cleaning"))
    assert actions[0].text.startswith("A standard cleaning is $95")
    state, actions = step(dental, state, say("I'd like to book a cleaning"))
    assert actions[-1].slot == "name"
    state, _ = step(dental, state, say("my name is Maria Lopez"))
    state, _ = step(dental, state, say("six one seven five five five oh one nine nine"))
    state, actions = step(dental, state, say("next Tuesday morning"))
    assert kinds(actions) == ["RequestAppointment", "Say", "CaptureLead", "Say", "Ask"]
    assert actions[0].when == "2025-03-18T09:00:00-04:00"
    assert actions[2].fields == {
        "name": "Maria Lopez",
        "phone": "+16175550199",
        "preferred_time": "2025-03-18T09:00:00-04:00",
    }
    state, actions = step(dental, state, say("no that's all"))
    assert actions[0].text == "Thank you for calling Bright Smile Dental. Have a great day!"
    assert state.outcome == "resolved"


def test_dental_after_hours_emergency(dental):
    state, actions = started(dental, CLOSED)
    assert actions[-1].prompt.startswith("Our office is closed right now.")
    _, actions = step(dental, state, Event.keys("1", CLOSED))
    t = transfer(actions)
    assert (t.queue, t.priority, t.reason.code) == ("urgent", 8, "dental_emergency")
    _, actions = step(dental, state, say("I knocked out a tooth, it's an emergency"))
    t = transfer(actions)
    assert (t.queue, t.reason.code) == ("urgent", "urgent_keyword")


def test_dental_speak_to_someone_and_holiday(dental):
    state, _ = started(dental)
    _, actions = step(dental, state, say("can I speak to someone at the front desk"))
    t = transfer(actions)
    assert t.queue == "front-desk" and t.reason.code == "caller_requested_human"
    state, actions = started(dental, HOLIDAY)
    assert actions[1].text == "Our office is closed today for the holiday."
    state, actions = step(dental, state, say("I'd like to leave a message"))
    assert kinds(actions) == ["Voicemail"] and state.outcome == "voicemail"


def test_dental_chat_start_with_question(dental):
    state, actions = step(
        dental, ConversationState(), Event(kind="utterance", text="Do you take my insurance?", now=OPEN, channel="chat")
    )
    assert actions[0].text == "Thank you for contacting Bright Smile Dental."
    assert actions[1].text.startswith("We accept most PPO plans")
    assert actions[2].prompt == "Is there anything else I can help you with?"
    assert actions[2].input_kind == "text"
