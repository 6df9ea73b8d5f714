"""The pure conversation engine: `step(flow, state, event) -> (new_state, actions)`.

Deterministic and side-effect free: no Django, no I/O, no clock but `event.now`, and the input state is
never mutated. Adapters (voice, web chat) persist `ConversationState.to_json()` between requests and
carry out the returned actions. Every word an action says comes from the flow's approved texts.

Per input event (utterance / dtmf) the escalation policy runs before routing, in this order:
caller_requested_human, urgent_keyword, caller_frustrated. Then the waiting menu or ask step handles
it; repeated_misunderstanding, low_asr_confidence and repeated_question are decided there. Escalations
use the escalate step named by the menu/ask (`escalate_to`, or an urgent keyword's `step`), else the
policy's default queue and priority.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
from dataclasses import dataclass, field
from types import MappingProxyType, SimpleNamespace
from typing import Annotated, Any, Literal, Protocol, runtime_checkable
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, JsonValue, TypeAdapter, field_validator, model_validator

from flows.definition import (
    AskStep,
    CaptureLeadStep,
    ConditionRule,
    ConditionStep,
    EndStep,
    EscalateStep,
    Faq,
    FaqStep,
    FlowDefinition,
    HoursBranchStep,
    Intent,
    MenuStep,
    OfferCallbackStep,
    Problem,
    RequestAppointmentStep,
    SayStep,
    VoicemailStep,
    errors_only,
    validate_definition,
)
from flows.hours import holiday_name, status_at
from flows.slots import parse_slot

MAX_AUTO_STEPS = 25
RECENT_UTTERANCES = 5
HISTORY_LIMIT = 50


# ---------------------------------------------------------------- understanding protocol


class NLUResultLike(Protocol):
    label: str | None
    confidence: float
    out_of_scope: bool
    candidates: tuple[tuple[str, float], ...]
    normalized_text: str


@runtime_checkable
class Understander(Protocol):
    def predict(self, text: str) -> NLUResultLike: ...


# ---------------------------------------------------------------- events, reasons, actions


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


Channel = Literal["voice", "chat"]
EventKind = Literal["start", "utterance", "dtmf", "silence", "asr_failure", "hangup"]
Outcome = Literal["resolved", "escalated", "voicemail", "callback", "ended"]


class Event(_Frozen):
    """One input. `now` (aware) is the only clock the engine sees."""

    kind: EventKind
    now: dt.datetime
    text: str | None = None
    dtmf: str | None = None
    asr_confidence: float | None = None
    channel: Channel = "voice"

    @field_validator("now")
    @classmethod
    def _aware(cls, v: dt.datetime) -> dt.datetime:
        if v.tzinfo is None or v.utcoffset() is None:
            raise ValueError("now: must be timezone-aware (e.g. datetime.now(UTC) in the adapter)")
        return v

    @model_validator(mode="after")
    def _shape(self) -> Event:
        if self.kind == "dtmf" and not (self.dtmf or "").strip():
            raise ValueError("dtmf: a dtmf event needs the keys pressed")
        return self

    @classmethod
    def start(cls, now: dt.datetime, channel: Channel = "voice") -> Event:
        return cls(kind="start", now=now, channel=channel)

    @classmethod
    def utterance(
        cls, text: str, now: dt.datetime, *, asr_confidence: float | None = None, channel: Channel = "voice"
    ) -> Event:
        return cls(kind="utterance", text=text, now=now, asr_confidence=asr_confidence, channel=channel)

    @classmethod
    def keys(cls, digits: str, now: dt.datetime, channel: Channel = "voice") -> Event:
        return cls(kind="dtmf", dtmf=digits, now=now, channel=channel)

    @classmethod
    def silence(cls, now: dt.datetime, channel: Channel = "voice") -> Event:
        return cls(kind="silence", now=now, channel=channel)


class Reason(_Frozen):
    code: str
    explanation: str


class EscalationSummary(_Frozen):
    """What a live agent sees when the conversation reaches them."""

    reason_code: str
    reason_text: str
    intent_path: tuple[str, ...] = ()
    slots: dict[str, JsonValue] = Field(default_factory=dict)
    last_utterances: tuple[str, ...] = ()
    flow_step: str | None = None
    text: str = ""  # the handover line said to the caller
    channel: Channel | None = None

    def as_text(self) -> str:
        lines = [f"Escalated ({self.reason_code}): {self.reason_text}"]
        if self.intent_path:
            lines.append("Caller wanted: " + " > ".join(self.intent_path))
        if self.slots:
            lines.append("Details: " + ", ".join(f"{k}={v}" for k, v in self.slots.items() if v is not None))
        if self.last_utterances:
            lines.append("Last said: " + " | ".join(f'"{u}"' for u in self.last_utterances))
        if self.flow_step:
            lines.append(f"At step: {self.flow_step}" + (f" ({self.channel})" if self.channel else ""))
        return "\n".join(lines)


class _Action(_Frozen):
    reason: Reason


class Say(_Action):
    type: Literal["say"] = "say"
    text: str
    voice_text: str | None = None


class Ask(_Action):
    type: Literal["ask"] = "ask"
    prompt: str
    reprompt: str | None = None
    slot: str | None = None
    input_kind: Literal["speech+dtmf", "speech", "dtmf", "text"] = "speech+dtmf"
    hints: tuple[str, ...] = ()
    expect_dtmf: tuple[str, ...] = ()  # single keys accepted (menus, human key)
    max_digits: int | None = None  # free digit entry (phone, number)


class TransferToQueue(_Action):
    type: Literal["transfer"] = "transfer"
    queue: str
    priority: int
    skills: tuple[str, ...] = ()
    summary: EscalationSummary


class Voicemail(_Action):
    type: Literal["voicemail"] = "voicemail"
    prompt: str
    slots: dict[str, JsonValue] = Field(default_factory=dict)


class OfferCallback(_Action):
    """Promise a call back: ``when`` is the chosen time (ISO, None: as soon as the business opens),
    ``phone`` the number to call (None: the caller's own)."""

    type: Literal["offer_callback"] = "offer_callback"
    prompt: str
    slots: dict[str, JsonValue] = Field(default_factory=dict)
    when: str | None = None
    phone: str | None = None
    name: str | None = None
    queue: str | None = None
    priority: int = 5
    summary: EscalationSummary | None = None


class HangUp(_Action):
    type: Literal["hangup"] = "hangup"


class CaptureLead(_Action):
    type: Literal["capture_lead"] = "capture_lead"
    fields: dict[str, JsonValue]


class RequestAppointment(_Action):
    type: Literal["request_appointment"] = "request_appointment"
    when: str
    service: str
    slots: dict[str, JsonValue] = Field(default_factory=dict)


Action = Annotated[
    Say | Ask | TransferToQueue | Voicemail | OfferCallback | HangUp | CaptureLead | RequestAppointment,
    Field(discriminator="type"),
]
_ACTIONS = TypeAdapter(list[Action])


def actions_to_json(actions: list[Any]) -> list[dict[str, Any]]:
    return _ACTIONS.dump_python(actions, mode="json")


def actions_from_json(data: list[dict[str, Any]]) -> list[Any]:
    return _ACTIONS.validate_python(data)


# ---------------------------------------------------------------- state


class ConversationState(_Frozen):
    """Everything the engine remembers between events (JSON via to_json / from_json)."""

    schema_version: int = 1
    current_step: str | None = None
    waiting_for: Literal["menu", "ask"] | None = None
    waiting_slot: str | None = None  # the slot the pending ask step collects
    attempts: int = 0
    slots: dict[str, JsonValue] = Field(default_factory=dict)
    intent_path: tuple[str, ...] = ()
    history: tuple[str, ...] = ()  # visited step ids (last 50)
    misunderstandings: int = 0  # consecutive
    low_asr_count: int = 0  # consecutive
    recent_utterances: tuple[str, ...] = ()  # last 5
    label_counts: dict[str, int] = Field(default_factory=dict)
    finished: bool = False
    outcome: Outcome | None = None
    escalation_reason: str | None = None
    served: bool = False  # an FAQ was answered, a lead captured or an appointment requested
    channel: Channel | None = None
    turns: int = 0

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, data: str | bytes) -> ConversationState:
        return cls.model_validate_json(data)


