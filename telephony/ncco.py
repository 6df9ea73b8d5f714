"""Strict models of the NCCO actions Switchboard emits, NCCO validation, and the engine-to-NCCO renderer.

Vonage's own JSON schema is old and the SDK's models accept wrong actions, so every NCCO we return goes
through these models (`extra="forbid"`, strict types, Vonage's documented ranges) before it leaves us.

Ordering rules enforced by `validate_ncco` (only rules stated in Vonage's NCCO reference):

- bargeIn: when a `talk` (or `stream`) has `bargeIn: true`, the next action that is not a talk/stream
  **must** be an `input` ("If you set bargeIn to true the next non-talk action in the NCCO stack must be
  an input action"; the same sentence for stream; "an input action must follow any action that has a
  bargeIn property").
- connect: `endpoint` holds exactly one endpoint ("Currently supports a maximum of one endpoint object").
- conversation: `mute` cannot be combined with `canSpeak` (SDK validator; same rule in the transfer docs).
- record: `channels` needs `split: "conversation"` ("split conversation must also be enabled").
- every `eventUrl` is an array ("the eventUrl parameter MUST be an array for all actions").

Rules deliberately NOT encoded, because the reference allows the opposite: actions may follow a
`connect` (it "ends when the endpoint is busy or unavailable" and "the next action in the NCCO stack is
processed"; sequential ringing nests connects), a `conversation` (runs on when the conversation ends for
this leg) and a synchronous `record` (voicemail then goodbye). Actions after an `input` are not forbidden
by the reference either (the eventUrl's reply replaces the NCCO), but `render_turn` never emits any.

Our own (non-Vonage) rules: an NCCO is never empty, and an `input` carrying `dtmf`/`speech` settings must
list that type. `render_turn` also guarantees no dead air: a turn ends in an input, a record, a
conversation, a connect, or a spoken goodbye after which the NCCO ends (and Vonage hangs up).
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

logger = logging.getLogger(__name__)

TALK_MAX_CHARS = 1500  # Vonage: "A string of up to 1,500 characters (excluding SSML tags)"
HINT_MAX_CHARS = 100  # our policy: Vonage documents no per-hint limit for speech.context
DEFAULT_HINTS_LIMIT = 50  # our policy: Vonage documents no count limit for speech.context


class NccoError(ValueError):
    """An NCCO that Vonage would reject (or that breaks our rules). Names the action index and field."""

    def __init__(self, message: str, *, index: int | None = None, field: str | None = None):
        super().__init__(message)
        self.index = index
        self.field = field


# ---------------------------------------------------------------- field types


def _http_url(v: str) -> str:
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in v):
        raise ValueError("must be an absolute http(s) URL")
    return v


def _ws_url(v: str) -> str:
    parts = urlsplit(v)
    if parts.scheme not in ("ws", "wss") or not parts.netloc or any(c.isspace() for c in v):
        raise ValueError("must be an absolute ws(s) URL")
    return v


def _not_blank(v: str) -> str:
    if not v.strip():
        raise ValueError("must not be blank")
    return v


HttpUrl = Annotated[str, AfterValidator(_http_url)]
WsUrl = Annotated[str, AfterValidator(_ws_url)]
OneUrl = Annotated[list[HttpUrl], Field(min_length=1, max_length=1)]
NonBlank = Annotated[str, Field(min_length=1), AfterValidator(_not_blank)]
Language = Annotated[str, Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")]
E164Digits = Annotated[str, Field(pattern=r"^[1-9]\d{6,14}$")]  # E.164 without "+", as Vonage wants it
DtmfString = Annotated[str, Field(pattern=r"^[0-9*#p]+$")]
Method = Literal["GET", "POST"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True, frozen=True)


# ---------------------------------------------------------------- actions


class Talk(_Model):
    action: Literal["talk"] = "talk"
    text: Annotated[NonBlank, Field(max_length=TALK_MAX_CHARS)]
    bargeIn: bool | None = None
    loop: Annotated[int, Field(ge=0)] | None = None
    level: Annotated[float, Field(ge=-1, le=1)] | None = None
    language: Language | None = None
    style: Annotated[int, Field(ge=0)] | None = None
    premium: bool | None = None


class Stream(_Model):
    action: Literal["stream"] = "stream"
    streamUrl: OneUrl  # "An array containing a single URL to an mp3 or wav (16-bit) audio file"
    level: Annotated[float, Field(ge=-1, le=1)] | None = None
    bargeIn: bool | None = None
    loop: Annotated[int, Field(ge=0)] | None = None


class DtmfSettings(_Model):
    timeOut: Annotated[int, Field(ge=0, le=10)] | None = None
    maxDigits: Annotated[int, Field(ge=1, le=20)] | None = None
    submitOnHash: bool | None = None


class SpeechSettings(_Model):
    uuid: Annotated[list[NonBlank], Field(min_length=1)] | None = None
    endOnSilence: Annotated[float, Field(ge=0.4, le=10)] | None = None
    language: Language | None = None
    context: list[NonBlank] | None = None  # hint words/phrases
    startTimeout: Annotated[int, Field(ge=1, le=60)] | None = None
    maxDuration: Annotated[int, Field(ge=1, le=60)] | None = None
    saveAudio: bool | None = None
    sensitivity: Annotated[int, Field(ge=0, le=100)] | None = None


class Input(_Model):
    action: Literal["input"] = "input"
    type: Annotated[list[Literal["dtmf", "speech"]], Field(min_length=1, max_length=2)]
    dtmf: DtmfSettings | None = None
    speech: SpeechSettings | None = None
    eventUrl: OneUrl | None = None
    eventMethod: Method | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Input:
        if len(set(self.type)) != len(self.type):
            raise ValueError("type: each input type may appear once")
        if self.dtmf is not None and "dtmf" not in self.type:
            raise ValueError("dtmf: settings given but 'dtmf' is not in type")
        if self.speech is not None and "speech" not in self.type:
            raise ValueError("speech: settings given but 'speech' is not in type")
        return self


class Transcription(_Model):
    language: Language | None = None
    eventUrl: OneUrl | None = None
    eventMethod: Method | None = None
    sentimentAnalysis: bool | None = None


class Record(_Model):
    action: Literal["record"] = "record"
    format: Literal["mp3", "wav", "ogg"] | None = None
    split: Literal["conversation"] | None = None
    channels: Annotated[int, Field(ge=1, le=32)] | None = None
    endOnSilence: Annotated[int, Field(ge=3, le=10)] | None = None
    endOnKey: Annotated[str, Field(pattern=r"^[0-9*#]$")] | None = None
    timeOut: Annotated[int, Field(ge=3, le=7200)] | None = None
    beepStart: bool | None = None
    eventUrl: OneUrl | None = None
    eventMethod: Method | None = None
    transcription: Transcription | None = None

    @model_validator(mode="after")
    def _channels_need_split(self) -> Record:
        if self.channels is not None and self.split != "conversation":
            raise ValueError('channels: needs split "conversation"')
        return self


class OnAnswer(_Model):
    url: HttpUrl
    ringbackTone: HttpUrl | None = None


class PhoneEndpoint(_Model):
    type: Literal["phone"] = "phone"
    number: E164Digits
    dtmfAnswer: DtmfString | None = None
    onAnswer: OnAnswer | None = None


class AppEndpoint(_Model):
    type: Literal["app"] = "app"
    user: NonBlank


class SipEndpoint(_Model):
    type: Literal["sip"] = "sip"
    uri: Annotated[str, Field(pattern=r"^sips?:\S+$")]
    headers: dict[str, str] | None = None


class WebsocketEndpoint(_Model):
    type: Literal["websocket"] = "websocket"
    uri: WsUrl
    content_type: Literal["audio/l16;rate=8000", "audio/l16;rate=16000", "audio/l16;rate=24000"] = Field(
        alias="content-type"
    )
    headers: dict[str, Any] | None = None


class VbcEndpoint(_Model):
    type: Literal["vbc"] = "vbc"
    extension: Annotated[str, Field(pattern=r"^\d+$")]


Endpoint = Annotated[
    PhoneEndpoint | AppEndpoint | SipEndpoint | WebsocketEndpoint | VbcEndpoint, Field(discriminator="type")
]


class Connect(_Model):
    action: Literal["connect"] = "connect"
    endpoint: Annotated[list[Endpoint], Field(min_length=1, max_length=1)]
    from_: E164Digits | None = Field(default=None, alias="from")  # omit when the caller is an app user
    eventType: Literal["synchronous"] | None = None
    timeout: Annotated[int, Field(ge=3, le=120)] | None = None
    limit: Annotated[int, Field(ge=1, le=7200)] | None = None
    machineDetection: Literal["continue", "hangup"] | None = None
    eventUrl: OneUrl | None = None
    eventMethod: Method | None = None
    ringbackTone: HttpUrl | None = None  # a URL string in the reference (the Python SDK types it as a list)


class Conversation(_Model):
    action: Literal["conversation"] = "conversation"
    name: NonBlank
    musicOnHoldUrl: OneUrl | None = None
    startOnEnter: bool | None = None
    endOnExit: bool | None = None
    record: bool | None = None
    canSpeak: list[str] | None = None
    canHear: list[str] | None = None
    mute: bool | None = None
    eventUrl: OneUrl | None = None
    eventMethod: Method | None = None

    @model_validator(mode="after")
    def _mute_or_can_speak(self) -> Conversation:
        if self.mute and self.canSpeak is not None:
            raise ValueError("mute: cannot be combined with canSpeak")
        return self


class Notify(_Model):
    action: Literal["notify"] = "notify"
    payload: dict[str, Any]
    eventUrl: OneUrl
    eventMethod: Method | None = None


NccoAction = Talk | Stream | Input | Record | Connect | Conversation | Notify
Action = Annotated[NccoAction, Field(discriminator="action")]
Ncco = list[Action]
_NCCO: TypeAdapter[list[NccoAction]] = TypeAdapter(Ncco)
_ACTION_TYPES = (Talk, Stream, Input, Record, Connect, Conversation, Notify)


# ---------------------------------------------------------------- validation and rendering


def _loc_text(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _describe(err: ValidationError, data: list[Any]) -> NccoError:
    parts: list[str] = []
    first_index: int | None = None
    first_field: str | None = None
    for e in err.errors():
        loc = list(e["loc"])
        index = loc.pop(0) if loc and isinstance(loc[0], int) else None
        item = data[index] if index is not None and index < len(data) else None
        tag = item.get("action") if isinstance(item, Mapping) else getattr(item, "action", None)
        if loc and loc[0] == tag:
            loc.pop(0)
        msg = e["msg"]
        if not loc and msg.startswith("Value error, "):  # model validators name the field first: "field: why"
            msg = msg.removeprefix("Value error, ")
            head, sep, rest = msg.partition(": ")
            if sep and re.fullmatch(r"[A-Za-z_.-]+", head):
                loc, msg = [head], rest
        field = _loc_text(loc) or "action"
        if first_index is None:
            first_index, first_field = index, field
        where = f"ncco[{index}]" + (f" ({tag})" if isinstance(tag, str) else "") if index is not None else "ncco"
        parts.append(f"{where} {field}: {msg}")
    return NccoError("Invalid NCCO: " + "; ".join(parts), index=first_index, field=first_field)


def _check_order(actions: Sequence[NccoAction]) -> None:
    barge_at: int | None = None
    for i, a in enumerate(actions):
        if isinstance(a, Talk | Stream):
            if a.bargeIn and barge_at is None:
                barge_at = i
            continue
        if isinstance(a, Input):
            barge_at = None
            continue
        if barge_at is not None:
            raise NccoError(
                f"Invalid NCCO: ncco[{barge_at}] ({actions[barge_at].action}) bargeIn: the next action that is not "
                f"a talk/stream must be an input, found {a.action} at ncco[{i}]",
                index=barge_at,
                field="bargeIn",
            )
    if barge_at is not None:
        raise NccoError(
            f"Invalid NCCO: ncco[{barge_at}] ({actions[barge_at].action}) bargeIn: no input action follows",
            index=barge_at,
            field="bargeIn",
        )


def validate_ncco(data: list[dict[str, Any]]) -> list[NccoAction]:
    """Parse an NCCO (a JSON array of action objects). Raises NccoError (a ValueError) naming index and field."""
    if not isinstance(data, list):
        raise NccoError("Invalid NCCO: an NCCO is a JSON array of actions")
    if not data:
        raise NccoError("Invalid NCCO: the NCCO is empty")
    try:
        actions = _NCCO.validate_python(data)
    except ValidationError as err:
        raise _describe(err, data) from None
    _check_order(actions)
    return actions


def dump_action(action: NccoAction) -> dict[str, Any]:
    """One action as Vonage wants it: aliases, no None values, "action" first."""
    return action.model_dump(by_alias=True, exclude_none=True, mode="json")


def render(actions: Iterable[NccoAction | Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Validate actions (models or dicts) and return the JSON-ready NCCO.

    Models were validated when they were built and cannot change (frozen), so an NCCO of models only gets
    the NCCO-level checks (not empty, action order); dicts are parsed into models first."""
    actions = list(actions)
    if actions and all(isinstance(a, _ACTION_TYPES) for a in actions):
        _check_order(actions)
        return [dump_action(a) for a in actions]
    raw = [dump_action(a) if isinstance(a, BaseModel) else dict(a) for a in actions]
    return [dump_action(a) for a in validate_ncco(raw)]


