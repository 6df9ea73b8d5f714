"""Flow definition schema, publish-time validation, diff and YAML round-trip."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from pydantic import ValidationError

from flows.definition import (
    AskStep,
    BusinessHours,
    CaptureLeadStep,
    ConditionRule,
    ConditionStep,
    DefinitionError,
    EndStep,
    EscalateStep,
    EscalationPolicy,
    Faq,
    FaqStep,
    FlowDefinition,
    HoursBranchStep,
    Intent,
    MenuStep,
    OfferCallbackStep,
    RequestAppointmentStep,
    SayStep,
    UrgentKeyword,
    diff_definitions,
    from_json,
    from_yaml,
    to_json,
    to_yaml,
    validate_definition,
)

DENTAL = Path(__file__).resolve().parents[2] / "flows" / "examples" / "dental.yaml"
QUEUES = {"front-desk", "urgent", "on-call"}


def dental() -> FlowDefinition:
    return from_yaml(DENTAL.read_text())


def minimal(steps=None, **kw) -> FlowDefinition:
    """A small valid flow; tests break one thing at a time."""
    data = {
        "name": "Test",
        "start": "hello",
        "intents": [
            Intent(name="book", examples=["book", "appointment"]),
            Intent(name="bye", examples=["bye", "done"]),
        ],
        "faqs": [Faq(key="hours", questions=["when are you open"], answer="9 to 5.")],
        "steps": steps
        if steps is not None
        else [
            SayStep(id="hello", text="Hi!", next="menu"),
            MenuStep(id="menu", prompt="How can I help?", routes={"book": "ask_name", "bye": "end"}),
            AskStep(id="ask_name", slot="name", slot_type="name", prompt="Name?", next="lead", on_fail="esc"),
            CaptureLeadStep(id="lead", fields=["name"], text="Thanks.", next="end"),
            EscalateStep(id="esc", queue="desk"),
            EndStep(id="end", text="Bye."),
        ],
    }
    data.update(kw)
    return FlowDefinition(**data)


def codes(problems) -> list[str]:
    return [p.code for p in problems]


def only(problems, code):
    found = [p for p in problems if p.code == code]
    assert found, f"expected {code}, got {[str(p) for p in problems]}"
    return found[0]


# ---------------------------------------------------------------- the example


def test_dental_example_validates_with_no_problems():
    defn = dental()
    assert defn.name == "Bright Smile Dental"
    assert validate_definition(defn, known_queues=QUEUES) == []
    assert validate_definition(defn) == []


def test_dental_example_content():
    defn = dental()
    for intent in defn.intents:
        assert 8 <= len(intent.examples) <= 15, intent.name
    assert {f.key for f in defn.faqs} >= {"hours", "price_cleaning", "price_whitening", "price_checkup", "insurance"}
    assert defn.hours.timezone == "America/New_York"
    assert defn.hours.weekly["mon"] == [("08:00", "12:00"), ("13:00", "17:00")]
    assert defn.hours.weekly["sat"] == [("09:00", "13:00")]
    steps = defn.step_index()
    assert steps["escalate_emergency"].queue == "urgent" and steps["escalate_emergency"].priority == 8
    kinds = {s.kind for s in defn.steps}
    assert {"say", "menu", "ask", "request_appointment", "capture_lead", "hours_branch", "escalate"} <= kinds
    assert {"voicemail", "offer_callback", "end"} <= kinds


def test_minimal_is_valid():
    assert validate_definition(minimal()) == []


# ---------------------------------------------------------------- problem codes


def test_duplicate_step_ids():
    d = minimal()
    d = d.model_copy(update={"steps": [*d.steps, SayStep(id="hello", text="again", next="end")]})
    p = only(validate_definition(d), "duplicate_step_id")
    assert "hello" in p.message and "unique" in p.message


def test_start_missing():
    p = only(validate_definition(minimal(start="helo")), "start_missing")
    assert "'helo'" in p.message and "Did you mean 'hello'" in p.message and p.field == "start"


def test_unknown_step_reference():
    steps = [
        SayStep(id="hello", text="Hi", next="menu"),
        MenuStep(id="menu", prompt="?", routes={"book": "ask_nmae", "bye": "end"}),
        EndStep(id="end"),
    ]
    p = only(validate_definition(minimal(steps)), "unknown_step")
    assert p.step_id == "menu" and p.field == "routes.book"
    assert "ask_nmae" in p.message and "does not exist" in p.message


def test_unreachable_step():
    d = minimal()
    d = d.model_copy(update={"steps": [*d.steps, SayStep(id="orphan", text="Nobody hears this", next="end")]})
    p = only(validate_definition(d), "unreachable_step")
    assert p.step_id == "orphan" and "cannot be reached" in p.message


def test_dead_ends():
    steps = [
        SayStep(id="hello", text="Hi"),  # no next
        EndStep(id="end"),
    ]
    problems = validate_definition(minimal(steps))
    p = only(problems, "dead_end")
    assert p.step_id == "hello" and "Set next" in p.message
    cond = [
        SayStep(id="hello", text="Hi", next="c"),
        ConditionStep(id="c", rules=[ConditionRule(slot="x", op="present", next="end")]),
        AskStep(id="ask_x", slot="x", prompt="x?", next="end", on_fail="end"),
        EndStep(id="end"),
    ]
    assert any(p.step_id == "c" and p.code == "dead_end" for p in validate_definition(minimal(cond)))


def test_menu_with_nowhere_to_go_is_a_dead_end():
    steps = [MenuStep(id="hello", prompt="?", answer_faqs=False)]
    p = only(validate_definition(minimal(steps)), "dead_end")
    assert "routes" in p.message


def test_ask_without_on_fail():
    steps = [AskStep(id="hello", slot="name", prompt="Name?", next="end"), EndStep(id="end")]
    p = only(validate_definition(minimal(steps)), "missing_on_fail")
    assert "on_fail" in p.message and "escalate" in p.message


def test_slot_used_before_it_is_asked():
    steps = [
        SayStep(id="hello", text="Hi", next="lead"),
        CaptureLeadStep(id="lead", fields=["phone"], text="Thanks", next="ask_phone"),
        AskStep(id="ask_phone", slot="phone", slot_type="phone", prompt="Phone?", next="end", on_fail="end"),
        EndStep(id="end"),
    ]
    p = only(validate_definition(minimal(steps)), "slot_not_asked")
    assert p.step_id == "lead" and "'phone'" in p.message and "before" in p.message


def test_slot_asked_on_one_branch_is_enough_for_any_path():
    steps = [
        SayStep(id="hello", text="Hi", next="menu"),
        MenuStep(id="menu", prompt="?", routes={"book": "ask_when", "bye": "end"}),
        AskStep(id="ask_when", slot="when", slot_type="datetime", prompt="When?", next="req", on_fail="end"),
        RequestAppointmentStep(id="req", slot="when", service="Cleaning", text="Done", next="end"),
        ConditionStep(id="never", rules=[ConditionRule(slot="nope", op="present", next="end")], **{"else": "end"}),
        EndStep(id="end"),
    ]
    problems = validate_definition(minimal(steps))
    assert "slot_not_asked" in codes(problems)  # 'nope' in the unreachable condition
    assert not any(p.code == "slot_not_asked" and p.step_id == "req" for p in problems)


def test_appointment_needs_a_datetime_slot():
    steps = [
        AskStep(id="hello", slot="when", slot_type="text", prompt="When?", next="req", on_fail="end"),
        RequestAppointmentStep(id="req", slot="when", service="Cleaning", text="Done", next="end"),
        EndStep(id="end"),
    ]
    p = only(validate_definition(minimal(steps)), "slot_type_mismatch")
    assert "datetime" in p.message


def test_offer_callback_checks_its_slots_and_queue():
    steps = [
        AskStep(id="hello", slot="when", slot_type="text", prompt="When?", next="cb", on_fail="end"),
        OfferCallbackStep(id="cb", prompt="We'll call.", time_slot="when", phone_slot="phone", queue="nowhere"),
        EndStep(id="end"),
    ]
    problems = validate_definition(minimal(steps), known_queues={"desk"})
    mismatch = only(problems, "slot_type_mismatch")
    assert mismatch.step_id == "cb" and mismatch.field == "time_slot" and "datetime" in mismatch.message
    assert any(p.code == "slot_not_asked" and p.field == "phone_slot" for p in problems)
    assert any(p.code == "unknown_queue" and p.step_id == "cb" for p in problems)


def test_unknown_queue_only_with_known_queues():
    assert "unknown_queue" not in codes(validate_definition(minimal()))
    problems = validate_definition(minimal(), known_queues={"front-desk"})
    bad = [p for p in problems if p.code == "unknown_queue"]
    assert {p.field for p in bad} == {"queue", "policy.default_queue"}
    assert any("'desk'" in p.message and "front-desk" in p.message for p in bad)


def test_loop_without_exit():
    steps = [
        SayStep(id="hello", text="Hi", next="a"),
        SayStep(id="a", text="A", next="b"),
        SayStep(id="b", text="B", next="a"),
    ]
    p = only(validate_definition(minimal(steps)), "loop_without_exit")
    assert p.severity == "error" and "a, b" in p.message and "forever" in p.message


def test_interactive_loop_without_exit_is_a_warning():
    steps = [
        SayStep(id="hello", text="Hi", next="menu"),
        MenuStep(id="menu", prompt="?", routes={"book": "info", "bye": "info"}),
        SayStep(id="info", text="Info", next="menu"),
    ]
    p = only(validate_definition(minimal(steps)), "loop_without_exit")
    assert p.severity == "warning" and "hanging up" in p.message


def test_loop_with_exit_is_fine():
    # menu -> ask -> back to menu, with a way out
    steps = [
        SayStep(id="hello", text="Hi", next="menu"),
        MenuStep(id="menu", prompt="?", routes={"book": "ask", "bye": "end"}),
        AskStep(id="ask", slot="name", slot_type="name", prompt="Name?", next="menu", on_fail="end"),
        EndStep(id="end"),
    ]
    assert validate_definition(minimal(steps)) == []


def test_empty_texts():
    steps = [SayStep(id="hello", text="  ", next="end"), EndStep(id="end")]
    p = only(validate_definition(minimal(steps)), "empty_text")
    assert p.step_id == "hello" and p.field == "text"
    faq = minimal(faqs=[Faq(key="hours", questions=["when"], answer="")])
    assert only(validate_definition(faq), "empty_text").field == "faqs.hours.answer"


def test_menu_routing_to_unknown_intent():
    steps = [
        SayStep(id="hello", text="Hi", next="menu"),
        MenuStep(id="menu", prompt="?", routes={"bok": "end", "faq:prices": "end", "bye": "end"}),
        EndStep(id="end"),
    ]
    problems = validate_definition(minimal(steps))
    p = only(problems, "unknown_intent")
    assert "'bok'" in p.message and "Did you mean 'book'" in p.message
    assert "prices" in only(problems, "unknown_faq").message


def test_too_few_examples():
    d = minimal(intents=[Intent(name="book", examples=["book me"]), Intent(name="bye", examples=["bye", "done"])])
    p = only(validate_definition(d), "too_few_examples")
    assert "'book'" in p.message and "at least 2" in p.message


def test_faq_without_question_and_unknown_faq_step():
    steps = [FaqStep(id="hello", faq="parking", next="end"), EndStep(id="end")]
    d = minimal(steps, faqs=[Faq(key="hours", answer="9 to 5.")])
    problems = validate_definition(d)
    assert "FAQ 'hours' has no question" in only(problems, "faq_without_question").message
    assert only(problems, "unknown_faq").step_id == "hello"


def test_escalate_to_must_be_an_escalate_step():
    steps = [
        SayStep(id="hello", text="Hi", next="menu"),
        MenuStep(id="menu", prompt="?", routes={"book": "end", "bye": "end"}, escalate_to="end"),
        EndStep(id="end"),
    ]
    assert only(validate_definition(minimal(steps)), "escalate_to_not_escalate").field == "escalate_to"


def test_urgent_keyword_step_checked():
    pol = EscalationPolicy(urgent_keywords=[UrgentKeyword(phrase="emergency", reason_label="x", step="esc_urgnt")])
    p = only(validate_definition(minimal(policy=pol)), "unknown_step")
    assert p.field == "policy.urgent_keywords[0].step"


def test_bad_condition_rules():
    steps = [
        AskStep(id="hello", slot="age", slot_type="number", prompt="Age?", next="c", on_fail="end"),
        ConditionStep(
            id="c",
            rules=[
                ConditionRule(slot="age", op="gt", value="old", next="end"),
                ConditionRule(slot="age", op="in", value=3, next="end"),
            ],
            **{"else": "end"},
        ),
        EndStep(id="end"),
    ]
    bad = [p for p in validate_definition(minimal(steps)) if p.code == "bad_rule"]
    assert [p.field for p in bad] == ["rules[0]", "rules[1]"]


def test_choice_without_choices_and_warnings():
    steps = [
        AskStep(id="hello", slot="svc", slot_type="choice", prompt="Which?", next="end", on_fail="end"),
        EndStep(id="end"),
    ]
    assert "missing_choices" in codes(validate_definition(minimal(steps)))
    menu = [
        SayStep(id="hello", text="Hi", next="menu"),
        MenuStep(id="menu", prompt="?", routes={"book": "end", "bye": "end"}, dtmf={"0": "end"}),
        HoursBranchStep(id="hb", open="end", closed="end"),
        EndStep(id="end"),
    ]
    problems = validate_definition(minimal(menu))
    assert only(problems, "dtmf_conflict").severity == "warning"


def test_every_message_is_readable():
    broken = FlowDefinition(
        name="Broken",
        start="nowhere",
        intents=[Intent(name="x", examples=["x"])],
        faqs=[Faq(key="f", answer=" ")],
        steps=[
            SayStep(id="a", text="", next="b"),
            SayStep(id="a", text="dup"),
            MenuStep(id="m", prompt="?", routes={"y": "zz"}),
            AskStep(id="ask", slot="s", prompt="?"),
            CaptureLeadStep(id="lead", fields=["email"], text="ok"),
        ],
    )
    problems = validate_definition(broken, known_queues=set())
    assert len(set(codes(problems))) >= 8
    for p in problems:
        assert len(p.message) > 25 and p.message[0].isupper(), p
        assert p.code in str(p)


# ---------------------------------------------------------------- field validators


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda: BusinessHours(timezone="Mars/Base"), "timezone: 'Mars/Base' is not an IANA"),
        (lambda: BusinessHours(weekly={"mon": [("8am", "17:00")]}), "HH:MM"),
        (lambda: BusinessHours(weekly={"mon": [("17:00", "08:00")]}), "ends before it starts"),
        (lambda: BusinessHours(weekly={"mon": [("08:00", "12:00"), ("11:00", "13:00")]}), "overlap; merge"),
        (lambda: BusinessHours(weekly={"funday": []}), "not a weekday"),
        (lambda: EscalateStep(id="e", priority=12), "priority: 12 is out of range; use a value from 0 to 9"),
        (lambda: MenuStep(id="m", prompt="?", dtmf={"12": "x"}), "dtmf: key '12'"),
        (lambda: AskStep(id="a", slot="x", slot_type="phon", prompt="?"), "did you mean 'phone'"),
        (lambda: AskStep(id="a", slot="x", prompt="?", min=10, max=1), "swap them"),
        (lambda: SayStep(id="book cleaning", text="x"), "id: 'book cleaning' is not a valid id"),
        (lambda: Intent(name="faq:hours"), "reserved for FAQ labels"),
        (lambda: EscalationPolicy(low_asr_confidence=4), "low_asr_confidence"),
        (lambda: EscalationPolicy(human_dtmf="00"), "human_dtmf"),
        (lambda: minimal(language="english"), "BCP-47"),
        (lambda: SayStep(id="s", text="x", colour="red"), "Extra inputs are not permitted"),
    ],
)
def test_field_validators_name_the_field_and_the_fix(make, needle):
    with pytest.raises(ValidationError) as exc:
        make()
    assert needle in str(exc.value)


def test_hours_accept_friendly_forms():
    hours = BusinessHours(weekly={"Monday": ["08:00-12:00", "13:00 - 17:00"], "tue": [[480, 1020]]})
    assert hours.weekly == {"mon": [("08:00", "12:00"), ("13:00", "17:00")], "tue": [("08:00", "17:00")]}


def test_region_from_language():
    assert minimal(language="en-GB").region == "GB"
    assert minimal(language="fr").region == "US"


# ---------------------------------------------------------------- YAML and JSON


def test_yaml_round_trip():
    defn = dental()
    text = to_yaml(defn)
    assert from_yaml(text) == defn
    assert "else_" not in text
    again = to_yaml(from_yaml(text))
    assert again == text


def test_condition_else_alias_round_trips():
    steps = [
        AskStep(id="hello", slot="age", slot_type="number", prompt="Age?", next="c", on_fail="end"),
        ConditionStep(id="c", rules=[ConditionRule(slot="age", op="gt", value=17, next="end")], **{"else": "end"}),
        EndStep(id="end"),
    ]
    d = minimal(steps)
    text = to_yaml(d)
    assert "else: end" in text
    assert from_yaml(text) == d
    assert from_json(to_json(d)) == d
    assert from_json(d.model_dump_json(by_alias=True)) == d


def test_yaml_unquoted_times_and_keys():
    text = """