# ---------------------------------------------------------------- compiled flow


class FlowCompileError(ValueError):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("The flow has problems:\n" + "\n".join(f"- {p}" for p in problems))


@dataclass(frozen=True, eq=False)
class CompiledFlow:
    definition: FlowDefinition
    steps: MappingProxyType[str, Any]
    understander: Any
    intents: MappingProxyType[str, Intent] = field(default_factory=lambda: MappingProxyType({}))
    faqs: MappingProxyType[str, Faq] = field(default_factory=lambda: MappingProxyType({}))
    warnings: tuple[Problem, ...] = ()


def compile_flow(defn: FlowDefinition, understander: Any, *, known_queues: set[str] | None = None) -> CompiledFlow:
    """Validate and index a definition. Raises FlowCompileError when validation finds errors."""
    if not callable(getattr(understander, "predict", None)):
        raise TypeError("understander must have a predict(text) method")
    problems = validate_definition(defn, known_queues)
    errors = errors_only(problems)
    if errors:
        raise FlowCompileError(errors)
    return CompiledFlow(
        definition=defn,
        steps=MappingProxyType(defn.step_index()),
        understander=understander,
        intents=MappingProxyType({i.name: i for i in defn.intents}),
        faqs=MappingProxyType({f.key: f for f in defn.faqs}),
        warnings=tuple(p for p in problems if p.severity != "error"),
    )