# ---------------------------------------------------------------- text helpers

_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")
_TAG = re.compile(r"<[^>]+>")


def split_text(text: str, limit: int = TALK_MAX_CHARS) -> list[str]:
    """Split text into chunks of at most `limit` chars, at sentence boundaries when possible.

    SSML (`<speak>...`) longer than the limit cannot be split safely: its tags are dropped and the plain text
    is split instead.
    """
    text = text.strip()
    if not text:
        return []
    if len(text) <= limit:
        return [text]
    if text.startswith("<speak"):
        text = " ".join(html.unescape(_TAG.sub(" ", text)).split())
        if len(text) <= limit:
            return [text]
    chunks: list[str] = []
    current = ""
    for sentence in _SENTENCE_END.split(text):
        for piece in _split_long(sentence, limit):
            if not current:
                current = piece
            elif len(current) + 1 + len(piece) <= limit:
                current = f"{current} {piece}"
            else:
                chunks.append(current)
                current = piece
    if current:
        chunks.append(current)
    return chunks


def _split_long(sentence: str, limit: int) -> list[str]:
    if len(sentence) <= limit:
        return [sentence]
    out: list[str] = []
    current = ""
    for word in re.split(r"(?<=,)\s+|\s+", sentence):
        while len(word) > limit:  # no whitespace at all: cut hard
            if current:
                out.append(current)
                current = ""
            out.append(word[:limit])
            word = word[limit:]
        if not word:
            continue
        if not current:
            current = word
        elif len(current) + 1 + len(word) <= limit:
            current = f"{current} {word}"
        else:
            out.append(current)
            current = word
    if current:
        out.append(current)
    return out


