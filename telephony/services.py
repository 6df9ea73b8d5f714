"""One call, end to end: a dialled number resolves its business and live script, each Vonage input
runs one engine turn, the record is written, and the actions are rendered as NCCO."""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from dataclasses import dataclass
from urllib.parse import urlencode

from django.conf import settings
from django.templatetags.static import static
from django.urls import get_script_prefix, reverse
from django.utils import timezone

from contactcenter.sql import PreparedLookup
from conversations.hooks import leg_event
from conversations.models import Conversation
from conversations.services import (
    call_event_apply,
    conversation_open,
    conversation_record_turn,
    voicemail_record,
    voicemail_transcript,
)
from flows.engine import ConversationState, Event
from flows.runtime import compiled_version, run_turn, without_heavy
from telephony.models import PhoneNumber, normalize_e164
from telephony.ncco import VoiceContext, apology_ncco, render_turn, unknown_number_ncco
from tenants.scoping import tenant_scope

logger = logging.getLogger("switchboard.telephony")


@dataclass(frozen=True)
class CallContext:
    """What every webhook for this call needs, also when the database is down (it rides in the URLs)."""

    conversation_id: int
    fallback_number: str = ""
    transcribe: bool = False


def base_url() -> str:
    return settings.SITE_URL.rstrip("/")


@functools.lru_cache(maxsize=32)
def _path_around_id(name: str, urlconf: str, prefix: str) -> tuple[str, str]:
    """A webhook path with a conversation id in it, as the text before and after the id (every NCCO of
    every turn carries three such URLs; reversing them each time showed in profiles)."""
    marker = "987654321987"
    before, found, after = reverse(name, args=[int(marker)], urlconf=urlconf).partition(marker)
    if not found:
        raise ValueError(f"{name} has no conversation id in its path")
    return before, after


def _url(name: str, ctx: CallContext) -> str:
    before, after = _path_around_id(name, settings.ROOT_URLCONF, get_script_prefix())
    path = f"{before}{int(ctx.conversation_id)}{after}"
    params = {"fb": ctx.fallback_number} if ctx.fallback_number else {}
    if ctx.transcribe:
        params["tr"] = "1"
    query = urlencode(params)
    return f"{base_url()}{path}" + (f"?{query}" if query else "")


@functools.lru_cache(maxsize=8)
def _static_url(path: str, static_url: str, backend: str) -> str:
    """``static(path)`` once per process and settings (a manifest lookup on every turn otherwise)."""
    return static(path)


def _absolute(url: str) -> str:
    """Vonage fetches the file itself: a site-relative static URL gets the site's origin (a CDN's is kept)."""
    return url if url.startswith(("https://", "http://")) else base_url() + url


def _storage_backend() -> str:
    return settings.STORAGES.get("staticfiles", {}).get("BACKEND", "")


def voice_context(
    conversation: Conversation, number: PhoneNumber | NumberSettings | None, defn_language: str, voice_style
) -> VoiceContext:
    ctx = CallContext(
        conversation.pk, number.fallback_number if number else "", bool(number and number.transcribe_voicemail)
    )
    return VoiceContext(
        language=defn_language,
        voice_style=voice_style,
        input_url=_url("vonage-input", ctx),
        record_url=_url("vonage-recording", ctx),
        transcription=ctx.transcribe,
        transcription_url=_url("vonage-transcription", ctx),
        hold_music_url=_absolute(_static_url("audio/hold.mp3", settings.STATIC_URL, _storage_backend())),
        conversation_name=f"sb-{conversation.tenant_id}-{conversation.pk}",
        fallback_number=ctx.fallback_number or None,
        from_number=conversation.dialled_number or None,
    )


@dataclass(frozen=True)
class NumberSettings:
    """The per-number settings a turn needs, as carried in the webhook URL."""

    fallback_number: str = ""
    transcribe_voicemail: bool = False


_active_number = PreparedLookup(
    lambda number: (
        PhoneNumber.objects.select_related("tenant", "flow__published_version")
        .defer(*without_heavy("flow__published_version"))
        .filter(number=number, active=True)
        .order_by()
    ),
    reason="route a dialled number to its business",
    sentinels=("+0000000000000000",),
)


def number_for(dialled: str) -> PhoneNumber | None:
    """The active number that was dialled, across all businesses (it is how a call finds its tenant)."""
    try:
        e164 = normalize_e164(dialled)
    except Exception:
        return None
    return _active_number.get(e164)  # numbers are unique