name: Plumber
start: hi
hours:
  timezone: America/Chicago
  weekly:
    mon: [[08:00, 13:00], [14:00, 18:30]]
  holidays:
    - date: 2025-12-25
      name: Christmas
steps:
  - id: hi
    kind: menu
    prompt: Press 1 for a quote.
    dtmf: {1: bye}
  - id: bye
    kind: end
"""
    defn = from_yaml(text)
    assert defn.hours.weekly["mon"] == [("08:00", "13:00"), ("14:00", "18:30")]
    assert defn.hours.holidays[0].date == dt.date(2025, 12, 25)
    assert defn.step_index()["hi"].dtmf == {"1": "bye"}


def test_bad_yaml_names_the_line():
    text = "name: X\nstart: a\nsteps:\n  - id: a\n    kind: say\n   text: broken indent\n"
    with pytest.raises(DefinitionError) as exc:
        from_yaml(text)
    assert "line 6" in str(exc.value)


def test_schema_errors_name_the_line_and_field():
    text = """name: X
start: a
steps:
  - id: a
    kind: say
    text: Hello
    next: b
  - id: b
    kind: escalate
    priority: 42
  - id: c
    kind: ask
    slot: phone
"""
    with pytest.raises(DefinitionError) as exc:
        from_yaml(text)
    msgs = exc.value.errors
    assert any("line 10" in m and "steps[1].priority" in m and "0 to 9" in m for m in msgs), msgs
    assert any("line 11" in m and "'prompt' is missing" in m for m in msgs), msgs


def test_yaml_must_be_a_mapping():
    with pytest.raises(DefinitionError, match="mapping"):
        from_yaml("- just\n- a list\n")


def test_unknown_kind_is_reported():
    with pytest.raises(DefinitionError) as exc:
        from_yaml("name: X\nstart: a\nsteps:\n  - id: a\n    kind: dance\n")
    assert "dance" in str(exc.value) and "line 4" in str(exc.value)


# ---------------------------------------------------------------- diff


def test_diff_definitions():
    a = dental()
    data = a.model_dump(by_alias=True)
    data["steps"] = [s for s in data["steps"] if s["id"] != "holiday_notice"]
    for s in data["steps"]:
        if s["id"] == "greeting":
            s["text"] = "Hello from Bright Smile Dental!"
        if s["id"] == "check_hours":
            s["holiday"] = "after_hours_menu"
        if s["id"] == "main_menu":
            s["routes"]["request_callback"] = "voicemail"
            del s["dtmf"]["9"]
    data["steps"].append({"id": "thanks", "kind": "say", "text": "Thanks!", "next": "end_goodbye"})
    data["intents"][0]["examples"] = data["intents"][0]["examples"][1:] + ["Get me a cleaning"]
    data["intents"] = [i for i in data["intents"] if i["name"] != "goodbye"]
    data["faqs"][0]["answer"] = "Open 8 to 5."
    data["policy"]["max_misunderstandings"] = 3
    data["policy"]["human_phrases"].append("manager")
    data["hours"]["weekly"]["sat"] = []
    data["hours"]["holidays"].append({"date": "2026-09-07", "name": "Labor Day"})
    b = FlowDefinition.model_validate(data)
    changes = diff_definitions(a, b)
    text = "\n".join(changes)
    assert "Step 'holiday_notice' (say) removed" in changes
    assert "Step 'thanks' (say) added" in changes
    assert "Step 'greeting': text changed from 'Thank you for contacting Bright Smile Dental.' to" in text
    assert "Step 'main_menu': routes.request_callback changed from 'offer_callback' to 'voicemail'" in changes
    assert "Step 'main_menu': dtmf.9 removed (was 'escalate_emergency')" in changes
    assert "Intent 'book_cleaning': example removed \"I'd like to book a cleaning\"" in changes
    assert "Intent 'book_cleaning': example added 'Get me a cleaning'" in changes
    assert "Intent 'goodbye' removed" in changes
    assert "FAQ 'hours': answer changed" in text
    assert "Policy: max_misunderstandings changed from 2 to 3" in changes
    assert "Policy: human_phrases added 'manager'" in changes
    assert "Hours: sat changed from 09:00-13:00 to closed" in changes
    assert any(c.startswith("Hours: holiday added") and "Labor Day" in c for c in changes)
    assert diff_definitions(a, a) == []