def trim_hints(hints: Iterable[str], limit: int = DEFAULT_HINTS_LIMIT, max_chars: int = HINT_MAX_CHARS) -> list[str]:
    """Speech hints: stripped, case-insensitively de-duplicated (first wins), at most `max_chars` each (longer
    ones are dropped, a cut phrase is no hint), at most `limit` of them."""
    seen: set[str] = set()
    out: list[str] = []
    for h in hints:
        h = " ".join(str(h).split())
        key = h.casefold()
        if not h or len(h) > max_chars or key in seen:
            continue
        seen.add(key)
        out.append(h)
        if len(out) >= limit:
            break
    return out


def digits_only(number: str | None) -> str | None:
    """'+1 (555) 010-0000' -> '15550100000'; None when nothing like an E.164 number is left."""
    if not number:
        return None
    d = re.sub(r"[\s().\-]", "", str(number)).removeprefix("+")
    if d.startswith("00"):
        d = d[2:]
    return d if re.fullmatch(r"[1-9]\d{6,14}", d) else None


# ---------------------------------------------------------------- engine actions -> NCCO


@dataclass(frozen=True, kw_only=True)
class VoiceContext:
    """What the renderer needs to know about the call besides the engine's actions."""

    language: str = "en-US"
    voice_style: int | None = None
    input_url: str | None = None  # absolute; carries the conversation id
    record_url: str | None = None
    transcription: bool = False
    transcription_url: str | None = None
    hold_music_url: str | None = None
    conversation_name: str | None = None  # e.g. "sb-<tenant>-<conversation id>"
    fallback_number: str | None = None  # E.164 (with or without "+")
    from_number: str | None = None  # our Vonage number, caller ID for connect
    speech_hints_limit: int = DEFAULT_HINTS_LIMIT
    end_on_silence: float = 1.0
    start_timeout: int = 8
    dtmf_timeout: int = 5
    voicemail_timeout: int = 300
    handover_text: str = "Please hold while I connect you to a member of our team."
    goodbye_text: str = "Thank you for calling. Goodbye."
    voicemail_text: str = "Please leave a message after the beep, and press the hash key when you are done."