def call_answer(*, payload: dict) -> list[dict]:
    """Answer webhook: open the conversation and say the flow's first turn."""
    started = time.perf_counter()
    dialled, caller = str(payload.get("to") or ""), str(payload.get("from") or "")
    number = number_for(dialled)
    if number is None or number.flow.published_version_id is None:
        logger.warning(
            "call to a number with no live script",
            extra={"dialled": dialled, "caller": caller, "reason": "unknown" if number is None else "unpublished"},
        )
        return unknown_number_ncco("en-US")
    version = number.flow.published_version
    with tenant_scope([number.tenant_id]):
        conversation, created = conversation_open(
            tenant_id=number.tenant_id,
            channel="voice",
            flow_version_id=version.pk,
            caller_number=caller,
            dialled_number=number.number,
            vonage_uuid=str(payload.get("uuid") or "") or None,
            vonage_conversation_uuid=str(payload.get("conversation_uuid") or ""),
        )
        compiled = compiled_version(version, number.tenant)
        ctx = voice_context(conversation, number, compiled.definition.language, compiled.definition.voice_style)
        if not created and conversation.turn_count:
            # Vonage retried the answer webhook: say the opening again rather than starting a second conversation.
            last = conversation.turns.order_by("seq").first()
            from flows.engine import actions_from_json

            return render_turn(actions_from_json(last.actions), ctx=ctx)
        turn = run_turn(compiled, None, Event.start(timezone.now(), channel="voice"))
        ncco = render_turn(turn.actions, ctx=ctx)
        conversation_record_turn(
            conversation=conversation,
            event_kind="start",
            state=turn.state,
            actions=turn.actions,
            latency_ms=(time.perf_counter() - started) * 1000,
        )
    return ncco


def _event_from_input(payload: dict, now) -> Event:
    speech = payload.get("speech") or {}
    results = speech.get("results") or []
    dtmf = (payload.get("dtmf") or {}).get("digits") or ""
    if dtmf:
        return Event.keys(str(dtmf)[:20], now)
    best = None
    for result in results:
        try:
            confidence = float(result.get("confidence"))
        except (TypeError, ValueError):
            confidence = None
        text = str(result.get("text") or "").strip()
        if text and (best is None or (confidence or 0) > (best[1] or 0)):
            best = (text, confidence)
    if best is not None:
        return Event.utterance(best[0][:500], now, asr_confidence=best[1])
    if speech.get("error"):
        return Event(kind="asr_failure", now=now)
    return Event.silence(now)


# By id, unordered, compiled once per process (contactcenter/sql.py): on the hot path of every call turn,
# building this query cost more than the database took to answer it.
_conversation_by_id = PreparedLookup(
    lambda pk: (
        Conversation.objects.select_related("flow_version", "tenant")
        .defer(*without_heavy("flow_version"))
        .filter(pk=pk)
        .order_by()
    ),
    reason="a signed webhook names its conversation; its tenant scopes the rest",
)


_conversation_by_uuid = PreparedLookup(
    lambda uuid: Conversation.objects.filter(vonage_uuid=uuid).order_by(),
    reason="find the conversation a Vonage event belongs to",
    sentinels=("\x01sentinel-vonage-uuid",),
)


def conversation_for(conversation_id: int) -> Conversation | None:
    return _conversation_by_id.get(int(conversation_id))


def callback_choice_url(conversation: Conversation, *, source: str, fallback_number: str = "") -> str:
    """Where a waiting caller's answer to the callback offer goes (``callback_offer_ncco``)."""
    ctx = CallContext(conversation.pk, fallback_number)
    url = _url("vonage-input", ctx)
    return url + ("&" if "?" in url else "?") + urlencode({"offer": "callback", "src": source})


CALLBACK_WORDS = ("call me back", "call back", "callback", "call me", "ring me", "one")


def callback_choice(
    *, conversation_id: int, payload: dict, source: str, fallback_number: str = "", transcribe: bool = False
) -> list[dict]:
    """The caller answered the callback offer: 1 (or "call me back") promises a call back at the caller's
    number and says when; anything else, or silence, records a voicemail."""
    from conversations.callbacks import CallbackError, callback_schedule, when_text

    conversation = conversation_for(conversation_id)
    if conversation is None:
        raise LookupError(f"no conversation {conversation_id}")
    uuid = str(payload.get("uuid") or "")
    if conversation.vonage_uuid and uuid and uuid != conversation.vonage_uuid:
        raise PermissionError("input for another call leg")
    now = timezone.now()
    with tenant_scope([conversation.tenant_id]):
        number = NumberSettings(fallback_number=fallback_number, transcribe_voicemail=transcribe)
        if conversation.flow_version_id:
            defn = compiled_version(conversation.flow_version, conversation.tenant).definition
            ctx = voice_context(conversation, number, defn.language, defn.voice_style)
        else:
            ctx = voice_context(conversation, number, "en-US", None)
        event = _event_from_input(payload, now)
        said = (event.text or "").lower()
        wants = event.dtmf == "1" or (not event.dtmf and any(w in said for w in CALLBACK_WORDS))
        if wants and conversation.caller_number:
            try:
                callback = callback_schedule(
                    tenant_id=conversation.tenant_id,
                    phone=conversation.caller_number,
                    source=source if source in ("max_wait", "after_hours") else "max_wait",
                    conversation=conversation,
                    reason="Chose a call back instead of waiting",
                    now=now,
                )
            except CallbackError:
                logger.warning("caller's number cannot be called back", extra={"conversation_id": conversation.pk})
            else:
                when = when_text(callback.due_at, tz=conversation.tenant.timezone, now=now)
                text = f"Thank you. We will call you back at the number you are calling from, {when}. Goodbye."
                return render_turn([], ctx=dataclasses.replace(ctx, goodbye_text=text))
        # Voicemail: "Of course." then the standard voicemail prompt, the recording and a goodbye.
        return apology_ncco(ctx, message="Of course.", fallback_number="")


