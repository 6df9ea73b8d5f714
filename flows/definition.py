"""Flow definitions: the immutable snapshot a published FlowVersion stores (JSON) and the YAML format.

Pure module: pydantic models, publish-time validation (`validate_definition`), a human-readable diff
(`diff_definitions`) and YAML round-trip (`to_yaml` / `from_yaml`). No Django, no I/O, no clock.

Schema summary (YAML)::

    name: Bright Smile Dental
    language: en-US            # BCP-47 tag; its region (US) is used to read phone numbers
    voice_style: null          # optional TTS voice style id
    start: greeting            # id of the first step
    messages: {not_understood, handover, goodbye, error, anything_else}
    policy: {human_phrases, human_dtmf, urgent_keywords: [{phrase, reason_label, step}], frustration,
             max_misunderstandings, low_asr_confidence, low_asr_repeats, repeat_question_limit,
             default_queue, default_priority}
    hours: {timezone, weekly: {mon: [["08:00", "12:00"], ["13:00", "17:00"]], ...},
            holidays: [{date, name}], closures: [{start, end, reason}]}
    intents: [{name, examples: [...], description}]
    faqs: [{key, questions: [...], answer, voice_answer}]
    steps: [{id, kind, ...}]   # kinds: say menu ask faq capture_lead request_appointment hours_branch
                               #        condition escalate voicemail offer_callback end
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Iterable
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
SlotType = Literal["name", "phone", "email", "datetime", "date", "time", "number", "yes_no", "choice", "text"]
SLOT_TYPES: tuple[str, ...] = SlotType.__args__
RuleOp = Literal["eq", "ne", "gt", "lt", "in", "present", "absent"]

_ID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]*$")
_SLOT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HHMM_RE = re.compile(r"^(?:[01]\d|2[0-3]):[0-5]\d$")
_LANG_RE = re.compile(r"^[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})*$")
_DTMF_KEYS = set("0123456789*#")


class DefinitionError(ValueError):
    """A definition could not be loaded (bad YAML or schema errors). `errors` lists readable messages."""

    def __init__(self, message: str, errors: list[str] | None = None):
        super().__init__(message)
        self.errors = errors or [message]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# ---------------------------------------------------------------- field helpers


def _check_id(value: str, field: str, example: str) -> str:
    value = value.strip() if isinstance(value, str) else value
    if not value or not _ID_RE.match(value):
        raise ValueError(
            f"{field}: {value!r} is not a valid id; start with a letter and use only letters, digits, "
            f"'_', '-' or '.' (for example {example!r})"
        )
    return value


def _check_range(value: float | None, field: str, lo: float, hi: float, hint: str = "") -> Any:
    if value is not None and not (lo <= value <= hi):
        raise ValueError(f"{field}: {value} is out of range; use a value from {lo:g} to {hi:g}{hint}")
    return value


def _as_text(v: Any) -> Any:
    """YAML 1.1 turns yes/no/on/off into booleans and 12 into ints; give list items back their text."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int | float):
        return str(v)
    return v


def _str_list(v: Any) -> Any:
    if isinstance(v, str):
        return [v]
    if isinstance(v, list | tuple):
        return [_as_text(x) for x in v]
    return v


def _str_keys(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(_as_text(k)): _as_text(val) for k, val in v.items()}
    return v


def _hhmm(v: Any) -> Any:
    """Accept "08:00"; YAML reads unquoted 13:00 as the sexagesimal int 780: turn it back."""
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 24 * 60:
        return f"{v // 60:02d}:{v % 60:02d}"
    if isinstance(v, str) and re.fullmatch(r"\d:\d\d", v.strip()):
        return "0" + v.strip()
    return v.strip() if isinstance(v, str) else v


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


# ---------------------------------------------------------------- hours


class Holiday(_Model):
    date: dt.date
    name: str = ""


class Closure(_Model):
    """A one-off closure. Naive datetimes are read in the hours' timezone."""

    start: dt.datetime
    end: dt.datetime
    reason: str = ""

    @model_validator(mode="after")
    def _order(self) -> Closure:
        a, b = self.start, self.end
        if (a.tzinfo is None) == (b.tzinfo is None) and b <= a:
            raise ValueError(f"closures: end ({b.isoformat()}) must be after start ({a.isoformat()}); swap them")
        return self