_SIDE_EFFECTS = frozenset({"capture_lead", "request_appointment"})
_INPUT_TYPES: dict[str, list[Literal["dtmf", "speech"]]] = {
    "speech+dtmf": ["speech", "dtmf"],
    "speech": ["speech"],
    "dtmf": ["dtmf"],
    "text": ["speech"],  # a chat-only kind: on the phone the caller speaks
}


def _talks(text: str | None, ctx: VoiceContext, *, barge_in: bool = False) -> list[Talk]:
    return [
        Talk(text=chunk, bargeIn=True if barge_in else None, language=ctx.language, style=ctx.voice_style)
        for chunk in split_text(text or "")
    ]


def _say_text(action: Any) -> str:
    return (getattr(action, "voice_text", None) or getattr(action, "text", "") or "").strip()


def _input_for(ask: Any, ctx: VoiceContext) -> Input:
    if not ctx.input_url:
        raise ValueError("VoiceContext.input_url is required to render an Ask")
    types = list(_INPUT_TYPES.get(ask.input_kind, ["speech", "dtmf"]))
    dtmf = speech = None
    if "dtmf" in types:
        max_digits = ask.max_digits or max((len(k) for k in ask.expect_dtmf), default=1)
        max_digits = min(max(int(max_digits), 1), 20)
        dtmf = DtmfSettings(
            maxDigits=max_digits, timeOut=int(ctx.dtmf_timeout), submitOnHash=True if max_digits > 1 else None
        )
    if "speech" in types:
        hints = trim_hints(ask.hints, ctx.speech_hints_limit)
        speech = SpeechSettings(
            language=ctx.language,
            endOnSilence=float(ctx.end_on_silence),
            startTimeout=int(ctx.start_timeout),
            context=hints or None,
        )
    return Input(type=types, dtmf=dtmf, speech=speech, eventUrl=[ctx.input_url], eventMethod="POST")


