"""Writes for the contact record. Every function is idempotent where the channel may retry."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from contactcenter.sql import PreparedLookup, insert_unless_exists, insert_with_update, update_row
from conversations import hooks
from conversations.models import (
    AppointmentRequest,
    CallEvent,
    Conversation,
    Lead,
    Outcome,
    Status,
    Turn,
    Voicemail,
)
from flows.engine import ConversationState, actions_to_json

logger = logging.getLogger("switchboard.conversations")

# Vonage call statuses, by how far along a call they are; an event never moves a call backwards.
STATUS_RANK = {
    "started": 0,
    "ringing": 0,
    "answered": 1,
    "human": 1,
    "machine": 1,
    "completed": 2,
    "busy": 2,
    "cancelled": 2,
    "failed": 2,
    "rejected": 2,
    "timeout": 2,
    "unanswered": 2,
}
FAILED_STATUSES = {"busy", "cancelled", "failed", "rejected", "timeout", "unanswered"}
ENGINE_OUTCOMES = {
    "resolved": Outcome.RESOLVED,
    "ended": Outcome.RESOLVED,
    "escalated": Outcome.ESCALATED,
    "voicemail": Outcome.VOICEMAIL,
    "callback": Outcome.CALLBACK,
}


def conversation_open(
    *,
    tenant_id: int,
    channel: str,
    flow_version_id: int | None,
    caller_number: str = "",
    dialled_number: str = "",
    vonage_uuid: str | None = None,
    vonage_conversation_uuid: str = "",
    started_at: dt.datetime | None = None,
) -> tuple[Conversation, bool]:
    """Start the record of a contact. A repeated answer webhook for the same call returns the same row."""
    conversation = Conversation(
        tenant_id=tenant_id,
        channel=channel,
        flow_version_id=flow_version_id,
        caller_number=caller_number[:32],
        dialled_number=dialled_number[:32],
        vonage_uuid=vonage_uuid or None,
        vonage_conversation_uuid=vonage_conversation_uuid[:64],
        started_at=started_at or timezone.now(),
        answered_at=started_at or timezone.now(),
        status=Status.IN_PROGRESS,
    )
    if not vonage_uuid:
        conversation.save(force_insert=True)
        return conversation, True
    if insert_unless_exists(conversation, "vonage_uuid"):
        return conversation, True
    return Conversation.objects.get(vonage_uuid=vonage_uuid), False


# Actions whose turn writes more than the transcript line and the state (a lead, an appointment, a call back,
# a handover): those turns keep one transaction around all their writes.
_SIDE_EFFECTS = frozenset({"capture_lead", "request_appointment", "offer_callback", "transfer"})


def _reply_text(actions_json: list[dict]) -> str:
    parts = []
    for action in actions_json:
        text = action.get("voice_text") or action.get("text") or action.get("prompt")
        if text:
            parts.append(text)
    return " ".join(parts)[:4000]


def conversation_record_turn(
    *,
    conversation: Conversation,
    event_kind: str,
    text: str = "",
    dtmf: str = "",
    asr_confidence: float | None = None,
    understanding: Any = None,
    state: ConversationState,
    actions: list[Any],
    latency_ms: float | None = None,
) -> Turn:
    """Save one engine turn and what it decided: the transcript line, the new state, leads, appointments."""
    actions_json = actions_to_json(actions)
    last_reason = next(
        (a["reason"] for a in reversed(actions_json) if a.get("reason")), {"code": "", "explanation": ""}
    )
    transfer_json: dict | None = None
    seq = conversation.turn_count + 1
    fields = {
        "tenant_id": conversation.tenant_id,
        "conversation": conversation,
        "seq": seq,
        "event": event_kind,
        "utterance": (text or "")[:2000],
        "dtmf": (dtmf or "")[:32],
        "asr_confidence": asr_confidence,
        "intent": (getattr(understanding, "label", None) or "")[:100],
        "confidence": getattr(understanding, "confidence", None),
        "out_of_scope": bool(getattr(understanding, "out_of_scope", False)),
        "reply": _reply_text(actions_json),
        "reason_code": last_reason["code"][:64],
        "reason": last_reason["explanation"],
        "step": (state.current_step or "")[:64],
        "actions": actions_json,
        "latency_ms": round(latency_ms, 2) if latency_ms is not None else None,
    }
    updates: dict[str, Any] = {"turn_count": seq, "state": state.to_json()}
    if not any(action["type"] in _SIDE_EFFECTS for action in actions_json):
        # Most turns: the transcript line and the new state, nothing else. One statement where the database
        # can (PostgreSQL): a single round trip and its own transaction instead of four.
        if state.outcome and state.outcome in ENGINE_OUTCOMES:
            updates["outcome"] = ENGINE_OUTCOMES[state.outcome]
        turn = Turn(**fields)
        insert_with_update(turn, Conversation, conversation.pk, updates)
        for key, value in updates.items():
            setattr(conversation, key, value)
        return turn
    with transaction.atomic():
        turn = Turn.objects.create(**fields)
        for action in actions_json:
            kind = action["type"]
            if kind == "capture_lead":
                fields = action["fields"]
                Lead.objects.create(
                    tenant_id=conversation.tenant_id,
                    conversation=conversation,
                    fields=fields,
                    name=str(fields.get("name") or "")[:150],
                    phone=str(fields.get("phone") or conversation.caller_number)[:32],
                    email=str(fields.get("email") or "")[:254],
                )
            elif kind == "request_appointment":
                when = parse_datetime(action["when"]) if action.get("when") else None
                AppointmentRequest.objects.create(
                    tenant_id=conversation.tenant_id,
                    conversation=conversation,
                    service=action["service"][:100],
                    requested_for=when,
                    requested_text=(action.get("when") or "")[:100],
                    details=action.get("slots") or {},
                )
            elif kind == "offer_callback":
                _schedule_from_flow(conversation, action)
            elif kind == "transfer":
                transfer_json = action
                summary = action["summary"]
                updates.update(
                    status=Status.WAITING,
                    outcome=Outcome.ESCALATED,
                    escalation_reason=summary["reason_code"][:64],
                    escalation_text=summary["reason_text"][:300],
                )
        if state.outcome and "outcome" not in updates and state.outcome in ENGINE_OUTCOMES:
            updates["outcome"] = ENGINE_OUTCOMES[state.outcome]
        Conversation.objects.filter(pk=conversation.pk).update(**updates)
        for key, value in updates.items():
            setattr(conversation, key, value)
    if transfer_json is not None:
        # Subscribers (agents) create the escalation once the handover is committed.
        transaction.on_commit(lambda: hooks.escalated(conversation, transfer_json))
    return turn


def _schedule_from_flow(conversation: Conversation, action: dict) -> None:
    """The flow promised a call back: record it with the conversation's turn (same transaction)."""
    from conversations.callbacks import CallbackError, callback_schedule
    from flows.models import Queue

    when = parse_datetime(action["when"]) if action.get("when") else None
    if when is not None and timezone.is_naive(when):
        when = None  # the slot parser always gives an aware time; anything else is not a chosen time
    queue = Queue.objects.filter(tenant_id=conversation.tenant_id, name=action.get("queue") or "").first()
    summary = action.get("summary") or {}
    try:
        callback_schedule(
            tenant_id=conversation.tenant_id,
            phone=action.get("phone") or conversation.caller_number,
            source="flow",
            conversation=conversation,
            name=action.get("name") or "",
            queue=queue,
            priority=action.get("priority", 5),
            preference="at" if when else "asap",
            requested_for=when,
            reason=summary.get("reason_text", "")[:300] or "Asked for a call back",
            summary=summary,
        )
    except CallbackError as exc:
        # Chat without a phone slot, or a withheld number: nothing to call. The transcript still shows it.
        logger.warning("callback not scheduled: %s", exc, extra={"conversation_id": conversation.pk})


