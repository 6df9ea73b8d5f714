"""NCCO models, validation and the engine-to-NCCO renderer.

Every NCCO the renderer emits is checked twice: by our pydantic models (render validates) and by
`vonage_check`, a small independent checker written by hand from Vonage's NCCO reference below.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flows.definition import from_yaml
from flows.engine import (
    Ask,
    CaptureLead,
    ConversationState,
    EscalationSummary,
    Event,
    HangUp,
    OfferCallback,
    Reason,
    RequestAppointment,
    Say,
    TransferToQueue,
    Voicemail,
    compile_flow,
    step,
)
from telephony.ncco import (
    NccoError,
    VoiceContext,
    agent_join_ncco,
    apology_ncco,
    render,
    render_turn,
    split_text,
    trim_hints,
    unknown_number_ncco,
    validate_ncco,
)

# ---------------------------------------------------------------- an independent reading of the reference


def is_bool(v):
    return isinstance(v, bool)


def is_int(lo=None, hi=None):
    return lambda v: (
        isinstance(v, int) and not isinstance(v, bool) and (lo is None or v >= lo) and (hi is None or v <= hi)
    )


def is_num(lo, hi):
    return lambda v: isinstance(v, int | float) and not isinstance(v, bool) and lo <= v <= hi


def is_str(max_len=None, pattern=None):
    return lambda v: (
        isinstance(v, str)
        and v.strip() != ""
        and (max_len is None or len(v) <= max_len)
        and (pattern is None or re.fullmatch(pattern, v) is not None)
    )


def one_of(*values):
    return lambda v: v in values


URL = is_str(pattern=r"https?://[^\s/]+(/\S*)?")
URLS = lambda v: isinstance(v, list) and len(v) == 1 and all(URL(u) for u in v)  # noqa: E731
STRS = lambda v: isinstance(v, list) and all(is_str()(s) for s in v)  # noqa: E731
METHOD = one_of("GET", "POST")

SPEC: dict[str, dict[str, Any]] = {
    "talk": {
        "required": {"text"},
        "fields": {
            "text": is_str(1500),
            "bargeIn": is_bool,
            "loop": is_int(0),
            "level": is_num(-1, 1),
            "language": is_str(pattern=r"[a-z]{2,3}(-[A-Za-z0-9]+)*"),
            "style": is_int(0),
            "premium": is_bool,
        },
    },
    "stream": {
        "required": {"streamUrl"},
        "fields": {"streamUrl": URLS, "level": is_num(-1, 1), "bargeIn": is_bool, "loop": is_int(0)},
    },
    "input": {
        "required": {"type"},
        "fields": {
            "type": lambda v: isinstance(v, list) and 1 <= len(v) <= 2 and set(v) <= {"dtmf", "speech"},
            "dtmf": {
                "timeOut": is_int(0, 10),
                "maxDigits": is_int(1, 20),
                "submitOnHash": is_bool,
            },
            "speech": {
                "uuid": STRS,
                "endOnSilence": is_num(0.4, 10),
                "language": is_str(),
                "context": STRS,
                "startTimeout": is_int(1, 60),
                "maxDuration": is_int(1, 60),
                "saveAudio": is_bool,
                "sensitivity": is_int(0, 100),
            },
            "eventUrl": URLS,
            "eventMethod": METHOD,
        },
    },
    "record": {
        "required": set(),
        "fields": {
            "format": one_of("mp3", "wav", "ogg"),
            "split": one_of("conversation"),
            "channels": is_int(1, 32),
            "endOnSilence": is_int(3, 10),
            "endOnKey": is_str(pattern=r"[0-9*#]"),
            "timeOut": is_int(3, 7200),
            "beepStart": is_bool,
            "eventUrl": URLS,
            "eventMethod": METHOD,
            "transcription": {
                "language": is_str(),
                "eventUrl": URLS,
                "eventMethod": METHOD,
                "sentimentAnalysis": is_bool,
            },
        },
    },
    "connect": {
        "required": {"endpoint"},
        "fields": {
            "endpoint": "ENDPOINTS",
            "from": is_str(pattern=r"[1-9]\d{6,14}"),
            "eventType": one_of("synchronous"),
            "timeout": is_int(3, 120),
            "limit": is_int(1, 7200),
            "machineDetection": one_of("continue", "hangup"),
            "eventUrl": URLS,
            "eventMethod": METHOD,
            "ringbackTone": URL,
        },
    },
    "conversation": {
        "required": {"name"},
        "fields": {
            "name": is_str(),
            "musicOnHoldUrl": URLS,
            "startOnEnter": is_bool,
            "endOnExit": is_bool,
            "record": is_bool,
            "canSpeak": STRS,
            "canHear": STRS,
            "mute": is_bool,
            "eventUrl": URLS,
            "eventMethod": METHOD,
        },
    },
    "notify": {
        "required": {"payload", "eventUrl"},
        "fields": {"payload": lambda v: isinstance(v, dict), "eventUrl": URLS, "eventMethod": METHOD},
    },
}
ENDPOINTS: dict[str, dict[str, Any]] = {
    "phone": {
        "required": {"number"},
        "fields": {
            "number": is_str(pattern=r"[1-9]\d{6,14}"),
            "dtmfAnswer": is_str(pattern=r"[0-9*#p]+"),
            "onAnswer": {"url": URL, "ringbackTone": URL},
        },
    },
    "app": {"required": {"user"}, "fields": {"user": is_str()}},
    "sip": {
        "required": {"uri"},
        "fields": {"uri": is_str(pattern=r"sips?:\S+"), "headers": lambda v: isinstance(v, dict)},
    },
    "websocket": {
        "required": {"uri", "content-type"},
        "fields": {
            "uri": is_str(pattern=r"wss?://\S+"),
            "content-type": one_of("audio/l16;rate=8000", "audio/l16;rate=16000", "audio/l16;rate=24000"),
            "headers": lambda v: isinstance(v, dict),
        },
    },
    "vbc": {"required": {"extension"}, "fields": {"extension": is_str(pattern=r"\d+")}},
}


def _check_fields(obj: dict, fields: dict, required: set, where: str, problems: list[str]) -> None:
    for key in required - set(obj):
        problems.append(f"{where}: missing {key}")
    for key, value in obj.items():
        rule = fields.get(key)
        if rule is None:
            problems.append(f"{where}: unknown field {key}")
        elif rule == "ENDPOINTS":
            if not (isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict)):
                problems.append(f"{where}.{key}: exactly one endpoint")
                continue
            ep = value[0]
            spec = ENDPOINTS.get(ep.get("type"))
            if spec is None:
                problems.append(f"{where}.{key}: unknown endpoint type {ep.get('type')}")
                continue
            _check_fields(
                {k: v for k, v in ep.items() if k != "type"},
                spec["fields"],
                spec["required"],
                f"{where}.{key}",
                problems,
            )
        elif isinstance(rule, dict):
            if not isinstance(value, dict):
                problems.append(f"{where}.{key}: must be an object")
            else:
                _check_fields(value, rule, set(), f"{where}.{key}", problems)
        elif not rule(value):
            problems.append(f"{where}.{key}: bad value {value!r}")


def vonage_check(ncco: Any) -> list[str]:
    """Problems Vonage would have with this NCCO, per its NCCO reference (field names, ranges, bargeIn rule)."""
    problems: list[str] = []
    if not isinstance(ncco, list) or not ncco:
        return ["an NCCO is a non-empty JSON array"]
    barge = False
    for i, action in enumerate(ncco):
        where = f"[{i}]"
        if not isinstance(action, dict) or list(action)[:1] != ["action"]:
            problems.append(f"{where}: an object whose first key is action")
            continue
        kind = action["action"]
        spec = SPEC.get(kind)
        if spec is None:
            problems.append(f"{where}: unknown action {kind}")
            continue
        body = {k: v for k, v in action.items() if k != "action"}
        _check_fields(body, spec["fields"], spec["required"], f"{where} {kind}", problems)
        if kind == "record" and "channels" in action and action.get("split") != "conversation":
            problems.append(f"{where}: channels needs split conversation")  # "split conversation must also be enabled"
        # "If you set bargeIn to true the next non-talk action in the NCCO stack must be an input action."
        if kind in ("talk", "stream"):
            barge = barge or action.get("bargeIn") is True
        elif kind == "input":
            barge = False
        elif barge:
            problems.append(f"{where}: {kind} follows a bargeIn talk/stream without an input")
            barge = False
    if barge:
        problems.append("a bargeIn talk/stream is not followed by an input")
    return problems


def ends_without_dead_air(ncco: list[dict]) -> bool:
    """The last action is one that holds the call (input, record, conversation, connect) or spoken words."""
    return ncco[-1]["action"] in ("input", "record", "conversation", "connect", "talk")


def assert_good(ncco: list[dict]) -> list[dict]:
    assert vonage_check(ncco) == []
    assert render(ncco) == ncco  # re-validates and is stable
    assert ends_without_dead_air(ncco)
    return ncco


def test_the_checker_itself_catches_mistakes():
    assert vonage_check([]) != []
    assert vonage_check([{"text": "x", "action": "talk"}]) != []  # action not first
    assert vonage_check([{"action": "talk", "text": "x", "voiceName": "Kimberly"}]) != []
    assert vonage_check([{"action": "talk", "text": "x", "bargeIn": True}]) != []
    assert vonage_check([{"action": "input", "type": ["dtmf"], "eventUrl": "https://x.test/"}]) != []
    assert vonage_check([{"action": "connect", "endpoint": [{"type": "phone", "number": "+15550100000"}]}]) != []


# ---------------------------------------------------------------- models

URL_IN = "https://sb.example.com/voice/input/conv-1"
REC = "https://sb.example.com/voice/recording/conv-1"
HOLD = "https://sb.example.com/static/hold.mp3"

EVERY_ACTION = [
    {"action": "talk", "text": "Hello", "bargeIn": False, "loop": 1, "level": 0.5, "language": "en-GB", "style": 2},
    {"action": "stream", "streamUrl": ["https://x.test/a.mp3"], "level": -0.5, "loop": 2},
    {"action": "record", "format": "wav", "split": "conversation", "channels": 2, "eventUrl": [REC]},
    {"action": "notify", "payload": {"step": "greeting"}, "eventUrl": ["https://x.test/notify"], "eventMethod": "POST"},
    {
        "action": "connect",
        "endpoint": [
            {"type": "phone", "number": "15550100000", "dtmfAnswer": "1p2", "onAnswer": {"url": "https://x.test/w"}}
        ],
        "from": "15550100001",
        "timeout": 30,
        "limit": 600,
        "machineDetection": "continue",
        "eventType": "synchronous",
        "eventUrl": ["https://x.test/ev"],
    },
    {"action": "connect", "endpoint": [{"type": "app", "user": "agent-7"}]},
    {"action": "connect", "endpoint": [{"type": "sip", "uri": "sip:desk@sip.example.com", "headers": {"k": "v"}}]},
    {
        "action": "connect",
        "endpoint": [{"type": "websocket", "uri": "wss://ws.test/a", "content-type": "audio/l16;rate=16000"}],
    },
    {"action": "connect", "endpoint": [{"type": "vbc", "extension": "1234"}]},
    {"action": "conversation", "name": "sb-t-1", "musicOnHoldUrl": [HOLD], "startOnEnter": False, "canHear": ["leg-1"]},
    {
        "action": "input",
        "type": ["dtmf", "speech"],
        "dtmf": {"timeOut": 5, "maxDigits": 4, "submitOnHash": True},
        "speech": {
            "endOnSilence": 0.4,
            "language": "en-US",
            "context": ["billing"],
            "startTimeout": 10,
            "maxDuration": 60,
        },
        "eventUrl": [URL_IN],
        "eventMethod": "POST",
    },
]


def test_every_action_kind_validates_and_round_trips():
    out = render(EVERY_ACTION)
    assert out == EVERY_ACTION
    assert vonage_check(out) == []
    assert all(next(iter(a)) == "action" for a in out)


def test_render_accepts_models_and_drops_none():
    from telephony.ncco import Connect, PhoneEndpoint, Talk

    out = render([Talk(text="Hi"), Connect(endpoint=[PhoneEndpoint(number="15550100000")], from_="15550100001")])
    assert out == [
        {"action": "talk", "text": "Hi"},
        {"action": "connect", "endpoint": [{"type": "phone", "number": "15550100000"}], "from": "15550100001"},
    ]


def test_an_ncco_of_models_is_still_checked_as_a_whole_and_dumps_as_its_dicts_would():
    from telephony.ncco import Input, Talk

    with pytest.raises(NccoError, match="bargeIn"):
        render([Talk(text="Hi", bargeIn=True), Talk(text="no input follows")])
    with pytest.raises(NccoError, match="empty"):
        render([])
    models = [Talk(text="Hi", bargeIn=True), Input(type=["speech"], eventUrl=["https://x.test/in"])]
    assert render(models) == render([dict(a) for a in render(models)])
    assert vonage_check(render(models)) == []


def bad(ncco: list[dict]) -> NccoError:
    with pytest.raises(NccoError) as exc:
        validate_ncco(ncco)
    assert isinstance(exc.value, ValueError)
    return exc.value


def test_talk_text_over_1500_is_rejected():
    err = bad([{"action": "talk", "text": "a" * 1501}])
    assert (err.index, err.field) == (0, "text")
    assert "ncco[0] (talk) text" in str(err)


def test_input_with_empty_type_is_rejected():
    err = bad([{"action": "talk", "text": "Hi"}, {"action": "input", "type": [], "eventUrl": [URL_IN]}])
    assert (err.index, err.field) == (1, "type")


def test_dtmf_max_digits_21_is_rejected():
    err = bad([{"action": "input", "type": ["dtmf"], "dtmf": {"maxDigits": 21}, "eventUrl": [URL_IN]}])
    assert (err.index, err.field) == (0, "dtmf.maxDigits")
    assert "less than or equal to 20" in str(err)


def test_connect_with_two_endpoints_is_rejected():
    two = [{"type": "phone", "number": "15550100000"}, {"type": "phone", "number": "15550100001"}]
    err = bad([{"action": "connect", "endpoint": two}])
    assert (err.index, err.field) == (0, "endpoint")


def test_conversation_without_name_is_rejected():
    err = bad([{"action": "talk", "text": "Hold on"}, {"action": "conversation", "musicOnHoldUrl": [HOLD]}])
    assert (err.index, err.field) == (1, "name")
    assert "Field required" in str(err)


@pytest.mark.parametrize(
    ("ncco", "field"),
    [
        ([{"action": "talk", "text": "x", "voiceName": "Amy"}], "voiceName"),  # removed option, extra forbidden
        ([{"action": "talk", "text": "x", "level": 2}], "level"),
        ([{"action": "talk", "text": "   "}], "text"),
        ([{"action": "talk", "text": "x", "bargeIn": "true"}], "bargeIn"),  # strict: no string booleans
        ([{"action": "input", "type": ["dtmf"], "eventUrl": URL_IN}], "eventUrl"),  # must be an array
        ([{"action": "input", "type": ["dtmf"], "eventUrl": ["/relative"]}], "eventUrl[0]"),
        ([{"action": "input", "type": ["voice"]}], "type[0]"),
        ([{"action": "input", "type": ["speech"], "speech": {"endOnSilence": 0.1}}], "speech.endOnSilence"),
        ([{"action": "input", "type": ["speech"], "speech": {"startTimeout": 61}}], "speech.startTimeout"),
        ([{"action": "record", "endOnSilence": 2}], "endOnSilence"),
        ([{"action": "record", "endOnKey": "##"}], "endOnKey"),
        ([{"action": "record", "timeOut": 7201}], "timeOut"),
        ([{"action": "record", "channels": 2}], "channels"),
        ([{"action": "record", "format": "flac"}], "format"),
        (
            [{"action": "connect", "endpoint": [{"type": "phone", "number": "+15550100000"}]}],
            "endpoint[0].phone.number",
        ),
        ([{"action": "connect", "endpoint": [{"type": "fax", "number": "15550100000"}]}], "endpoint[0]"),
        ([{"action": "connect", "endpoint": [{"type": "app", "user": "a"}], "limit": 7201}], "limit"),
        ([{"action": "conversation", "name": "x", "musicOnHoldUrl": [HOLD, HOLD]}], "musicOnHoldUrl"),
        ([{"action": "stream", "streamUrl": "https://x.test/a.mp3"}], "streamUrl"),
        ([{"action": "notify", "payload": {}}], "eventUrl"),
        ([{"action": "wait", "timeout": 1}], "action"),
        ([{"text": "no action"}], "action"),
    ],
)
def test_invalid_actions_name_the_field(ncco, field):
    err = bad(ncco)
    assert err.index == 0
    assert err.field == field, str(err)
    assert vonage_check(ncco) != []  # the independent reading agrees


@pytest.mark.parametrize(
    ("ncco", "field"),
    [
        ([{"action": "input", "type": ["dtmf"], "speech": {"language": "en-US"}}], "speech"),  # our rule
        ([{"action": "input", "type": ["dtmf", "dtmf"]}], "type"),  # our rule
        ([{"action": "conversation", "name": "x", "mute": True, "canSpeak": []}], "mute"),  # SDK's rule
    ],
)
def test_consistency_rules_beyond_the_reference(ncco, field):
    err = bad(ncco)
    assert (err.index, err.field) == (0, field), str(err)


def test_empty_and_non_list_nccos_are_rejected():
    assert "empty" in str(bad([]))
    with pytest.raises(NccoError):
        validate_ncco({"action": "talk", "text": "x"})  # type: ignore[arg-type]


def test_barge_in_needs_an_input_next():
    err = bad([{"action": "talk", "text": "Hi", "bargeIn": True}])
    assert (err.index, err.field) == (0, "bargeIn")
    err = bad(
        [
            {"action": "talk", "text": "Hi", "bargeIn": True},
            {"action": "talk", "text": "More"},
            {"action": "connect", "endpoint": [{"type": "app", "user": "a"}]},
        ]
    )
    assert "found connect at ncco[2]" in str(err)
    ok = [
        {"action": "talk", "text": "Hi", "bargeIn": True},
        {"action": "stream", "streamUrl": ["https://x.test/a.mp3"], "bargeIn": True},
        {"action": "input", "type": ["dtmf"], "eventUrl": [URL_IN]},
    ]
    assert render(ok) == ok


def test_actions_may_follow_connect_conversation_and_record():
    ncco = [
        {"action": "connect", "endpoint": [{"type": "phone", "number": "15550100000"}], "timeout": 20},
        {"action": "record", "endOnSilence": 3, "eventUrl": [REC]},
        {"action": "conversation", "name": "room"},
        {"action": "talk", "text": "Goodbye"},
    ]
    assert render(ncco) == ncco


# ---------------------------------------------------------------- helpers


def test_split_text_at_sentences():
    sentence = "This sentence is exactly forty-two chars. "
    text = (sentence * 80).strip()  # ~3360 chars
    parts = split_text(text)
    assert len(parts) == 3
    assert all(len(p) <= 1500 for p in parts)
    assert all(p.endswith(".") for p in parts)
    assert " ".join(parts) == text
    assert split_text("short") == ["short"]
    assert split_text("  ") == []


def test_split_text_without_sentence_ends_and_ssml():
    words = ("word " * 700).strip()  # 3499 chars, no full stops
    assert all(len(p) <= 1500 for p in split_text(words))
    assert " ".join(split_text(words)) == words
    assert all(len(p) <= 1500 for p in split_text("x" * 4000))
    ssml = "<speak>" + ("Hello &amp; welcome. " * 100) + "</speak>"
    parts = split_text(ssml)
    assert all("<" not in p and len(p) <= 1500 for p in parts)
    assert parts[0].startswith("Hello & welcome.")


def test_trim_hints():
    hints = ["Billing", " billing ", "", "x" * 101, "sales", "Sales", *[f"h{i}" for i in range(100)]]
    out = trim_hints(hints, limit=50)
    assert out[:2] == ["Billing", "sales"]
    assert len(out) == 50
    assert all(len(h) <= 100 for h in out)


# ---------------------------------------------------------------- render_turn

R = Reason(code="test", explanation="test")
CTX = VoiceContext(
    language="en-US",
    voice_style=1,
    input_url=URL_IN,
    record_url=REC,
    transcription=True,
    transcription_url="https://sb.example.com/voice/transcription/conv-1",
    hold_music_url=HOLD,
    conversation_name="sb-acme-conv-1",
    from_number="+15550109999",
)


def summary(text: str = "Connecting you now.") -> EscalationSummary:
    return EscalationSummary(reason_code="caller_requested_human", reason_text="asked", text=text)


def turn(*actions, ctx: VoiceContext = CTX) -> list[dict]:
    return assert_good(render_turn(list(actions), ctx=ctx))


def test_say_prefers_voice_text_and_hangs_up_after():
    out = turn(Say(text="Hi!", voice_text="Hi there.", reason=R), HangUp(reason=R))
    assert out == [{"action": "talk", "text": "Hi there.", "language": "en-US", "style": 1}]


def test_say_then_ask_can_be_interrupted():
    out = turn(
        Say(text="Welcome.", reason=R),
        Say(text="Calls are recorded.", reason=R),
        Ask(prompt="How can I help?", hints=("billing", "sales"), expect_dtmf=("1", "2", "0"), reason=R),
    )
    assert [a["action"] for a in out] == ["talk", "talk", "talk", "input"]
    assert "bargeIn" not in out[0]  # only the Say right before the Ask
    assert out[1]["bargeIn"] is True and out[2]["bargeIn"] is True
    assert out[2]["text"] == "How can I help?"
    inp = out[3]
    assert inp["type"] == ["speech", "dtmf"]
    assert inp["dtmf"] == {"timeOut": 5, "maxDigits": 1}
    assert inp["speech"] == {
        "endOnSilence": 1.0,
        "language": "en-US",
        "context": ["billing", "sales"],
        "startTimeout": 8,
    }
    assert inp["eventUrl"] == [URL_IN] and inp["eventMethod"] == "POST"


@pytest.mark.parametrize(
    ("kind", "types"),
    [("speech+dtmf", ["speech", "dtmf"]), ("speech", ["speech"]), ("dtmf", ["dtmf"]), ("text", ["speech"])],
)
def test_ask_input_kinds(kind, types):
    out = turn(Ask(prompt="Your answer?", input_kind=kind, reason=R))
    assert out[-1]["type"] == types
    assert ("dtmf" in out[-1]) == ("dtmf" in types)
    assert ("speech" in out[-1]) == ("speech" in types)


def test_ask_for_digits_submits_on_hash():
    out = turn(Ask(prompt="Your phone number?", max_digits=15, slot="phone", reason=R))
    assert out[-1]["dtmf"] == {"timeOut": 5, "maxDigits": 15, "submitOnHash": True}


def test_ask_hints_are_deduplicated_and_limited():
    hints = tuple(["Cleaning", "cleaning", "y" * 120] + [f"option {i}" for i in range(80)])
    ctx = VoiceContext(input_url=URL_IN, speech_hints_limit=10)
    out = turn(Ask(prompt="Which one?", hints=hints, reason=R), ctx=ctx)
    context = out[-1]["speech"]["context"]
    assert context[0] == "Cleaning" and "cleaning" not in context
    assert len(context) == 10 and all(len(h) <= 100 for h in context)


def test_nothing_follows_an_ask():
    out = turn(Ask(prompt="Yes or no?", reason=R), Say(text="stray", reason=R))
    assert out[-1]["action"] == "input"


def test_ask_needs_an_input_url():
    with pytest.raises(ValueError, match="input_url"):
        render_turn([Ask(prompt="Hm?", reason=R)], ctx=VoiceContext())


def test_long_say_is_split_into_several_talks():
    text = " ".join(f"Sentence number {i} is here." for i in range(150))
    out = turn(Say(text=text, reason=R), Ask(prompt="Anything else?", reason=R))
    talks = [a for a in out if a["action"] == "talk"]
    assert len(talks) >= 3
    assert " ".join(t["text"] for t in talks[:-1]) == text
    assert all(t.get("bargeIn") is True for t in talks)


def test_transfer_joins_the_named_conversation_with_hold_music():
    out = turn(
        Say(text="Connecting you now.", reason=R),
        TransferToQueue(queue="front-desk", priority=5, summary=summary(), reason=R),
    )
    assert out == [
        {"action": "talk", "text": "Connecting you now.", "language": "en-US", "style": 1},  # said once
        {
            "action": "conversation",
            "name": "sb-acme-conv-1",
            "musicOnHoldUrl": [HOLD],
            "startOnEnter": False,  # hold music until the agent's leg (startOnEnter true) joins
            "endOnExit": False,
        },
    ]


def test_transfer_says_the_handover_line_when_the_engine_did_not():
    out = turn(TransferToQueue(queue="q", priority=1, summary=summary("One moment."), reason=R))
    assert out[0]["text"] == "One moment."
    out = turn(TransferToQueue(queue="q", priority=1, summary=summary(""), reason=R))
    assert out[0]["text"] == CTX.handover_text
    assert out[-1]["action"] == "conversation"


def test_transfer_without_a_conversation_falls_back():
    ctx = VoiceContext(input_url=URL_IN, fallback_number="+1 555 010 0000", from_number="+15550109999")
    out = turn(TransferToQueue(queue="q", priority=1, summary=summary(), reason=R), ctx=ctx)
    assert out[-1] == {
        "action": "connect",
        "endpoint": [{"type": "phone", "number": "15550100000"}],
        "from": "15550109999",
    }


def test_voicemail_records_with_transcription_then_continues():
    out = turn(
        Voicemail(prompt="Please leave a message after the beep.", reason=R),
        Say(text="Thanks, goodbye.", reason=R),
        HangUp(reason=R),
    )
    assert [a["action"] for a in out] == ["talk", "record", "talk"]
    assert out[1] == {
        "action": "record",
        "format": "mp3",
        "endOnSilence": 3,
        "endOnKey": "#",
        "timeOut": 300,
        "beepStart": True,
        "eventUrl": [REC],
        "eventMethod": "POST",
        "transcription": {"language": "en-US", "eventUrl": ["https://sb.example.com/voice/transcription/conv-1"]},
    }


def test_voicemail_without_transcription_or_record_url():
    ctx = VoiceContext(input_url=URL_IN, record_url=REC)
    out = turn(Voicemail(prompt="Leave a message.", reason=R), ctx=ctx)
    assert "transcription" not in out[-1] and out[-1]["action"] == "record"
    out = turn(Voicemail(prompt="Leave a message.", reason=R), ctx=VoiceContext(input_url=URL_IN))
    assert out[-1] == {"action": "talk", "text": VoiceContext().goodbye_text, "language": "en-US"}


def test_offer_callback_side_effects_and_hangup():
    out = turn(
        CaptureLead(fields={"name": "Ann"}, reason=R),
        RequestAppointment(when="2025-03-18T09:00:00-04:00", service="cleaning", reason=R),
        OfferCallback(prompt="We'll call you back within the hour.", reason=R),
        Say(text="Goodbye.", reason=R),
        HangUp(reason=R),
        Say(text="never said", reason=R),
    )
    assert [a["text"] for a in out] == ["We'll call you back within the hour.", "Goodbye."]


def test_a_turn_that_renders_nothing_says_goodbye():
    out = turn(CaptureLead(fields={}, reason=R))
    assert out == [{"action": "talk", "text": CTX.goodbye_text, "language": "en-US", "style": 1}]
    assert turn() == out
    assert turn(HangUp(reason=R)) == out


def test_agent_join_ncco_starts_the_conversation():
    out = agent_join_ncco("sb-acme-conv-1")
    assert out == [{"action": "conversation", "name": "sb-acme-conv-1", "startOnEnter": True, "endOnExit": True}]
    assert vonage_check(out) == []
    with pytest.raises(NccoError):
        agent_join_ncco("  ")


# ---------------------------------------------------------------- apology / unknown number


def test_apology_with_fallback_number_connects():
    out = assert_good(apology_ncco(CTX, message="Sorry, a technical problem.", fallback_number="+44 20 7946 0000"))
    assert out[0]["text"] == "Sorry, a technical problem."
    assert out[1] == {
        "action": "connect",
        "endpoint": [{"type": "phone", "number": "442079460000"}],
        "from": "15550109999",
    }


def test_apology_without_fallback_records_or_says_goodbye():
    ctx = VoiceContext(input_url=URL_IN)
    out = assert_good(apology_ncco(ctx, message="Sorry.", record_url=REC))
    assert [a["action"] for a in out] == ["talk", "talk", "record", "talk"]
    assert out[2]["beepStart"] is True and out[2]["eventUrl"] == [REC]
    out = assert_good(apology_ncco(ctx, message="Sorry."))
    assert [a["action"] for a in out] == ["talk", "talk"]
    assert out[-1]["text"] == ctx.goodbye_text


@pytest.mark.parametrize(
    "ctx",
    [
        None,
        VoiceContext(language="not a language", fallback_number="12"),
        VoiceContext(record_url="ftp://nope", fallback_number="+1 (555) 010-0000 ext 9"),
        VoiceContext(voice_style=-4),  # an invalid style: the last-resort NCCO
    ],
)
def test_apology_is_always_valid(ctx):
    out = assert_good(apology_ncco(ctx, message="x" * 4000))
    assert out[0]["action"] == "talk"
    assert assert_good(apology_ncco(ctx, message=""))[0]["action"] == "talk"


def test_unknown_number():
    out = assert_good(unknown_number_ncco("en-GB"))
    assert out == [
        {"action": "talk", "text": "We're sorry, this number is not in service with us. Goodbye.", "language": "en-GB"}
    ]
    assert assert_good(unknown_number_ncco("es-MX"))[0]["text"].startswith("Lo sentimos")
    assert assert_good(unknown_number_ncco("ja-JP"))[0]["language"] == "en-US"
    assert assert_good(unknown_number_ncco("!!"))[0]["language"] == "en-US"


# ---------------------------------------------------------------- the real engine, end to end

OPEN = dt.datetime(2025, 3, 11, 14, 0, tzinfo=dt.UTC)  # Tue 10:00 in New York
CLOSED = dt.datetime(2025, 3, 12, 1, 0, tzinfo=dt.UTC)


@dataclass
class Guess:
    label: str | None
    confidence: float
    out_of_scope: bool
    candidates: tuple
    normalized_text: str


class WordNLU:
    def __init__(self, defn):
        self.index = [(i.name, e) for i in defn.intents for e in i.examples]
        self.index += [(f"faq:{f.key}", q) for f in defn.faqs for q in f.questions]

    def predict(self, text):
        said = set(re.findall(r"[a-z']+", text.lower()))
        best, score = None, 0.0
        for label, example in self.index:
            ex = set(re.findall(r"[a-z']+", example.lower()))
            s = len(said & ex) / max(len(said | ex), 1)
            if s > score:
                best, score = label, s
        if score < 0.3:
            return Guess(None, score, True, (), text.lower())
        return Guess(best, score, False, ((best, score),), text.lower())


@pytest.fixture
def dental():
    path = Path(__file__).resolve().parents[2] / "flows" / "examples" / "dental.yaml"
    defn = from_yaml(path.read_text())
    return compile_flow(defn, WordNLU(defn), known_queues={"front-desk", "urgent", "on-call"})


SCRIPTS = [
    (
        OPEN,
        [
            "how much is a cleaning",
            "I'd like to book a cleaning",
            "Maria Lopez",
            "six one seven five five five oh one nine nine",
            "next Tuesday morning",
            "no that's all",
        ],
    ),
    (OPEN, ["let me speak to a person"]),
    (OPEN, ["", "", "", ""]),  # silences
    (OPEN, ["#0", "#9"]),
    (CLOSED, ["#1"]),
    (CLOSED, ["I knocked out a tooth, it's an emergency"]),
    (CLOSED, ["#2", "", "", ""]),
    (OPEN, ["this is useless, what the hell"]),
]


@pytest.mark.parametrize(("now", "inputs"), SCRIPTS)
def test_every_engine_turn_renders_to_a_valid_ncco(dental, now, inputs):
    state, actions = step(dental, ConversationState(), Event.start(now))
    rendered = [turn(*actions)]
    for said in inputs:
        if state.finished:
            break
        if said == "":
            event = Event.silence(now)
        elif said.startswith("#"):
            event = Event.keys(said[1:], now)
        else:
            event = Event.utterance(said, now, asr_confidence=0.9)
        state, actions = step(dental, state, event)
        rendered.append(turn(*actions))
    for ncco in rendered:
        last = ncco[-1]["action"]
        if not state.finished or ncco is not rendered[-1]:
            assert last in ("input", "record", "conversation", "connect", "talk")
    if not state.finished:
        assert rendered[-1][-1]["action"] == "input"  # still talking: we are listening