def _voicemail_record(ctx: VoiceContext, record_url: str) -> Record:
    transcription = None
    if ctx.transcription:
        transcription = Transcription(
            language=ctx.language, eventUrl=[ctx.transcription_url] if ctx.transcription_url else None
        )
    return Record(
        format="mp3",
        endOnSilence=3,
        endOnKey="#",
        beepStart=True,
        timeOut=int(ctx.voicemail_timeout),
        eventUrl=[record_url],
        eventMethod="POST",
        transcription=transcription,
    )


def _fallback_tail(
    ctx: VoiceContext, *, fallback_number: str | None, record_url: str | None, prompt_voicemail: bool = True
) -> list[NccoAction]:
    """Connect to the tenant's own number, else take a voicemail, else say goodbye (the NCCO then ends)."""
    number = digits_only(fallback_number)
    if number:
        return [Connect(endpoint=[PhoneEndpoint(number=number)], from_=digits_only(ctx.from_number))]
    if record_url:
        lead = _talks(ctx.voicemail_text, ctx) if prompt_voicemail else []
        return [*lead, _voicemail_record(ctx, record_url), *_talks(ctx.goodbye_text, ctx)]
    return list(_talks(ctx.goodbye_text, ctx))


def render_turn(actions: Sequence[Any], *, ctx: VoiceContext) -> list[dict[str, Any]]:
    """Turn one engine step's actions into one NCCO (validated, JSON-ready).

    Say -> talk (voice_text preferred; bargeIn when an Ask follows directly; split above 1500 chars).
    Ask -> talk(prompt, bargeIn) + input; nothing after it (the input's eventUrl reply is the next NCCO).
    TransferToQueue -> handover talk (unless the engine's preceding Say already said it) + conversation
    (startOnEnter false so the caller hears musicOnHold until the agent's leg joins; endOnExit false).
    Voicemail -> talk(prompt) + record (ends on 3 s silence, "#" or 300 s; beep; transcription if asked).
    OfferCallback -> talk(prompt). HangUp -> end of NCCO. CaptureLead / RequestAppointment -> nothing.
    A turn that renders to nothing says ctx.goodbye_text. Raises ValueError (NccoError for an invalid
    result) on bugs or a bad context: callers answer with apology_ncco instead.
    """
    try:
        return render(_turn_actions(actions, ctx))
    except ValidationError as err:
        raise NccoError(f"Invalid NCCO: {err}") from None