# ---------------------------------------------------------------- text helpers


def normalize(text: str) -> str:
    t = text.lower().replace("\u2019", "'")
    t = re.sub(r"[^\w\s']", " ", t)
    return " ".join(t.split())


def _contains_phrase(norm_text: str, phrase: str) -> bool:
    p = normalize(phrase)
    return bool(p) and f" {p} " in f" {norm_text} "


_ANGER_WORDS = {
    "damn", "dammit", "damnit", "goddamn", "crap", "crappy", "shit", "shitty", "fuck", "fucking", "fucked", "wtf",
    "bullshit", "idiot", "idiots", "idiotic", "stupid", "useless", "ridiculous", "pathetic", "furious", "angry",
    "pissed", "livid", "outrageous", "unacceptable", "incompetent", "disgusting", "annoying", "annoyed",
    "frustrated", "frustrating", "moron", "morons", "screw", "sucks",
}  # fmt: skip
_ANGER_PHRASES = (
    "fed up", "sick of", "waste of time", "wasting my time", "what the hell", "are you kidding", "this is absurd",
    "for god's sake", "for gods sake", "not listening", "piss off", "shut up", "this is a joke", "i've had enough",
    "i have had enough", "so annoying",
)  # fmt: skip


def detect_frustration(text: str) -> str | None:
    """A short explanation when the text sounds angry (lexicon, ALL CAPS, '!!'), else None."""
    norm = normalize(text)
    words = norm.split()
    for w in words:
        if w in _ANGER_WORDS:
            return f'used the word "{w}"'
    for p in _ANGER_PHRASES:
        if _contains_phrase(norm, p):
            return f'said "{p}"'
    if "!!!" in text or "?!" in text or "!?" in text:
        return "used repeated exclamation marks"
    caps_words = re.findall(r"[A-Za-z]{2,}", text)
    letters = "".join(caps_words)
    if len(caps_words) >= 4 and len(letters) >= 12 and letters.isupper():
        return "wrote in ALL CAPS"
    return None


_GREETINGS = {"hi", "hello", "hey", "hi there", "hello there", "hey there", "good morning", "good afternoon",
              "good evening", "yo", "hiya", "howdy"}  # fmt: skip
_SKIP = {"skip", "none", "no", "nope", "pass", "n/a", "na", "prefer not to say", "i'd rather not", "no thanks",
         "i don't have one", "i dont have one", "don't have one", "not applicable", "n a"}  # fmt: skip


# ---------------------------------------------------------------- the step function


def step(flow: CompiledFlow, state: ConversationState, event: Event) -> tuple[ConversationState, list[Any]]:
    """Advance one event. Returns the new state and the actions for the adapter, in order."""
    if state.finished:
        return state, []
    turn = _Turn(flow, state, event)
    turn.run()
    return turn.result(), list(turn.actions)


def start(flow: CompiledFlow, event: Event) -> tuple[ConversationState, list[Any]]:
    """Convenience: a new conversation from its first event."""
    return step(flow, ConversationState(), event)