def _event_time(payload: dict) -> dt.datetime | None:
    raw = payload.get("timestamp") or payload.get("end_time") or payload.get("start_time")
    parsed = parse_datetime(raw) if isinstance(raw, str) else None
    if parsed is not None and timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, dt.UTC)
    return parsed


def _dedupe_key(payload: dict) -> str:
    basis = json.dumps(
        [
            payload.get("uuid"),
            payload.get("status"),
            payload.get("timestamp"),
            payload.get("recording_uuid"),
            payload.get("conversation_uuid_to"),
        ],
        default=str,
    )
    return hashlib.sha256(basis.encode()).hexdigest()


# The conversation a status event applies to, locked until the event's transaction ends. Its id comes from
# the conversation the event was matched to (by its Vonage uuid, in the caller's tenant).
_locked_conversation = PreparedLookup(
    lambda pk: Conversation.objects.select_for_update().filter(pk=pk).order_by(),
    reason="a status event locks the conversation it was matched to",
)


def call_event_apply(*, conversation: Conversation | None, tenant_id: int, payload: dict) -> bool:
    """Apply a Vonage status event once. Duplicates and stale (out-of-order) events change nothing.

    Returns True when the event was new.
    """
    status = str(payload.get("status") or "")[:32]
    occurred = _event_time(payload)
    event = CallEvent(
        tenant_id=tenant_id,
        conversation=conversation,
        dedupe_key=_dedupe_key(payload),
        status=status,
        occurred_at=occurred,
        payload=payload,
    )
    try:
        with transaction.atomic():
            if not insert_unless_exists(event, "dedupe_key"):
                return False  # Vonage delivered it again
            if conversation is None or status not in STATUS_RANK:
                return True
            current = _locked_conversation.get(conversation.pk)
            if current is None:
                return True
            current_rank = STATUS_RANK.get(_vonage_status_of(current), 0)
            if STATUS_RANK[status] < current_rank:
                return True  # an older event arriving late: recorded, not applied
            updates: dict[str, Any] = {"last_status_at": occurred or timezone.now()}
            if status == "answered" and current.answered_at is None:
                updates["answered_at"] = occurred or timezone.now()
            if STATUS_RANK[status] == 2 and current.ended_at is None:
                updates.update(_completion(current, status, payload, occurred))
                # Subscribers (agents) react once the end of the call is committed.
                transaction.on_commit(lambda: hooks.ended(current))
            update_row(Conversation, current.pk, updates)
            for key, value in updates.items():
                setattr(current, key, value)
    except IntegrityError:
        return False
    return True