def _turn_actions(actions: Sequence[Any], ctx: VoiceContext) -> list[NccoAction]:
    voice = [a for a in actions if getattr(a, "type", None) not in _SIDE_EFFECTS]
    out: list[NccoAction] = []
    for i, a in enumerate(voice):
        kind = getattr(a, "type", None)
        following = voice[i + 1] if i + 1 < len(voice) else None
        if kind == "say":
            out += _talks(_say_text(a), ctx, barge_in=getattr(following, "type", None) == "ask")
        elif kind == "ask":
            out += _talks(a.prompt, ctx, barge_in=True)
            out.append(_input_for(a, ctx))
            if voice[i + 1 :]:
                logger.warning("render_turn: dropped %d action(s) after an Ask", len(voice) - i - 1)
            break
        elif kind == "transfer":
            line = (a.summary.text or "").strip() or ctx.handover_text
            previous = voice[i - 1] if i else None
            said = getattr(previous, "type", None) == "say" and line in (_say_text(previous), previous.text.strip())
            if not said:
                out += _talks(line, ctx)
            if ctx.conversation_name:
                if not ctx.hold_music_url:
                    logger.warning("render_turn: escalation without hold music: the caller waits in silence")
                out.append(
                    Conversation(
                        name=ctx.conversation_name,
                        musicOnHoldUrl=[ctx.hold_music_url] if ctx.hold_music_url else None,
                        startOnEnter=False,
                        endOnExit=False,
                    )
                )
            else:
                logger.warning("render_turn: escalation without a conversation name; using the fallback")
                out += _fallback_tail(ctx, fallback_number=ctx.fallback_number, record_url=ctx.record_url)
            break
        elif kind == "voicemail":
            out += _talks(a.prompt, ctx)
            if ctx.record_url:
                out.append(_voicemail_record(ctx, ctx.record_url))
            else:
                logger.warning("render_turn: voicemail without a record_url; using the fallback")
                out += _fallback_tail(ctx, fallback_number=ctx.fallback_number, record_url=None)
                break
        elif kind == "offer_callback":
            out += _talks(a.prompt, ctx)
        elif kind == "hangup":
            break
        else:
            logger.warning("render_turn: ignored unknown action %r", kind)
    if not out:
        out = list(_talks(ctx.goodbye_text, ctx))
    return out


def agent_join_ncco(conversation_name: str, *, end_on_exit: bool = True) -> list[dict[str, Any]]:
    """The agent's leg: join the caller's conversation and start it (stops the hold music). With end_on_exit
    the conversation ends when the agent hangs up, so the caller is not left in a silent room."""
    return render(
        [{"action": "conversation", "name": conversation_name, "startOnEnter": True, "endOnExit": end_on_exit}]
    )


def callback_bridge_ncco(
    *, announce: str, customer_number: str, from_number: str, customer_event_url: str, timeout: int = 45
) -> list[dict[str, Any]]:
    """The agent's leg of a callback: tell the agent who is being called, then ring the customer and bridge
    them (the customer is dialled only once the agent has answered). Raises ValueError for bad numbers."""
    return render(
        [
            {"action": "talk", "text": announce},
            {
                "action": "connect",
                "from": from_number,
                "endpoint": [{"type": "phone", "number": customer_number}],
                "timeout": timeout,
                "eventUrl": [customer_event_url],
                "eventMethod": "POST",
            },
        ]
    )