class _Turn:
    def __init__(self, flow: CompiledFlow, state: ConversationState, event: Event):
        self.flow = flow
        self.defn = flow.definition
        self.policy = self.defn.policy
        self.msgs = self.defn.messages
        self.event = event
        data = copy.deepcopy(state.model_dump())
        for k, v in data.items():
            if isinstance(v, tuple):
                data[k] = list(v)
        self.w = SimpleNamespace(**data)
        self.actions: list[Any] = []

    def result(self) -> ConversationState:
        w = self.w
        w.recent_utterances = w.recent_utterances[-RECENT_UTTERANCES:]
        w.history = w.history[-HISTORY_LIMIT:]
        return ConversationState(**vars(w))

    # ------------------------------------------------------------ entry

    def run(self) -> None:
        w, ev = self.w, self.event
        w.turns += 1
        w.channel = ev.channel
        if ev.kind == "hangup":
            w.finished, w.waiting_for, w.waiting_slot = True, None, None
            w.outcome = w.outcome or ("resolved" if w.served else "ended")
            return
        if w.current_step is None:
            self.enter(self.defn.start, Reason(code="conversation_started", explanation="New conversation"))
            if ev.kind in ("start", "silence") or w.finished or not w.waiting_for:
                return
            if ev.kind == "utterance" and normalize(ev.text or "") in _GREETINGS:
                return  # "hi" opening a web chat: the greeting and first prompt are the answer
            # A first message (web chat) answers the first prompt: drop that Ask and handle the message.
            if self.actions and isinstance(self.actions[-1], Ask):
                self.actions.pop()
            self.handle_input()
            return
        if ev.kind == "start":
            step_ = self.current()
            if w.waiting_for and step_ is not None:
                why = Reason(code="resumed", explanation="Conversation resumed; repeating the prompt")
                self.emit_prompt(step_, why)
            return
        if not w.waiting_for or self.current() is None:
            self.escalate(
                "flow_error",
                f"Received {ev.kind} while not waiting for input at step {w.current_step!r}",
                error=True,
            )
            return
        self.handle_input()

    def current(self) -> Any:
        return self.flow.steps.get(self.w.current_step) if self.w.current_step else None

    # ------------------------------------------------------------ input handling

    def handle_input(self) -> None:
        w, ev, pol = self.w, self.event, self.policy
        step_ = self.current()
        text = (ev.text or "").strip() if ev.kind in ("utterance", "asr_failure") else ""
        digits = (ev.dtmf or "").strip() if ev.kind == "dtmf" else None
        kind = ev.kind
        if kind == "utterance" and not text:
            kind = "silence"
        if text:
            w.recent_utterances.append(text)
        elif digits:
            w.recent_utterances.append(f"[pressed {digits}]")
        if kind == "silence":
            self.on_silence(step_)
            return
        low = kind == "asr_failure" or (ev.asr_confidence is not None and ev.asr_confidence < pol.low_asr_confidence)
        if self.pre_policy(step_, text, digits):
            return
        if low:
            self.on_low_asr(step_)
            return
        w.low_asr_count = 0
        if isinstance(step_, MenuStep):
            self.menu_input(step_, text, digits)
        elif isinstance(step_, AskStep):
            self.ask_input(step_, text, digits)

    def collecting_digits(self, step_: Any) -> bool:
        return isinstance(step_, AskStep) and step_.slot_type in ("phone", "number", "date", "datetime", "time")

    def pre_policy(self, step_: Any, text: str, digits: str | None) -> bool:
        pol = self.policy
        if digits is not None and pol.human_dtmf and digits == pol.human_dtmf and not self.collecting_digits(step_):
            self.escalate("caller_requested_human", f"Caller pressed {digits} to reach a person")
            return True
        if not text:
            return False
        norm = normalize(text)
        for phrase in pol.human_phrases:
            if _contains_phrase(norm, phrase):
                self.escalate("caller_requested_human", f'Caller asked for a person ("{phrase}")')
                return True
        for kw in pol.urgent_keywords:
            if _contains_phrase(norm, kw.phrase):
                self.escalate(
                    "urgent_keyword",
                    f'Caller said "{kw.phrase}" ({kw.reason_label})',
                    via=kw.step,
                )
                return True
        if pol.frustration:
            why = detect_frustration(text)
            if why:
                self.escalate("caller_frustrated", f"Caller sounds frustrated: {why}")
                return True
        return False

    def on_silence(self, step_: Any) -> None:
        w = self.w
        reason = Reason(code="no_input", explanation=f"No input at step '{step_.id}'")
        if isinstance(step_, AskStep) and not step_.required:
            w.slots[step_.slot] = None
            skipped = Reason(code="slot_skipped", explanation=f"Optional '{step_.slot}' skipped (no input)")
            self.goto(step_.next, skipped)
            return
        w.attempts += 1
        if w.attempts >= step_.max_attempts:
            gave_up = Reason(code="no_input", explanation=f"No input {w.attempts} times at '{step_.id}'")
            if isinstance(step_, AskStep):
                self.fail_ask(step_, reason)
            elif step_.no_input:
                self.goto(step_.no_input, gave_up)
            else:
                self.finish_call(None, gave_up)
            return
        self.emit_prompt(step_, reason, reprompt=True)

    def on_low_asr(self, step_: Any) -> None:
        w, ev, pol = self.w, self.event, self.policy
        w.low_asr_count += 1
        conf = "no transcript" if ev.kind == "asr_failure" else f"confidence {ev.asr_confidence:.2f}"
        explanation = (
            f"Speech recognition unsure ({conf}, threshold {pol.low_asr_confidence:.2f}), "
            f"{w.low_asr_count} time(s) in a row"
        )
        if w.low_asr_count >= pol.low_asr_repeats:
            self.escalate("low_asr_confidence", explanation)
            return
        self.retry(step_, Reason(code="low_asr_confidence", explanation=explanation), self.msgs.not_understood)

    # ------------------------------------------------------------ menus

    def menu_input(self, menu: MenuStep, text: str, digits: str | None) -> None:
        if digits is None and text.strip() in menu.dtmf:
            digits = text.strip()  # a typed "2" in chat
        if digits is not None:
            if digits in menu.dtmf:
                self.understood(f"dtmf:{digits}")
                pressed = Reason(code="dtmf_matched", explanation=f"Caller pressed {digits} at '{menu.id}'")
                self.goto(menu.dtmf[digits], pressed)
            else:
                self.misunderstood(
                    menu, Reason(code="dtmf_not_mapped", explanation=f"Key {digits} does nothing at '{menu.id}'")
                )
            return
        result = self.flow.understander.predict(text)
        label = None if getattr(result, "out_of_scope", False) else getattr(result, "label", None)
        conf = float(getattr(result, "confidence", 0.0) or 0.0)
        if not label:
            cands = getattr(result, "candidates", ()) or ()
            best = f" (closest: {cands[0][0]} {cands[0][1]:.2f})" if cands else ""
            self.misunderstood(
                menu,
                Reason(code="out_of_scope", explanation=f'"{text}" is not covered by the script{best}'),
            )
            return
        if label.startswith("faq:") and label not in menu.routes:
            faq = self.flow.faqs.get(label[4:])
            if faq is None or not menu.answer_faqs:
                why = "unknown FAQ" if faq is None else "FAQs are not answered at this menu"
                self.misunderstood(menu, Reason(code="out_of_scope", explanation=f"{label} ({conf:.2f}): {why}"))
                return
            if self.repeated(label):
                return
            self.understood(label)
            self.answer_faq(menu, faq, conf)
            return
        if label not in menu.routes:
            self.misunderstood(
                menu,
                Reason(code="out_of_scope", explanation=f"Intent {label} ({conf:.2f}) is not handled at '{menu.id}'"),
            )
            return
        if self.repeated(label):
            return
        self.understood(label)
        kind = "faq_routed" if label.startswith("faq:") else "intent_matched"
        self.goto(menu.routes[label], Reason(code=kind, explanation=f"Matched {label} ({conf:.2f}) at '{menu.id}'"))

    def answer_faq(self, menu: MenuStep, faq: Faq, conf: float) -> None:
        w = self.w
        reason = Reason(code="faq_answered", explanation=f"Answered FAQ '{faq.key}' ({conf:.2f}) at '{menu.id}'")
        self.actions.append(Say(text=faq.answer, voice_text=faq.voice_answer, reason=reason))
        w.served = True
        if menu.after_faq:
            self.goto(menu.after_faq, reason)
            return
        w.attempts = 0
        self.actions.append(self.menu_ask(menu, reason, prompt=self.msgs.anything_else))
        w.waiting_for, w.waiting_slot = "menu", None

    def understood(self, label: str) -> None:
        self.w.misunderstandings = 0
        self.w.intent_path.append(label)

    def repeated(self, label: str) -> bool:
        w, pol = self.w, self.policy
        n = w.label_counts.get(label, 0) + 1
        w.label_counts[label] = n
        if n > pol.repeat_question_limit:
            w.intent_path.append(label)
            self.escalate(
                "repeated_question",
                f"Caller asked for {label} {n} times (limit {pol.repeat_question_limit}); the answers did not help",
            )
            return True
        return False

    def misunderstood(self, menu: MenuStep, reason: Reason) -> None:
        w, pol = self.w, self.policy
        w.misunderstandings += 1
        if w.misunderstandings >= pol.max_misunderstandings:
            self.escalate(
                "repeated_misunderstanding",
                f"{w.misunderstandings} turns in a row not understood; last: {reason.explanation}",
            )
            return
        if menu.no_match:
            self.goto(menu.no_match, reason)
            return
        self.retry(menu, reason, self.msgs.not_understood)

    def retry(self, step_: Any, reason: Reason, say_text: str | None) -> None:
        """Count an attempt; reprompt, or give up after max_attempts."""
        w = self.w
        w.attempts += 1
        if w.attempts >= step_.max_attempts:
            if isinstance(step_, AskStep):
                self.fail_ask(step_, reason)
            else:
                why = f"No usable answer after {w.attempts} attempts at '{step_.id}'; last: {reason.explanation}"
                self.escalate("max_attempts", why)
            return
        if say_text:
            self.actions.append(Say(text=say_text, reason=reason))
        self.emit_prompt(step_, reason, reprompt=True)

    # ------------------------------------------------------------ asks

    def ask_input(self, ask: AskStep, text: str, digits: str | None) -> None:
        w, ev = self.w, self.event
        raw = digits if digits is not None else text
        if digits is not None:
            if ask.slot_type == "yes_no":
                raw = {"1": "yes", "2": "no"}.get(digits, digits)
            elif ask.slot_type == "choice" and digits.isdigit() and 1 <= int(digits) <= len(ask.choices):
                raw = ask.choices[int(digits) - 1]
        if not ask.required and normalize(raw) in _SKIP and ask.slot_type != "yes_no":
            w.slots[ask.slot] = None
            w.misunderstandings = 0
            self.goto(ask.next, Reason(code="slot_skipped", explanation=f"Caller skipped optional '{ask.slot}'"))
            return
        res = parse_slot(
            ask.slot_type,
            raw,
            now=ev.now,
            tz=self.defn.hours.timezone,
            choices=ask.choices,
            min=ask.min,
            max=ask.max,
            region=self.defn.region,
        )
        if res.ok:
            w.slots[ask.slot] = res.value
            w.misunderstandings = 0
            self.goto(ask.next, Reason(code="slot_filled", explanation=f"{ask.slot} = {res.value!r}"))
            return
        reason = Reason(
            code="slot_invalid",
            explanation=f"Could not read {ask.slot_type} '{ask.slot}' from \"{raw}\": {res.error} ({res.code})",
        )
        self.retry(ask, reason, ask.error_texts.get(res.code or "") or self.msgs.not_understood)

    def fail_ask(self, ask: AskStep, reason: Reason) -> None:
        why = Reason(
            code="slot_failed",
            explanation=f"Could not get '{ask.slot}' after {self.w.attempts} attempts; last: {reason.explanation}",
        )
        if ask.on_fail:
            self.goto(ask.on_fail, why)
        else:
            self.escalate(why.code, why.explanation)

    # ------------------------------------------------------------ prompts

    def hints_for(self, step_: Any) -> tuple[str, ...]:
        out: list[str] = []
        if isinstance(step_, MenuStep):
            for label in step_.routes:
                if label.startswith("faq:"):
                    continue
                out.append(label.replace("_", " "))
                intent = self.flow.intents.get(label)
                if intent:
                    out += [e for e in intent.examples if len(e.split()) <= 4][:3]
        elif isinstance(step_, AskStep):
            if step_.slot_type == "choice":
                out += step_.choices
            elif step_.slot_type == "yes_no":
                out += ["yes", "no"]
        seen: dict[str, None] = {}
        for h in out:
            seen.setdefault(h, None)
        return tuple(seen)[:30]

    def input_kind(self, step_: Any) -> str:
        if self.event.channel == "chat":
            return "text"
        if isinstance(step_, AskStep) and step_.slot_type in ("name", "email", "text"):
            return "speech"
        return "speech+dtmf"

    def menu_ask(self, menu: MenuStep, reason: Reason, prompt: str | None = None) -> Ask:
        keys = list(menu.dtmf)
        if self.policy.human_dtmf and self.policy.human_dtmf not in keys:
            keys.append(self.policy.human_dtmf)
        return Ask(
            prompt=prompt or menu.prompt,
            reprompt=menu.reprompt or menu.prompt,
            slot=None,
            input_kind=self.input_kind(menu),
            hints=self.hints_for(menu),
            expect_dtmf=tuple(keys),
            reason=reason,
        )

    def emit_prompt(self, step_: Any, reason: Reason, reprompt: bool = False) -> None:
        w = self.w
        if isinstance(step_, MenuStep):
            prompt = (step_.reprompt or step_.prompt) if reprompt else step_.prompt
            self.actions.append(self.menu_ask(step_, reason, prompt=prompt))
            w.waiting_for, w.waiting_slot = "menu", None
        elif isinstance(step_, AskStep):
            keys: tuple[str, ...] = ()
            max_digits = None
            if step_.slot_type in ("phone", "number"):
                max_digits = 15 if step_.slot_type == "phone" else 10
            elif step_.slot_type == "yes_no":
                keys = ("1", "2")
            elif step_.slot_type == "choice":
                keys = tuple(str(i + 1) for i in range(min(len(step_.choices), 9)))
            if self.policy.human_dtmf and not self.collecting_digits(step_) and self.policy.human_dtmf not in keys:
                keys += (self.policy.human_dtmf,)
            self.actions.append(
                Ask(
                    prompt=(step_.reprompt or step_.prompt) if reprompt else step_.prompt,
                    reprompt=step_.reprompt or step_.prompt,
                    slot=step_.slot,
                    input_kind=self.input_kind(step_),
                    hints=self.hints_for(step_),
                    expect_dtmf=keys,
                    max_digits=max_digits,
                    reason=reason,
                )
            )
            w.waiting_for, w.waiting_slot = "ask", step_.slot

    # ------------------------------------------------------------ running steps

    def goto(self, step_id: str | None, reason: Reason) -> None:
        self.enter(step_id, reason)

    def enter(self, step_id: str | None, reason: Reason) -> None:
        """Run steps from step_id until one waits for input or the conversation ends."""
        w = self.w
        arrival = reason
        for _ in range(MAX_AUTO_STEPS):
            if not step_id:
                self.escalate(
                    "flow_dead_end",
                    f"Step '{w.current_step}' has no next step ({arrival.explanation})",
                    error=True,
                )
                return
            s = self.flow.steps.get(step_id)
            if s is None:
                self.escalate("flow_error", f"Step '{step_id}' does not exist ({arrival.explanation})", error=True)
                return
            previous = w.current_step
            w.current_step = s.id
            w.history.append(s.id)
            w.attempts = 0
            w.waiting_for = w.waiting_slot = None
            after = Reason(code="flow_next", explanation=f"Continued from '{s.id}'")

            if isinstance(s, SayStep):
                self.actions.append(Say(text=s.text, voice_text=s.voice_text, reason=arrival))
                step_id = s.next
            elif isinstance(s, FaqStep):
                faq = self.flow.faqs.get(s.faq)
                if faq is None:
                    self.escalate("flow_error", f"FAQ '{s.faq}' used by step '{s.id}' does not exist", error=True)
                    return
                self.actions.append(Say(text=faq.answer, voice_text=faq.voice_answer, reason=arrival))
                w.served = True
                step_id = s.next
            elif isinstance(s, CaptureLeadStep):
                fields = {f: w.slots.get(f) for f in s.fields}
                self.actions.append(
                    CaptureLead(
                        fields=fields,
                        reason=Reason(code="lead_captured", explanation=f"Captured {', '.join(s.fields)} at '{s.id}'"),
                    )
                )
                self.actions.append(Say(text=s.text, reason=arrival))
                w.served = True
                step_id = s.next
            elif isinstance(s, RequestAppointmentStep):
                when = w.slots.get(s.slot)
                if not isinstance(when, str) or not when:
                    self.escalate(
                        "missing_slot", f"Appointment step '{s.id}' needs slot '{s.slot}', which is empty", error=True
                    )
                    return
                self.actions.append(
                    RequestAppointment(
                        when=when,
                        service=s.service,
                        slots=dict(w.slots),
                        reason=Reason(
                            code="appointment_requested", explanation=f"Requested {s.service} for {when} at '{s.id}'"
                        ),
                    )
                )
                self.actions.append(Say(text=s.text, reason=arrival))
                w.served = True
                step_id = s.next
            elif isinstance(s, HoursBranchStep):
                status = status_at(self.defn.hours, self.event.now)
                tzname = self.defn.hours.timezone
                local = self.event.now.astimezone(ZoneInfo(tzname)).strftime("%a %Y-%m-%d %H:%M")
                if status == "open":
                    after = Reason(code="business_hours_open", explanation=f"Open at {local} ({tzname})")
                    step_id = s.open
                elif status == "holiday":
                    name = holiday_name(self.defn.hours, self.event.now) or "holiday"
                    why = f"Closed for {name} at {local} ({tzname})"
                    after = Reason(code="business_hours_holiday", explanation=why)
                    step_id = s.holiday or s.closed
                else:
                    after = Reason(code="business_hours_closed", explanation=f"Closed at {local} ({tzname})")
                    step_id = s.closed
            elif isinstance(s, ConditionStep):
                step_id = s.else_
                after = Reason(code="condition_else", explanation=f"No rule matched at '{s.id}'")
                for i, rule in enumerate(s.rules):
                    if _rule_matches(rule, w.slots):
                        step_id = rule.next
                        after = Reason(
                            code="condition_matched",
                            explanation=f"Rule {i + 1} at '{s.id}': {rule.slot} {rule.op} {rule.value!r}",
                        )
                        break
            elif isinstance(s, MenuStep | AskStep):
                self.emit_prompt(s, arrival)
                return
            elif isinstance(s, EscalateStep):
                code = s.reason or (
                    arrival.code if arrival.code in ("slot_failed", "no_input", "max_attempts") else "flow_escalation"
                )
                self.transfer(
                    s,
                    code,
                    f"Flow reached escalation step '{s.id}' ({arrival.explanation})",
                    origin=previous,
                )
                return
            elif isinstance(s, VoicemailStep):
                self.actions.append(Voicemail(prompt=s.prompt, slots=dict(w.slots), reason=arrival))
                w.outcome = "voicemail"
                if not s.next:
                    w.finished = True
                    return
                step_id = s.next
            elif isinstance(s, OfferCallbackStep):
                self.actions.append(self.offer_callback(s, arrival))
                w.outcome = "callback"
                if not s.next:
                    w.finished = True
                    return
                step_id = s.next
            elif isinstance(s, EndStep):
                self.finish_call(s, arrival)
                return
            else:  # pragma: no cover - the union is closed
                self.escalate("flow_error", f"Unknown step kind at '{s.id}'", error=True)
                return
            arrival = after
        self.escalate(
            "flow_loop",
            f"More than {MAX_AUTO_STEPS} steps ran without asking the caller anything (stopped at '{step_id}')",
            error=True,
        )

    def offer_callback(self, s: OfferCallbackStep, reason: Reason) -> OfferCallback:
        w, pol = self.w, self.policy

        def text_slot(name: str | None) -> str | None:
            value = w.slots.get(name) if name else None
            return value.strip() if isinstance(value, str) and value.strip() else None

        summary = EscalationSummary(
            reason_code="callback_requested",
            reason_text=f"Callback promised at '{s.id}' ({reason.explanation})",
            intent_path=tuple(w.intent_path),
            slots=dict(w.slots),
            last_utterances=tuple(w.recent_utterances[-RECENT_UTTERANCES:]),
            flow_step=s.id,
            text=s.prompt,
            channel=self.event.channel,
        )
        return OfferCallback(
            prompt=s.prompt,
            slots=dict(w.slots),
            when=text_slot(s.time_slot),
            phone=text_slot(s.phone_slot),
            name=text_slot(s.name_slot),
            queue=s.queue or pol.default_queue,
            priority=s.priority if s.priority is not None else pol.default_priority,
            summary=summary,
            reason=reason,
        )

    def finish_call(self, end: EndStep | None, reason: Reason) -> None:
        w = self.w
        text = (end.text if end and end.text else None) or self.msgs.goodbye
        self.actions.append(Say(text=text, reason=reason))
        self.actions.append(HangUp(reason=reason))
        w.finished, w.waiting_for, w.waiting_slot = True, None, None
        w.outcome = w.outcome or ("resolved" if w.served else "ended")

    # ------------------------------------------------------------ escalation

    def escalate(self, code: str, explanation: str, *, via: str | None = None, error: bool = False) -> None:
        """Hand over to a person: via an escalate step when the flow names one, else the policy default."""
        cur = self.current()
        target = via or getattr(cur, "escalate_to", None)
        esc = self.flow.steps.get(target) if target else None
        if not isinstance(esc, EscalateStep):
            esc = None
        if error:
            self.actions.append(Say(text=self.msgs.error, reason=Reason(code=code, explanation=explanation)))
        self.transfer(esc, code, explanation, origin=self.w.current_step)

    def transfer(self, esc: EscalateStep | None, code: str, explanation: str, *, origin: str | None) -> None:
        w, pol = self.w, self.policy
        if esc is not None and w.current_step != esc.id:
            w.current_step = esc.id
            w.history.append(esc.id)
        queue = (esc.queue if esc and esc.queue else None) or pol.default_queue
        priority = esc.priority if esc and esc.priority is not None else pol.default_priority
        text = (esc.text if esc and esc.text else None) or self.msgs.handover
        reason = Reason(code=code, explanation=explanation)
        summary = EscalationSummary(
            reason_code=code,
            reason_text=explanation,
            intent_path=tuple(w.intent_path),
            slots=dict(w.slots),
            last_utterances=tuple(w.recent_utterances[-RECENT_UTTERANCES:]),
            flow_step=origin,
            text=text,
            channel=self.event.channel,
        )
        self.actions.append(Say(text=text, reason=reason))
        self.actions.append(
            TransferToQueue(
                queue=queue, priority=priority, skills=tuple(esc.skills if esc else ()), summary=summary, reason=reason
            )
        )
        w.finished, w.waiting_for, w.waiting_slot = True, None, None
        w.outcome = "escalated"
        w.escalation_reason = code


# ---------------------------------------------------------------- conditions


def _num(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return normalize(a) == normalize(b)
    na, nb = _num(a), _num(b)
    if na is not None and nb is not None and not isinstance(a, bool) and not isinstance(b, bool):
        return na == nb
    return a == b


def _rule_matches(rule: ConditionRule, slots: dict[str, Any]) -> bool:
    present = slots.get(rule.slot) not in (None, "")
    value = slots.get(rule.slot)
    if rule.op == "present":
        return present
    if rule.op == "absent":
        return not present
    if not present:
        return rule.op == "ne"
    if rule.op == "eq":
        return _same(value, rule.value)
    if rule.op == "ne":
        return not _same(value, rule.value)
    if rule.op == "in":
        return isinstance(rule.value, list) and any(_same(value, v) for v in rule.value)
    a, b = _num(value), _num(rule.value)
    if a is None or b is None:
        if isinstance(value, str) and isinstance(rule.value, str):  # ISO dates compare as text
            return value > rule.value if rule.op == "gt" else value < rule.value
        return False
    return a > b if rule.op == "gt" else a < b