def _vonage_status_of(conversation: Conversation) -> str:
    if conversation.ended_at is not None:
        return "completed"
    if conversation.answered_at is not None:
        return "answered"
    return "started"


def _completion(conversation: Conversation, status: str, payload: dict, occurred: dt.datetime | None) -> dict:
    ended = occurred or timezone.now()
    updates: dict[str, Any] = {"ended_at": ended}
    try:
        updates["duration_seconds"] = (
            int(payload.get("duration"))
            if payload.get("duration") is not None
            else int((ended - conversation.started_at).total_seconds())
        )
    except (TypeError, ValueError):
        updates["duration_seconds"] = None
    try:
        if payload.get("price") is not None:
            updates["price"] = Decimal(str(payload["price"]))
    except InvalidOperation:
        pass
    if status in FAILED_STATUSES and conversation.turn_count == 0:
        updates.update(status=Status.FAILED, outcome=conversation.outcome or Outcome.FAILED)
        return updates
    updates["status"] = Status.COMPLETED
    if not conversation.outcome:
        state = ConversationState.from_json(conversation.state) if conversation.state else None
        updates["outcome"] = Outcome.RESOLVED if state is not None and state.served else Outcome.ABANDONED
    return updates


def voicemail_record(
    *, conversation: Conversation, payload: dict, transcript_expected: bool = False
) -> Voicemail | None:
    """Store a recording from the record action once (Vonage may deliver the callback again).

    A new voicemail is announced after commit (``hooks.voicemail_recorded``: the consoles, the e-mail);
    ``transcript_expected`` (the number asked Vonage for a transcription) lets the e-mail wait for it.
    """
    recording_uuid = str(payload.get("recording_uuid") or "")
    url = str(payload.get("recording_url") or "")
    if not recording_uuid or not url:
        return None
    start = parse_datetime(str(payload.get("start_time") or ""))
    end = parse_datetime(str(payload.get("end_time") or ""))
    duration = max(0, int((end - start).total_seconds())) if start and end else None
    voicemail, created = Voicemail.objects.get_or_create(
        recording_uuid=recording_uuid,
        defaults={
            "tenant_id": conversation.tenant_id,
            "conversation": conversation,
            "caller_number": conversation.caller_number,
            "recording_url": url[:500],
            "duration_seconds": duration,
        },
    )
    if created:
        Conversation.objects.filter(pk=conversation.pk).update(outcome=Outcome.VOICEMAIL)
        transaction.on_commit(lambda: hooks.voicemail_recorded(voicemail, transcript_expected))
    return voicemail


def voicemail_transcript(*, recording_uuid: str, transcript: str) -> None:
    """Attach Vonage's transcript to its voicemail; subscribers (the e-mail waits for it) run after commit."""
    if not recording_uuid:
        return
    if Voicemail.objects.filter(recording_uuid=recording_uuid).update(transcript=transcript[:10000]):
        voicemail = Voicemail.objects.filter(recording_uuid=recording_uuid).first()
        if voicemail is not None:
            transaction.on_commit(lambda: hooks.voicemail_transcribed(voicemail))