class BusinessHours(_Model):
    timezone: str = "UTC"
    weekly: dict[Weekday, list[tuple[str, str]]] = Field(default_factory=dict)
    holidays: list[Holiday] = Field(default_factory=list)
    closures: list[Closure] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"timezone: {v!r} is not an IANA time zone name; use one like 'America/New_York' or 'Europe/London'"
            ) from None
        return v

    @field_validator("weekly", mode="before")
    @classmethod
    def _weekly_before(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        out: dict[Any, Any] = {}
        for day, intervals in v.items():
            key = str(day).strip().lower()[:3] if isinstance(day, str) else day
            if key not in WEEKDAYS:
                raise ValueError(f"weekly: {day!r} is not a weekday; use one of {', '.join(WEEKDAYS)}")
            if intervals is None:
                intervals = []
            if isinstance(intervals, str):
                intervals = [intervals]
            items = []
            for iv in intervals:
                if isinstance(iv, str) and "-" in iv:
                    iv = [p.strip() for p in iv.split("-", 1)]
                if isinstance(iv, list | tuple) and len(iv) == 2:
                    iv = (_hhmm(iv[0]), _hhmm(iv[1]))
                else:
                    raise ValueError(
                        f'weekly.{key}: {iv!r} is not an interval; write it as ["08:00", "12:00"] or "08:00-12:00"'
                    )
                items.append(iv)
            out[key] = items
        return out

    @field_validator("weekly")
    @classmethod
    def _weekly(cls, v: dict[str, list[tuple[str, str]]]) -> dict[str, list[tuple[str, str]]]:
        for day, intervals in v.items():
            spans = []
            for start, end in intervals:
                for label, t in (("start", start), ("end", end)):
                    if not (_HHMM_RE.match(t) or (label == "end" and t == "24:00")):
                        raise ValueError(
                            f"weekly.{day}: {label} time {t!r} is not HH:MM; use 24-hour times like '08:00' "
                            f"or '17:30' (an end may be '24:00')"
                        )
                if _minutes(end) <= _minutes(start):
                    raise ValueError(
                        f"weekly.{day}: interval {start}-{end} ends before it starts; overnight shifts are two "
                        f"intervals, e.g. {start}-24:00 today and 00:00-{end} the next day"
                    )
                spans.append((_minutes(start), _minutes(end), f"{start}-{end}"))
            spans.sort()
            for (_, e1, a), (s2, _, b) in zip(spans, spans[1:], strict=False):
                if s2 < e1:
                    raise ValueError(f"weekly.{day}: intervals {a} and {b} overlap; merge them into one interval")
        return {d: v[d] for d in WEEKDAYS if d in v}


# ---------------------------------------------------------------- intents, FAQs, policy, messages


class Intent(_Model):
    name: str
    examples: list[str] = Field(default_factory=list)
    description: str = ""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if isinstance(v, str) and v.startswith("faq:"):
            raise ValueError(f"name: {v!r} may not start with 'faq:' (that prefix is reserved for FAQ labels)")
        return _check_id(v, "name", "book_cleaning")

    _examples = field_validator("examples", mode="before")(classmethod(lambda cls, v: _str_list(v)))


class Faq(_Model):
    key: str
    questions: list[str] = Field(default_factory=list)
    answer: str
    voice_answer: str | None = None

    @field_validator("key")
    @classmethod
    def _key(cls, v: str) -> str:
        return _check_id(v, "key", "opening_hours")

    _questions = field_validator("questions", mode="before")(classmethod(lambda cls, v: _str_list(v)))


class UrgentKeyword(_Model):
    phrase: str
    reason_label: str = "urgent"
    step: str | None = None  # escalate step to use (e.g. an urgent queue); None -> the current step's / default

    @field_validator("phrase")
    @classmethod
    def _phrase(cls, v: str) -> str:
        if not str(v).strip():
            raise ValueError("phrase: an urgent keyword needs a phrase, e.g. 'emergency'")
        return str(v).strip()


DEFAULT_HUMAN_PHRASES = [
    "agent",
    "representative",
    "real person",
    "human",
    "operator",
    "speak to someone",
    "talk to someone",
    "speak to a person",
    "talk to a person",
    "live person",
    "someone real",
]

DEFAULT_URGENT_KEYWORDS = [
    UrgentKeyword(phrase="emergency", reason_label="emergency"),
    UrgentKeyword(phrase="lawyer", reason_label="legal"),
    UrgentKeyword(phrase="attorney", reason_label="legal"),
    UrgentKeyword(phrase="cancel my account", reason_label="cancellation"),
]


class EscalationPolicy(_Model):
    human_phrases: list[str] = Field(default_factory=lambda: list(DEFAULT_HUMAN_PHRASES))
    human_dtmf: str | None = "0"
    urgent_keywords: list[UrgentKeyword] = Field(default_factory=lambda: list(DEFAULT_URGENT_KEYWORDS))
    frustration: bool = True
    max_misunderstandings: int = 2
    low_asr_confidence: float = 0.4
    low_asr_repeats: int = 2
    repeat_question_limit: int = 2
    default_queue: str = "default"
    default_priority: int = 5

    _phrases = field_validator("human_phrases", mode="before")(classmethod(lambda cls, v: _str_list(v)))

    @field_validator("human_dtmf", mode="before")
    @classmethod
    def _dtmf(cls, v: Any) -> Any:
        v = _as_text(v) if v is not None else None
        if v is not None and (len(v) != 1 or v not in _DTMF_KEYS):
            raise ValueError(f"human_dtmf: {v!r} must be one key 0-9, * or # (usually '0'), or null to disable")
        return v

    @field_validator("max_misunderstandings", "low_asr_repeats", "repeat_question_limit")
    @classmethod
    def _counts(cls, v: int, info: Any) -> int:
        return _check_range(v, info.field_name, 1, 20)

    @field_validator("low_asr_confidence")
    @classmethod
    def _conf(cls, v: float) -> float:
        return _check_range(v, "low_asr_confidence", 0.0, 1.0, " (0.4 is a good default)")

    @field_validator("default_priority")
    @classmethod
    def _prio(cls, v: int) -> int:
        return _check_range(v, "default_priority", 0, 9, " (0 lowest, 9 highest)")

    @field_validator("default_queue")
    @classmethod
    def _queue(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("default_queue: give the name of the queue that takes escalations, e.g. 'front-desk'")
        return v.strip()


class Messages(_Model):
    not_understood: str = "Sorry, I didn't catch that."
    handover: str = "Let me get someone who can help."
    goodbye: str = "Thank you for calling. Goodbye."
    error: str = "Sorry, something went wrong on our side."
    anything_else: str = "Is there anything else I can help you with?"


# ---------------------------------------------------------------- steps


class _StepBase(_Model):
    id: str

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        return _check_id(v, "id", "ask_phone")


def _attempts(v: int) -> int:
    return _check_range(v, "max_attempts", 1, 10, " (3 is a good default)")


class SayStep(_StepBase):
    kind: Literal["say"] = "say"
    text: str
    voice_text: str | None = None
    next: str | None = None


class MenuStep(_StepBase):
    """Intent router. FAQ labels are answered in place when answer_faqs is on."""

    kind: Literal["menu"] = "menu"
    prompt: str
    reprompt: str | None = None
    routes: dict[str, str] = Field(default_factory=dict)  # intent name (or "faq:<key>") -> step id
    dtmf: dict[str, str] = Field(default_factory=dict)  # key -> step id
    answer_faqs: bool = True
    after_faq: str | None = None  # None -> ask messages.anything_else and stay in this menu
    no_match: str | None = None  # None -> reprompt until policy.max_misunderstandings
    no_input: str | None = None  # after max_attempts silences; None -> say goodbye and end
    escalate_to: str | None = None  # escalate step used by policy escalations from this menu
    max_attempts: int = 3

    _routes = field_validator("routes", mode="before")(classmethod(lambda cls, v: _str_keys(v)))

    @field_validator("dtmf", mode="before")
    @classmethod
    def _dtmf(cls, v: Any) -> Any:
        v = _str_keys(v)
        if isinstance(v, dict):
            for key in v:
                if len(key) != 1 or key not in _DTMF_KEYS:
                    raise ValueError(f"dtmf: key {key!r} must be a single phone key 0-9, * or #")
        return v

    _max = field_validator("max_attempts")(classmethod(lambda cls, v: _attempts(v)))


class AskStep(_StepBase):
    """Collects one slot. error_texts maps slot error codes (see flows.slots) to approved texts."""

    kind: Literal["ask"] = "ask"
    slot: str
    slot_type: SlotType = "text"
    choices: list[str] = Field(default_factory=list)
    prompt: str
    reprompt: str | None = None
    error_texts: dict[str, str] = Field(default_factory=dict)
    max_attempts: int = 3
    required: bool = True
    min: float | None = None
    max: float | None = None
    next: str | None = None
    on_fail: str | None = None
    escalate_to: str | None = None

    @field_validator("slot")
    @classmethod
    def _slot(cls, v: str) -> str:
        if not _SLOT_RE.match(v or ""):
            raise ValueError(f"slot: {v!r} is not a valid slot name; use letters, digits and '_' (e.g. 'phone')")
        return v

    @field_validator("slot_type", mode="before")
    @classmethod
    def _slot_type(cls, v: Any) -> Any:
        if isinstance(v, str) and v not in SLOT_TYPES:
            hint = difflib.get_close_matches(v, SLOT_TYPES, n=1)
            raise ValueError(
                f"slot_type: {v!r} is not a slot type; use one of {', '.join(SLOT_TYPES)}"
                + (f" (did you mean {hint[0]!r}?)" if hint else "")
            )
        return v

    _choices = field_validator("choices", mode="before")(classmethod(lambda cls, v: _str_list(v)))
    _max = field_validator("max_attempts")(classmethod(lambda cls, v: _attempts(v)))

    @model_validator(mode="after")
    def _bounds(self) -> AskStep:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min: {self.min:g} is greater than max {self.max:g}; swap them")
        return self


class FaqStep(_StepBase):
    kind: Literal["faq"] = "faq"
    faq: str
    next: str | None = None


class CaptureLeadStep(_StepBase):
    kind: Literal["capture_lead"] = "capture_lead"
    fields: list[str]
    text: str
    next: str | None = None

    _fields = field_validator("fields", mode="before")(classmethod(lambda cls, v: _str_list(v)))


class RequestAppointmentStep(_StepBase):
    kind: Literal["request_appointment"] = "request_appointment"
    slot: str
    service: str
    text: str
    next: str | None = None


class HoursBranchStep(_StepBase):
    kind: Literal["hours_branch"] = "hours_branch"
    open: str
    closed: str
    holiday: str | None = None  # None -> closed


RuleValue = str | int | float | bool | list[str | int | float | bool] | None


class ConditionRule(_Model):
    slot: str
    op: RuleOp = "eq"
    value: RuleValue = None
    next: str


class ConditionStep(_StepBase):
    kind: Literal["condition"] = "condition"
    rules: list[ConditionRule] = Field(default_factory=list)
    else_: str | None = Field(default=None, alias="else")


class EscalateStep(_StepBase):
    kind: Literal["escalate"] = "escalate"
    queue: str | None = None  # None -> policy.default_queue
    priority: int | None = None  # None -> policy.default_priority
    skills: list[str] = Field(default_factory=list)
    text: str | None = None  # handover line; None -> messages.handover
    reason: str | None = None  # reason code when the flow routes here (e.g. "dental_emergency")

    @field_validator("priority")
    @classmethod
    def _prio(cls, v: int | None) -> int | None:
        return _check_range(v, "priority", 0, 9, " (0 lowest, 9 highest)")

    _skills = field_validator("skills", mode="before")(classmethod(lambda cls, v: _str_list(v)))


class VoicemailStep(_StepBase):
    kind: Literal["voicemail"] = "voicemail"
    prompt: str
    next: str | None = None


class OfferCallbackStep(_StepBase):
    """Promise a call back. Without ``time_slot`` (or when the caller gave no time) the callback is due as
    soon as the business opens; with it, at the time the caller chose (moved to the next opening when
    closed then). The number is ``phone_slot``'s value, else the caller's own number."""

    kind: Literal["offer_callback"] = "offer_callback"
    prompt: str
    next: str | None = None
    time_slot: str | None = None  # a datetime slot asked before this step
    phone_slot: str | None = None  # a phone slot asked before this step
    name_slot: str | None = None
    queue: str | None = None  # None -> policy.default_queue
    priority: int | None = None  # None -> policy.default_priority

    @field_validator("priority")
    @classmethod
    def _prio(cls, v: int | None) -> int | None:
        return _check_range(v, "priority", 0, 9, " (0 lowest, 9 highest)")


class EndStep(_StepBase):
    kind: Literal["end"] = "end"
    text: str | None = None  # None -> messages.goodbye


Step = Annotated[
    SayStep
    | MenuStep
    | AskStep
    | FaqStep
    | CaptureLeadStep
    | RequestAppointmentStep
    | HoursBranchStep
    | ConditionStep
    | EscalateStep
    | VoicemailStep
    | OfferCallbackStep
    | EndStep,
    Field(discriminator="kind"),
]
STEP_KINDS: tuple[str, ...] = (
    "say",
    "menu",
    "ask",
    "faq",
    "capture_lead",
    "request_appointment",
    "hours_branch",
    "condition",
    "escalate",
    "voicemail",
    "offer_callback",
    "end",
)


class FlowDefinition(_Model):
    name: str
    description: str = ""
    language: str = "en-US"
    voice_style: int | None = None
    start: str
    messages: Messages = Field(default_factory=Messages)
    policy: EscalationPolicy = Field(default_factory=EscalationPolicy)
    hours: BusinessHours = Field(default_factory=BusinessHours)
    intents: list[Intent] = Field(default_factory=list)
    faqs: list[Faq] = Field(default_factory=list)
    steps: list[Step]

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("name: give the flow a name, e.g. 'Main line'")
        return v.strip()

    @field_validator("language")
    @classmethod
    def _lang(cls, v: str) -> str:
        if not _LANG_RE.match(v):
            raise ValueError(f"language: {v!r} is not a language tag; use a BCP-47 tag like 'en-US' or 'fr-CA'")
        return v

    @property
    def region(self) -> str:
        """Two-letter region of the language tag (used to read local phone numbers); US by default."""
        for part in self.language.split("-")[1:]:
            if len(part) == 2 and part.isalpha():
                return part.upper()
        return "US"

    def step_index(self) -> dict[str, Any]:
        """Steps by id (the first one wins when ids are duplicated; validation reports that)."""
        index: dict[str, Any] = {}
        for s in self.steps:
            index.setdefault(s.id, s)
        return index


# ---------------------------------------------------------------- graph helpers


def step_edges(step: Any) -> list[tuple[str, str]]:
    """(field, target step id) for every reference a step makes to another step."""
    edges: list[tuple[str, str]] = []

    def add(field: str, target: str | None) -> None:
        if target:
            edges.append((field, target))

    if isinstance(step, MenuStep):
        for intent, target in step.routes.items():
            add(f"routes.{intent}", target)
        for key, target in step.dtmf.items():
            add(f"dtmf.{key}", target)
        add("after_faq", step.after_faq)
        add("no_match", step.no_match)
        add("no_input", step.no_input)
        add("escalate_to", step.escalate_to)
    elif isinstance(step, AskStep):
        add("next", step.next)
        add("on_fail", step.on_fail)
        add("escalate_to", step.escalate_to)
    elif isinstance(step, HoursBranchStep):
        add("open", step.open)
        add("closed", step.closed)
        add("holiday", step.holiday)
    elif isinstance(step, ConditionStep):
        for i, rule in enumerate(step.rules):
            add(f"rules[{i}].next", rule.next)
        add("else", step.else_)
    elif hasattr(step, "next"):
        add("next", step.next)
    return edges


def is_terminal(step: Any) -> bool:
    """A step where a conversation can stop."""
    if isinstance(step, EscalateStep | EndStep):
        return True
    return isinstance(step, VoicemailStep | OfferCallbackStep) and step.next is None


# ---------------------------------------------------------------- validation


class Problem(_Model):
    """One publish-time finding. severity "error" blocks publishing; "warning" is advice."""

    code: str
    step_id: str | None = None
    field: str | None = None
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        where = f"[{self.step_id}{'.' + self.field if self.field else ''}] " if self.step_id else ""
        return f"{self.severity}: {where}{self.message} ({self.code})"


def _did_you_mean(word: str, options: Iterable[str]) -> str:
    hit = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" Did you mean '{hit[0]}'?" if hit else ""


def _sccs(nodes: list[str], graph: dict[str, list[str]]) -> list[list[str]]:
    """Strongly connected components (iterative Tarjan), deterministic order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            succ = graph.get(node, [])
            if i < len(succ):
                work.append((node, i + 1))
                nxt = succ[i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                out.append(comp)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return out


def validate_definition(defn: FlowDefinition, known_queues: set[str] | None = None) -> list[Problem]:
    """Publish-time checks. Returns problems in a stable order; an empty list means publishable."""
    problems: list[Problem] = []

    def add(code: str, message: str, step_id: str | None = None, field: str | None = None, severity: str = "error"):
        problems.append(Problem(code=code, step_id=step_id, field=field, message=message, severity=severity))

    def label(step: Any) -> str:
        return f"Step '{step.id}' ({step.kind})"

    # ids
    index: dict[str, Any] = {}
    for s in defn.steps:
        if s.id in index:
            add(
                "duplicate_step_id",
                f"Step id '{s.id}' is used by more than one step ({index[s.id].kind} and {s.kind}). "
                "Step ids must be unique: rename one of them.",
                s.id,
                "id",
            )
        else:
            index[s.id] = s
    intents: dict[str, Intent] = {}
    for it in defn.intents:
        if it.name in intents:
            add("duplicate_intent", f"Intent '{it.name}' is defined twice. Merge the examples into one intent.")
        intents.setdefault(it.name, it)
    faqs: dict[str, Faq] = {}
    for f in defn.faqs:
        if f.key in faqs:
            add("duplicate_faq", f"FAQ '{f.key}' is defined twice. Give each FAQ a unique key.")
        faqs.setdefault(f.key, f)

    if defn.start not in index:
        add(
            "start_missing",
            f"The flow starts at step '{defn.start}', which does not exist. Set start to the id of the first "
            f"step.{_did_you_mean(defn.start, index)}",
            None,
            "start",
        )

    # references
    for s in defn.steps:
        for field, target in step_edges(s):
            if target not in index:
                add(
                    "unknown_step",
                    f"{label(s)}: {field} points to step '{target}', which does not exist. Create a step with that "
                    f"id or point {field} to an existing step.{_did_you_mean(target, index)}",
                    s.id,
                    field,
                )
        esc = getattr(s, "escalate_to", None)
        if esc and esc in index and not isinstance(index[esc], EscalateStep):
            add(
                "escalate_to_not_escalate",
                f"{label(s)}: escalate_to must name an escalate step, but '{esc}' is a {index[esc].kind} step. "
                "Point it to an escalate step or remove it.",
                s.id,
                "escalate_to",
            )
    for i, kw in enumerate(defn.policy.urgent_keywords):
        if kw.step is None:
            continue
        if kw.step not in index:
            add(
                "unknown_step",
                f"Urgent keyword '{kw.phrase}' sends callers to step '{kw.step}', which does not exist. Create "
                f"that escalate step or fix the id.{_did_you_mean(kw.step, index)}",
                None,
                f"policy.urgent_keywords[{i}].step",
            )
        elif not isinstance(index[kw.step], EscalateStep):
            add(
                "escalate_to_not_escalate",
                f"Urgent keyword '{kw.phrase}' must point to an escalate step, but '{kw.step}' is a "
                f"{index[kw.step].kind} step.",
                None,
                f"policy.urgent_keywords[{i}].step",
            )

    # dead ends and step-specific checks
    for s in defn.steps:
        if isinstance(s, SayStep | FaqStep | CaptureLeadStep | RequestAppointmentStep) and not s.next:
            add(
                "dead_end",
                f"{label(s)} has no next step, so the conversation would stop here without an ending. Set next "
                "(for example to an end step).",
                s.id,
                "next",
            )
        if isinstance(s, AskStep):
            if not s.next:
                msg = f"{label(s)} has no next step for after '{s.slot}' is collected. Set next."
                add("dead_end", msg, s.id, "next")
            if not s.on_fail:
                add(
                    "missing_on_fail",
                    f"{label(s)} has no on_fail step for when '{s.slot}' cannot be understood after "
                    f"{s.max_attempts} attempts. Set on_fail (usually an escalate step).",
                    s.id,
                    "on_fail",
                )
            if s.slot_type == "choice" and len(s.choices) < 2:
                add(
                    "missing_choices",
                    f"{label(s)} asks for a choice but lists {len(s.choices)} choice(s). Add at least two choices.",
                    s.id,
                    "choices",
                )
            if s.slot_type != "choice" and s.choices:
                add(
                    "unused_choices",
                    f"{label(s)} lists choices but its slot_type is {s.slot_type}; set slot_type: choice or remove "
                    "the choices.",
                    s.id,
                    "choices",
                    "warning",
                )
        if isinstance(s, ConditionStep) and not s.else_:
            add(
                "dead_end",
                f"{label(s)} has no else step for when no rule matches. Set else.",
                s.id,
                "else",
            )
        if isinstance(s, MenuStep):
            can_answer = s.answer_faqs and bool(defn.faqs)
            if not s.routes and not s.dtmf and not s.no_match and not can_answer:
                add(
                    "dead_end",
                    f"{label(s)} has no routes, no dtmf keys and answers no FAQs, so callers cannot go anywhere. "
                    "Add routes from intents to steps.",
                    s.id,
                    "routes",
                )
            for intent in s.routes:
                if intent.startswith("faq:"):
                    if intent[4:] not in faqs:
                        add(
                            "unknown_faq",
                            f"{label(s)}: routes uses FAQ '{intent[4:]}', which is not defined. Add it under faqs "
                            f"or remove the route.{_did_you_mean(intent[4:], faqs)}",
                            s.id,
                            f"routes.{intent}",
                        )
                elif intent not in intents:
                    add(
                        "unknown_intent",
                        f"{label(s)}: routes uses intent '{intent}', which is not defined. Add the intent with "
                        f"example phrasings under intents, or fix the name.{_did_you_mean(intent, intents)}",
                        s.id,
                        f"routes.{intent}",
                    )
            if defn.policy.human_dtmf and defn.policy.human_dtmf in s.dtmf:
                add(
                    "dtmf_conflict",
                    f"{label(s)}: key {defn.policy.human_dtmf} is mapped here but also means 'talk to a person' "
                    "in the escalation policy, which wins. Use another key.",
                    s.id,
                    f"dtmf.{defn.policy.human_dtmf}",
                    "warning",
                )
            if s.after_faq and not s.answer_faqs:
                add(
                    "after_faq_unused",
                    f"{label(s)} sets after_faq but answer_faqs is off; turn answer_faqs on or remove after_faq.",
                    s.id,
                    "after_faq",
                    "warning",
                )
        if isinstance(s, FaqStep) and s.faq not in faqs:
            add(
                "unknown_faq",
                f"{label(s)} says FAQ '{s.faq}', which is not defined. Add it under faqs or fix the key."
                f"{_did_you_mean(s.faq, faqs)}",
                s.id,
                "faq",
            )
        if isinstance(s, ConditionStep):
            for i, rule in enumerate(s.rules):
                bad = None
                numeric = isinstance(rule.value, int | float) and not isinstance(rule.value, bool)
                if rule.op in ("gt", "lt") and not numeric:
                    bad = f"op {rule.op} compares numbers, but value is {rule.value!r}; give a number"
                elif rule.op == "in" and not isinstance(rule.value, list):
                    bad = f"op in needs a list value, e.g. [a, b], but value is {rule.value!r}"
                elif rule.op in ("eq", "ne") and rule.value is None:
                    bad = f"op {rule.op} needs a value to compare with (or use present/absent)"
                if bad:
                    add("bad_rule", f"{label(s)}: rules[{i}]: {bad}.", s.id, f"rules[{i}]")
        if isinstance(s, HoursBranchStep) and not defn.hours.weekly:
            add(
                "no_business_hours",
                f"{label(s)} branches on business hours, but hours.weekly is empty, so the office always counts "
                "as closed. Add the weekly opening hours.",
                s.id,
                None,
                "warning",
            )

    # reachability
    graph = {sid: [t for _, t in step_edges(s) if t in index] for sid, s in index.items()}
    roots = [defn.start] if defn.start in index else []
    roots += [kw.step for kw in defn.policy.urgent_keywords if kw.step in index]
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        sid = todo.pop()
        if sid in seen:
            continue
        seen.add(sid)
        todo.extend(graph[sid])
    if roots:
        for s in defn.steps:
            if s.id in index and index[s.id] is s and s.id not in seen:
                add(
                    "unreachable_step",
                    f"{label(s)} cannot be reached from the start step '{defn.start}'. Route to it from another "
                    "step or delete it.",
                    s.id,
                    None,
                    "warning",
                )

    # loops without exit
    order = [s.id for s in defn.steps if index.get(s.id) is s]
    for comp in _sccs(order, graph):
        members = set(comp)
        if len(comp) == 1 and comp[0] not in graph[comp[0]]:
            continue
        exits = any(is_terminal(index[m]) or any(t not in members for t in graph[m]) for m in comp)
        if exits:
            continue
        ids = ", ".join(sorted(comp, key=order.index))
        interactive = any(isinstance(index[m], MenuStep | AskStep) for m in comp)
        if interactive:
            add(
                "loop_without_exit",
                f"Steps {ids} form a loop that callers can only leave by hanging up or being escalated. Add a way "
                "out, e.g. a 'goodbye' route to an end step.",
                comp[0],
                None,
                "warning",
            )
        else:
            add(
                "loop_without_exit",
                f"Steps {ids} form a loop that repeats forever without asking the caller anything. Point one of "
                "their next fields outside the loop (e.g. to an end step).",
                comp[0],
                None,
            )

    # slots: asked on some path before use
    slot_types: dict[str, set[str]] = {}
    for s in defn.steps:
        if isinstance(s, AskStep):
            slot_types.setdefault(s.slot, set()).add(s.slot_type)
    for slot, types in slot_types.items():
        if len(types) > 1:
            add(
                "slot_type_conflict",
                f"Slot '{slot}' is asked as {', '.join(sorted(types))} in different steps; use one slot_type per slot.",
                None,
                None,
                "warning",
            )
    asked_in: dict[str, frozenset[str]] = {}
    todo2: list[tuple[str, frozenset[str]]] = [(r, frozenset()) for r in roots]
    while todo2:
        sid, incoming = todo2.pop()
        have = asked_in.get(sid)
        merged = incoming if have is None else have | incoming
        if have is not None and merged == have:
            continue
        asked_in[sid] = merged
        s = index[sid]
        for field, target in step_edges(s):
            if target in index:
                out = merged | {s.slot} if isinstance(s, AskStep) and field == "next" else merged
                todo2.append((target, out))

    def need_slot(s: Any, slot: str, field: str) -> None:
        before = asked_in.get(s.id)
        if before is not None and slot in before:
            return
        if before is None and slot in slot_types:
            return  # unreachable step: reported above
        add(
            "slot_not_asked",
            f"{label(s)}: {field} uses slot '{slot}', but no ask step collects '{slot}' on any path before this "
            f"step. Add an ask step with slot: {slot} before it, or fix the name.{_did_you_mean(slot, slot_types)}",
            s.id,
            field,
        )

    for s in defn.steps:
        if isinstance(s, CaptureLeadStep):
            if not s.fields:
                add("empty_lead", f"{label(s)} captures no fields. List the slots to save.", s.id, "fields")
            for f in s.fields:
                need_slot(s, f, "fields")
        elif isinstance(s, RequestAppointmentStep):
            need_slot(s, s.slot, "slot")
            types = slot_types.get(s.slot, set())
            if types and not types <= {"datetime", "date"}:
                add(
                    "slot_type_mismatch",
                    f"{label(s)}: slot '{s.slot}' is asked as {', '.join(sorted(types))}, but an appointment "
                    "needs a datetime slot. Set slot_type: datetime on the ask step.",
                    s.id,
                    "slot",
                )
        elif isinstance(s, ConditionStep):
            for i, rule in enumerate(s.rules):
                need_slot(s, rule.slot, f"rules[{i}].slot")
        elif isinstance(s, OfferCallbackStep):
            for field, wanted in (("time_slot", {"datetime"}), ("phone_slot", {"phone"}), ("name_slot", None)):
                slot = getattr(s, field)
                if not slot:
                    continue
                need_slot(s, slot, field)
                types = slot_types.get(slot, set())
                if wanted and types and not types <= wanted:
                    add(
                        "slot_type_mismatch",
                        f"{label(s)}: {field} '{slot}' is asked as {', '.join(sorted(types))}; it needs a "
                        f"{'/'.join(sorted(wanted))} slot. Set slot_type: {sorted(wanted)[0]} on the ask step.",
                        s.id,
                        field,
                    )

    # queues
    if known_queues is not None:
        if defn.policy.default_queue not in known_queues:
            add(
                "unknown_queue",
                f"The default queue '{defn.policy.default_queue}' (policy.default_queue) does not exist. Create "
                f"the queue or pick one of: {', '.join(sorted(known_queues)) or '(none yet)'}."
                f"{_did_you_mean(defn.policy.default_queue, known_queues)}",
                None,
                "policy.default_queue",
            )
        for s in defn.steps:
            if isinstance(s, EscalateStep | OfferCallbackStep) and s.queue and s.queue not in known_queues:
                add(
                    "unknown_queue",
                    f"{label(s)} transfers to queue '{s.queue}', which does not exist. Create the queue or pick one "
                    f"of: {', '.join(sorted(known_queues)) or '(none yet)'}.{_did_you_mean(s.queue, known_queues)}",
                    s.id,
                    "queue",
                )

    # texts
    def blank(v: str | None) -> bool:
        return v is not None and not v.strip()

    text_fields = ("text", "voice_text", "prompt", "reprompt")
    for s in defn.steps:
        for field in text_fields:
            if blank(getattr(s, field, None)):
                add(
                    "empty_text",
                    f"{label(s)}: {field} is empty, so the caller would hear nothing. Write the approved text or "
                    "remove the field.",
                    s.id,
                    field,
                )
        if isinstance(s, AskStep):
            for code, txt in s.error_texts.items():
                if blank(txt):
                    add("empty_text", f"{label(s)}: error_texts.{code} is empty.", s.id, f"error_texts.{code}")
    for name, value in defn.messages.model_dump().items():
        if blank(value):
            add("empty_text", f"Message '{name}' is empty. Write the approved text.", None, f"messages.{name}")

    # intents and FAQs
    for it in intents.values():
        examples = [e for e in it.examples if e.strip()]
        if len(examples) < 2:
            add(
                "too_few_examples",
                f"Intent '{it.name}' has {len(examples)} example phrasing(s). Add at least 2 (8-15 is better) so "
                "callers' different wordings are recognised.",
                None,
                f"intents.{it.name}.examples",
            )
    seen_examples: dict[str, str] = {}
    for it in intents.values():
        for e in it.examples:
            norm = " ".join(re.sub(r"[^\w\s']", " ", e.lower()).split())
            other = seen_examples.get(norm)
            if other and other != it.name:
                add(
                    "ambiguous_example",
                    f"Example '{e}' appears in intents '{other}' and '{it.name}'; keep it in one of them.",
                    None,
                    f"intents.{it.name}.examples",
                    "warning",
                )
            seen_examples.setdefault(norm, it.name)
    for f in faqs.values():
        if not [q for q in f.questions if q.strip()]:
            add(
                "faq_without_question",
                f"FAQ '{f.key}' has no question. Add the ways callers ask it under questions.",
                None,
                f"faqs.{f.key}.questions",
            )
        if not f.answer.strip():
            add(
                "empty_text",
                f"FAQ '{f.key}' has an empty answer. Write the approved answer.",
                None,
                f"faqs.{f.key}.answer",
            )
        if blank(f.voice_answer):
            add(
                "empty_text",
                f"FAQ '{f.key}' has an empty voice_answer; write it or remove it.",
                None,
                f"faqs.{f.key}.voice_answer",
            )
    for kw in defn.policy.urgent_keywords:
        if not kw.reason_label.strip():
            add("empty_text", f"Urgent keyword '{kw.phrase}' needs a reason_label.", None, "policy.urgent_keywords")
    return problems


def errors_only(problems: Iterable[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]


# ---------------------------------------------------------------- diff


def _short(v: Any, limit: int = 70) -> str:
    if isinstance(v, str):
        s = v if len(v) <= limit else v[: limit - 3] + "..."
        return repr(s)
    if isinstance(v, list | tuple) and v and all(isinstance(x, list | tuple) and len(x) == 2 for x in v):
        return ", ".join(f"{a}-{b}" for a, b in v) or "closed"
    s = repr(v)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _fmt_day(intervals: list[Any]) -> str:
    return ", ".join(f"{a}-{b}" for a, b in intervals) or "closed"


def _change_lines(prefix: str, field: str, old: Any, new: Any) -> list[str]:
    if old == new:
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in old.keys() - new.keys():
            out.append(f"{prefix}: {field}.{k} removed (was {_short(old[k])})")
        for k in new.keys() - old.keys():
            out.append(f"{prefix}: {field}.{k} added: {_short(new[k])}")
        for k in old.keys() & new.keys():
            out += _change_lines(prefix, f"{field}.{k}", old[k], new[k])
        return sorted(out)
    if isinstance(old, list) and isinstance(new, list) and all(isinstance(x, str) for x in old + new):
        out = [f"{prefix}: {field} removed {x!r}" for x in old if x not in new]
        out += [f"{prefix}: {field} added {x!r}" for x in new if x not in old]
        return out or [f"{prefix}: {field} reordered"]
    if isinstance(old, list) and isinstance(new, list) and all(isinstance(x, dict) for x in old + new):
        out = [f"{prefix}: {field} removed {_short(x)}" for x in old if x not in new]
        out += [f"{prefix}: {field} added {_short(x)}" for x in new if x not in old]
        return out or [f"{prefix}: {field} reordered"]
    return [f"{prefix}: {field} changed from {_short(old)} to {_short(new)}"]


def diff_definitions(a: FlowDefinition, b: FlowDefinition) -> list[str]:
    """Human-readable list of changes from version a to version b."""
    out: list[str] = []
    for field in ("name", "description", "language", "voice_style", "start"):
        out += _change_lines("Flow", field, getattr(a, field), getattr(b, field))

    sa = {s.id: s for s in a.steps}
    sb = {s.id: s for s in b.steps}
    for sid in sa:
        if sid not in sb:
            out.append(f"Step '{sid}' ({sa[sid].kind}) removed")
    for sid in sb:
        if sid not in sa:
            out.append(f"Step '{sid}' ({sb[sid].kind}) added")
    for sid in sa:
        if sid not in sb:
            continue
        da = sa[sid].model_dump(mode="json", by_alias=True)
        db = sb[sid].model_dump(mode="json", by_alias=True)
        if da["kind"] != db["kind"]:
            out.append(f"Step '{sid}': kind changed from {da['kind']} to {db['kind']}")
            continue
        for field in list(da) + [f for f in db if f not in da]:
            out += _change_lines(f"Step '{sid}'", field, da.get(field), db.get(field))

    ia = {i.name: i for i in a.intents}
    ib = {i.name: i for i in b.intents}
    out += [f"Intent '{n}' removed" for n in ia if n not in ib]
    out += [f"Intent '{n}' added ({len(ib[n].examples)} examples)" for n in ib if n not in ia]
    for n in ia:
        if n in ib:
            out += [f"Intent '{n}': example removed {e!r}" for e in ia[n].examples if e not in ib[n].examples]
            out += [f"Intent '{n}': example added {e!r}" for e in ib[n].examples if e not in ia[n].examples]
            out += _change_lines(f"Intent '{n}'", "description", ia[n].description, ib[n].description)

    fa = {f.key: f for f in a.faqs}
    fb = {f.key: f for f in b.faqs}
    out += [f"FAQ '{k}' removed" for k in fa if k not in fb]
    out += [f"FAQ '{k}' added" for k in fb if k not in fa]
    for k in fa:
        if k in fb:
            out += [f"FAQ '{k}': question removed {q!r}" for q in fa[k].questions if q not in fb[k].questions]
            out += [f"FAQ '{k}': question added {q!r}" for q in fb[k].questions if q not in fa[k].questions]
            out += _change_lines(f"FAQ '{k}'", "answer", fa[k].answer, fb[k].answer)
            out += _change_lines(f"FAQ '{k}'", "voice_answer", fa[k].voice_answer, fb[k].voice_answer)

    for section, title in (("policy", "Policy"), ("messages", "Messages")):
        da = getattr(a, section).model_dump(mode="json")
        db = getattr(b, section).model_dump(mode="json")
        for field in da:
            out += _change_lines(title, field, da[field], db[field])

    ha, hb = a.hours.model_dump(mode="json"), b.hours.model_dump(mode="json")
    out += _change_lines("Hours", "timezone", ha["timezone"], hb["timezone"])
    for day in WEEKDAYS:
        wa, wb = ha["weekly"].get(day, []), hb["weekly"].get(day, [])
        if wa != wb:
            out.append(f"Hours: {day} changed from {_fmt_day(wa)} to {_fmt_day(wb)}")
    for field, what in (("holidays", "holiday"), ("closures", "closure")):
        out += [f"Hours: {what} removed {_short(x, 100)}" for x in ha[field] if x not in hb[field]]
        out += [f"Hours: {what} added {_short(x, 100)}" for x in hb[field] if x not in ha[field]]
    return out


# ---------------------------------------------------------------- YAML


class _Dumper(yaml.SafeDumper):
    pass


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


class _FlowList(list):
    """A list written inline (["08:00", "12:00"])."""


_Dumper.add_representer(str, _str_presenter)
_Dumper.add_representer(
    _FlowList, lambda d, data: d.represent_sequence("tag:yaml.org,2002:seq", list(data), flow_style=True)
)


def to_yaml(defn: FlowDefinition) -> str:
    """YAML export (import with from_yaml). Unset optional fields are omitted."""
    data = defn.model_dump(mode="json", by_alias=True, exclude_none=True)
    weekly = data.get("hours", {}).get("weekly", {})
    for day, intervals in weekly.items():
        weekly[day] = _FlowList(_FlowList(iv) for iv in intervals)
    for s in data.get("steps", []):
        for key in ("fields", "skills", "choices"):
            if isinstance(s.get(key), list):
                s[key] = _FlowList(s[key])
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110, default_flow_style=False)


def _yaml_line(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at a pydantic error location (closest existing parent)."""
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if str(k.value) == str(part):
                    node = v
                    line = k.start_mark.line + 1
                    break
            else:
                if isinstance(part, str):
                    continue  # e.g. the discriminator tag in a union location
                break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
        elif isinstance(part, str):
            continue
        else:
            break
    return line


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in STEP_KINDS and out.endswith("]"):
            continue  # union tag
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def validation_messages(exc: ValidationError, root: yaml.Node | None = None) -> list[str]:
    msgs = []
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        msg = err.get("msg", "")
        msg = msg.removeprefix("Value error, ")
        if err.get("type") == "missing":
            msg = f"required field '{loc[-1]}' is missing; add it"
            loc = loc[:-1]
        elif err.get("type") == "extra_forbidden":
            msg = f"unknown field '{loc[-1]}'; remove it or check its spelling"
        where = _format_loc(loc)
        line = _yaml_line(root, loc) if root is not None else None
        msgs.append(f"line {line}: {where}: {msg}" if line else f"{where}: {msg}")
    return msgs


def from_yaml(text: str) -> FlowDefinition:
    """Parse a YAML flow definition. Raises DefinitionError whose messages name the line."""
    try:
        data = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        if mark is not None:
            msg = f"YAML error at line {mark.line + 1}, column {mark.column + 1}: {problem}"
        else:
            msg = f"YAML error: {problem}"
        raise DefinitionError(msg) from None
    if not isinstance(data, dict):
        raise DefinitionError("The YAML must be a mapping with name, start and steps at the top level.")
    try:
        return FlowDefinition.model_validate(data)
    except ValidationError as exc:
        msgs = validation_messages(exc, root)
        raise DefinitionError("Invalid flow definition:\n" + "\n".join(f"- {m}" for m in msgs), msgs) from None


def from_json(data: dict[str, Any] | str) -> FlowDefinition:
    """Load the JSON snapshot stored on a FlowVersion (dict or JSON text)."""
    try:
        if isinstance(data, str):
            return FlowDefinition.model_validate_json(data)
        return FlowDefinition.model_validate(data)
    except ValidationError as exc:
        msgs = validation_messages(exc)
        raise DefinitionError("Invalid flow definition:\n" + "\n".join(f"- {m}" for m in msgs), msgs) from None


def to_json(defn: FlowDefinition) -> dict[str, Any]:
    return defn.model_dump(mode="json", by_alias=True, exclude_none=True)