APOLOGY_TEXT = "We're sorry, something went wrong on our side."
_LAST_RESORT: list[dict[str, Any]] = [
    {"action": "talk", "text": "We're sorry, something went wrong. Please call again later. Goodbye."}
]


def apology_ncco(
    ctx: VoiceContext | None,
    *,
    message: str | None = None,
    fallback_number: str | None = None,
    record_url: str | None = None,
) -> list[dict[str, Any]]:
    """The "no dead air" NCCO for when anything fails: apology, then the tenant's own number if known (the
    argument, else ctx.fallback_number), else a voicemail (record_url, else ctx.record_url), else goodbye.
    Never raises; always returns a valid NCCO."""
    try:
        ctx = ctx or VoiceContext()
        number = fallback_number if fallback_number is not None else ctx.fallback_number
        recording = record_url if record_url is not None else ctx.record_url
        try:
            Talk(text="x", language=ctx.language)
        except ValidationError:
            ctx = VoiceContext(fallback_number=number, record_url=recording, from_number=ctx.from_number)
        out: list[NccoAction] = list(_talks(message or APOLOGY_TEXT, ctx))
        out += _fallback_tail(ctx, fallback_number=number, record_url=_valid_url(recording))
        return render(out)
    except Exception:
        logger.exception("apology_ncco failed; using the last-resort NCCO")
        return [dict(a) for a in _LAST_RESORT]


def _valid_url(url: str | None) -> str | None:
    try:
        return _http_url(url) if url else None
    except ValueError:
        return None


_NOT_IN_SERVICE = {
    "en": "We're sorry, this number is not in service with us. Goodbye.",
    "es": "Lo sentimos, este número no está en servicio con nosotros. Adiós.",
    "fr": "Désolé, ce numéro n'est pas en service chez nous. Au revoir.",
    "de": "Es tut uns leid, diese Nummer ist bei uns nicht in Betrieb. Auf Wiederhören.",
}


def unknown_number_ncco(language: str | None = "en-US") -> list[dict[str, Any]]:
    """For calls to a number no tenant owns: a polite "not in service", then the NCCO ends (hang up)."""
    lang = language or "en-US"
    text = _NOT_IN_SERVICE.get(lang.split("-")[0].lower())
    try:
        Talk(text="x", language=lang)
    except ValidationError:
        text = None
    if text is None:
        lang, text = "en-US", _NOT_IN_SERVICE["en"]
    return render([Talk(text=text, language=lang)])


CALLBACK_OFFER_CHOICES = (
    "To keep your place and get a call back at the number you are calling from, press 1. "
    "To leave a message instead, press 2."
)


def callback_offer_ncco(ctx: VoiceContext, *, message: str, choice_url: str) -> list[dict[str, Any]]:
    """Offer a waiting caller a callback (press 1) or a voicemail (press 2); the keypress (or silence) goes to
    ``choice_url``. Speech is listened for too ("call me back", "message") so nobody is stuck on a keypad."""
    prompt = f"{message} {CALLBACK_OFFER_CHOICES}"
    choice = Input(
        type=["dtmf", "speech"],
        dtmf=DtmfSettings(maxDigits=1, timeOut=8),
        speech=SpeechSettings(
            language=ctx.language, endOnSilence=1.0, startTimeout=8, context=["call me back", "callback", "message"]
        ),
        eventUrl=[choice_url],
        eventMethod="POST",
    )
    return render([*_talks(prompt, ctx, barge_in=True), choice])


def queue_announcement_ncco(place: int, ctx: VoiceContext) -> list[dict[str, Any]]:
    """For a caller waiting for a person: their place in line, then back into the same held conversation
    (ctx.conversation_name, hold music, startOnEnter false so the music plays until an agent's leg joins).
    Raises ValueError without a conversation name (there is nothing to hold the caller in)."""
    if not ctx.conversation_name:
        raise ValueError("VoiceContext.conversation_name is required to hold a caller")
    if place < 1:
        raise ValueError("place: must be 1 or more")
    text = f"You are number {place} in line. Thank you for waiting."
    hold = Conversation(
        name=ctx.conversation_name,
        musicOnHoldUrl=[ctx.hold_music_url] if ctx.hold_music_url else None,
        startOnEnter=False,
        endOnExit=False,
    )
    return render([*_talks(text, ctx), hold])