def call_input(
    *, conversation_id: int, payload: dict, fallback_number: str = "", transcribe: bool = False
) -> list[dict]:
    """Input webhook: one engine turn on what the caller said or pressed (or their silence).

    The number's fallback and voicemail settings ride in the input URL (set at answer), so a turn
    does not look the number up again: fewer queries on the hot path, and they survive a DB outage.
    """
    started = time.perf_counter()
    conversation = conversation_for(conversation_id)
    if conversation is None or conversation.flow_version is None:
        raise LookupError(f"no conversation {conversation_id}")
    uuid = str(payload.get("uuid") or "")
    if conversation.vonage_uuid and uuid and uuid != conversation.vonage_uuid:
        raise PermissionError("input for another call leg")
    with tenant_scope([conversation.tenant_id]):
        number = NumberSettings(fallback_number=fallback_number, transcribe_voicemail=transcribe)
        compiled = compiled_version(conversation.flow_version, conversation.tenant)
        ctx = voice_context(conversation, number, compiled.definition.language, compiled.definition.voice_style)
        state = ConversationState.from_json(conversation.state) if conversation.state else None
        if state is None or state.finished:
            return render_turn([], ctx=ctx)
        event = _event_from_input(payload, timezone.now())
        turn = run_turn(compiled, state, event)
        ncco = render_turn(turn.actions, ctx=ctx)
        conversation_record_turn(
            conversation=conversation,
            event_kind=event.kind,
            text=event.text or "",
            dtmf=event.dtmf or "",
            asr_confidence=event.asr_confidence,
            understanding=turn.understanding,
            state=turn.state,
            actions=turn.actions,
            latency_ms=(time.perf_counter() - started) * 1000,
        )
    return ncco


def call_event(*, payload: dict, marker: dict | None = None) -> None:
    """Status events (started ... completed): applied once, in order, to the conversation.

    Events of a leg we dialled ourselves (an agent joining a caller) carry a marker in their URL and
    go to whoever subscribed to leg events (agents), not to the caller's conversation.
    """
    if marker and marker.get("leg") and leg_event(marker=marker, payload=payload):
        return
    uuid = str(payload.get("uuid") or "")
    conversation = _conversation_by_uuid.get(uuid) if 0 < len(uuid) <= 64 else None
    if conversation is None and payload.get("to"):
        number = number_for(str(payload.get("to")))
        tenant_id = number.tenant_id if number else None
    else:
        tenant_id = conversation.tenant_id if conversation else None
    if tenant_id is None:
        logger.info("event for an unknown call", extra={"vonage_uuid": uuid, "status": payload.get("status")})
        return
    with tenant_scope([tenant_id]):
        call_event_apply(conversation=conversation, tenant_id=tenant_id, payload=payload)


def call_recording(*, conversation_id: int, payload: dict, transcribe: bool = False) -> list[dict]:
    """Record webhook: the voicemail. ``transcribe`` rides in the URL (``tr=1``) when the number asked
    Vonage for a transcription, so the e-mail waits for it."""
    conversation = conversation_for(conversation_id)
    if conversation is None:
        raise LookupError(f"no conversation {conversation_id}")
    with tenant_scope([conversation.tenant_id]):
        voicemail_record(conversation=conversation, payload=payload, transcript_expected=transcribe)
    return []


def call_transcription(*, conversation_id: int, payload: dict) -> None:
    conversation = conversation_for(conversation_id)
    if conversation is None:
        return
    transcript = " ".join(
        str(channel.get("transcript", [{}])[0].get("sentence", ""))
        if isinstance(channel.get("transcript"), list)
        else ""
        for channel in payload.get("channels", []) or []
    ).strip() or str(payload.get("transcript") or payload.get("text") or "")
    with tenant_scope([conversation.tenant_id]):
        voicemail_transcript(recording_uuid=str(payload.get("recording_uuid") or ""), transcript=transcript)


def failure_ncco(
    *, fallback_number: str = "", conversation_id: int | None = None, language: str = "en-US"
) -> list[dict]:
    """No dead air: an apology, then the business's own number, else a voicemail, else a goodbye."""
    record_url = None
    if conversation_id is not None:
        record_url = _url("vonage-recording", CallContext(conversation_id))
    ctx = VoiceContext(language=language, fallback_number=fallback_number or None, record_url=record_url)
    return apology_ncco(ctx)
