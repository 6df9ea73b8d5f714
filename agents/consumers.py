"""Websockets for live work: the agent console and the supervisor wallboard.

Both build on ``tenants.consumers.TenantScopedConsumer``: session auth, the access map computed at
connect, and every database call inside the socket's tenant scope (``self.scoped``). The channel
layer only notifies; what a browser shows is always re-read from the database (snapshots, figures).

Console protocol (``/ws/console/``), JSON text frames.

Client -> server (every message may carry an optional ``ref`` echoed in the answer):
  {"type": "snapshot"}
  {"type": "heartbeat"}                                      (every 10 s)
  {"type": "presence.set", "state": "available"|"away"|"offline", "reason": ""}
  {"type": "offer.accept", "escalation_id": 1}
  {"type": "offer.decline", "escalation_id": 1}
  {"type": "escalation.wrap", "escalation_id": 1, "disposition": "resolved"|..., "notes": ""}
  {"type": "escalation.transfer", "escalation_id": 1, "queue_id": 2}
  {"type": "voicemail.handle", "voicemail_id": 1}             (marks it handled by you)
  {"type": "voicemail.callback", "voicemail_id": 1}           (schedules a call back, then handles it)
  {"type": "callback.dial", "escalation_id": 1}               ("Call back": rings you, then the customer)
  {"type": "callback.finish", "escalation_id": 1, "outcome": "reached"|"no_answer"|"voicemail"|"wrong_number"
   |"cancelled", "notes": ""}                                 (records the attempt; no answer retries later)

Server -> client:
  {"type": "snapshot", ...}                                  (on connect, on request, after each action)
  {"type": "ok", "action": <client type>, "escalation_id"?: 1, "voicemail_id"?: 1, "ref"?: ...}
  {"type": "error", "code": "invalid"|"unknown_type"|"not_found"|"already_taken"|"already_handled"|"forbidden"
   |"no_offer", "message": <readable>, "ref"?: ...}
  the events of ``agents.realtime`` as published ({"type": "escalation.offered", ...}), once each.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from typing import Any, Literal

from django.core.exceptions import PermissionDenied
from django.utils import timezone
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agents.callbacks import callback_dial, callback_finish
from agents.models import (
    HELD_STATES,
    Escalation,
    EscalationOffer,
    OfferOutcome,
    Presence,
    PresenceState,
)
from agents.realtime import agent_group
from agents.selectors import (
    console_item,
    iso,
    pending_offers_for_agent,
    waiting_work,
    wallboard_figures,
)
from agents.services import (
    AlreadyTaken,
    escalation_accept,
    escalation_decline,
    escalation_transfer,
    escalation_wrap,
    forget_taken,
    offers_withdraw_for_agents,
    presence_heartbeat,
    presence_set,
    taken_in,
    taken_known,
)
from agents.voicemails import (
    VoicemailAlreadyHandled,
    VoicemailError,
    voicemail_call_back,
    voicemail_handle,
    voicemails_for_console,
)
from agents.webchat import NotAChat, chat_agent_joined, chat_agent_say
from conversations.models import Lead, Turn, Voicemail
from flows.models import Queue
from tenants.consumers import CLOSE_FORBIDDEN, CLOSE_NOT_FOUND, TenantScopedConsumer, tenant_group
from tenants.models import Role, Tenant

DISPOSITIONS: list[tuple[str, str]] = [
    ("resolved", "Resolved"),
    ("callback_needed", "Callback needed"),
    ("voicemail_left", "Voicemail left"),
    ("wrong_number", "Wrong number"),
    ("other", "Other"),
]
CONSOLE_PRESENCE_STATES: list[tuple[str, str]] = [
    ("available", "Available"),
    ("away", "Away"),
    ("offline", "Offline"),
]
TAKEN_MESSAGE = "Another agent took this call."
NOT_FOUND_MESSAGE = "No such escalation (it may belong to a business you do not answer for)."
VOICEMAIL_NOT_FOUND_MESSAGE = "No such voicemail (it may belong to a business you do not answer for)."


# --- client messages -----------------------------------------------------------------------------
class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str
    ref: str | int | None = None


class SnapshotMsg(_Message):
    pass


class HeartbeatMsg(_Message):
    pass


class PresenceSetMsg(_Message):
    state: Literal["available", "away", "offline"]
    reason: str = Field("", max_length=200)


class EscalationMsg(_Message):
    escalation_id: int = Field(gt=0)


class WrapMsg(EscalationMsg):
    disposition: Literal["resolved", "callback_needed", "voicemail_left", "wrong_number", "other"]
    notes: str = Field("", max_length=5000)


class TransferMsg(EscalationMsg):
    queue_id: int = Field(gt=0)


class ChatSendMsg(EscalationMsg):
    text: str = Field(min_length=1, max_length=1000)


class VoicemailMsg(_Message):
    voicemail_id: int = Field(gt=0)


class CallbackFinishMsg(EscalationMsg):
    outcome: Literal["reached", "no_answer", "voicemail", "wrong_number", "cancelled"]
    notes: str = Field("", max_length=5000)


CLIENT_MESSAGES: dict[str, type[_Message]] = {
    "snapshot": SnapshotMsg,
    "heartbeat": HeartbeatMsg,
    "presence.set": PresenceSetMsg,
    "offer.accept": EscalationMsg,
    "offer.decline": EscalationMsg,
    "escalation.wrap": WrapMsg,
    "escalation.transfer": TransferMsg,
    "chat.send": ChatSendMsg,
    "voicemail.handle": VoicemailMsg,
    "voicemail.callback": VoicemailMsg,
    "callback.dial": EscalationMsg,
    "callback.finish": CallbackFinishMsg,
}


class ConsoleError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def readable_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "__root__")
        msg = err.get("msg", "is not valid")
        if err.get("type") == "missing":
            parts.append(f"'{where}' is required")
        elif err.get("type") == "extra_forbidden":
            parts.append(f"'{where}' is not expected here")
        else:
            parts.append(f"'{where}': {msg}" if where else msg)
    return "Invalid message: " + "; ".join(parts) + "."


# --- reads (sync, inside the socket's scope) -------------------------------------------------------
def console_snapshot(*, user, tenant_ids: list[int], now) -> dict:
    """Everything the console shows, re-read from the database (call inside the socket's scope)."""
    tenants = list(Tenant.objects.filter(pk__in=tenant_ids).order_by("name"))
    queues: dict[int, list[dict]] = {}
    for q in Queue.objects.filter(tenant_id__in=tenant_ids).order_by("name"):
        queues.setdefault(q.tenant_id, []).append({"id": q.pk, "name": q.name})
    presence = Presence.objects.filter(user_id=user.pk).first()

    waiting = []
    places: dict[int, int] = {}
    for escalation in waiting_work(tenant_ids=tenant_ids, now=now):
        places[escalation.queue_id] = places.get(escalation.queue_id, 0) + 1
        waiting.append(console_item(escalation, now, place=places[escalation.queue_id]))
    place_of = {w["escalation_id"]: w["place"] for w in waiting}

    offers = []
    for offer in pending_offers_for_agent(agent_id=user.pk).select_related(
        "escalation__tenant", "escalation__queue", "escalation__callback", "escalation__callback_attempt"
    ):
        item = console_item(offer.escalation, now, place=place_of.get(offer.escalation_id))
        item.update(
            offer_id=offer.pk,
            offered_at=iso(offer.offered_at),
            expires_at=iso(offer.expires_at),
            expires_in_seconds=max(0, int((offer.expires_at - now).total_seconds())),
        )
        offers.append(item)

    active = []
    held = (
        Escalation.objects.filter(agent_id=user.pk, state__in=HELD_STATES)
        .select_related("tenant", "queue", "conversation", "callback", "callback_attempt")
        .order_by("accepted_at", "id")
    )
    for escalation in held:
        conversation = escalation.conversation
        turns = Turn.objects.filter(conversation_id=conversation.pk).order_by("seq")
        leads = Lead.objects.filter(conversation_id=conversation.pk).order_by("created_at")
        item = console_item(escalation, now)
        summary = escalation.summary or {}
        item.update(
            accepted_at=iso(escalation.accepted_at),
            connected_at=iso(escalation.connected_at),
            channel=conversation.channel,
            caller_number=conversation.caller_number,
            summary={
                "reason_code": summary.get("reason_code", escalation.reason_code),
                "reason_text": summary.get("reason_text", escalation.reason_text),
                "intent_path": list(summary.get("intent_path") or []),
                "slots": summary.get("slots") or {},
                "last_utterances": list(summary.get("last_utterances") or []),
                "flow_step": summary.get("flow_step"),
            },
            transcript=[
                {
                    "seq": t.seq,
                    "event": t.event,
                    "caller": t.utterance or (f"(pressed {t.dtmf})" if t.dtmf else ""),
                    "intent": t.intent,
                    "reply": t.reply,
                    "at": iso(t.created_at),
                }
                for t in turns
            ],
            leads=[
                {"name": lead.name, "phone": lead.phone, "email": lead.email, "fields": lead.fields or {}}
                for lead in leads
            ],
        )
        active.append(item)

    voicemails, voicemails_total = voicemails_for_console(tenant_ids=tenant_ids, now=now)

    return {
        "type": "snapshot",
        "now": iso(now),
        "me": {"user_id": user.pk, "name": user.get_full_name()},
        "presence": {
            "state": presence.state if presence else PresenceState.OFFLINE.value,
            "reason": presence.reason if presence else "",
            "since": iso(presence.since) if presence else None,
            "last_heartbeat": iso(presence.last_heartbeat) if presence else None,
        },
        "tenants": [
            {
                "id": t.pk,
                "name": t.name,
                "slug": t.slug,
                "greeting": t.greeting,
                "agent_notes": t.agent_notes,
                "queues": queues.get(t.pk, []),
            }
            for t in tenants
        ],
        "waiting": waiting,
        "offers": offers,
        "active": active,
        "voicemails": voicemails,
        "voicemails_total": voicemails_total,
        "dispositions": [{"value": v, "label": label} for v, label in DISPOSITIONS],
    }


def _visible_escalation(escalation_id: int) -> Escalation:
    """In this socket's scope; another tenant's id is indistinguishable from a missing one."""
    escalation = Escalation.objects.select_related("queue").filter(pk=escalation_id).first()
    if escalation is None:
        raise ConsoleError("not_found", NOT_FOUND_MESSAGE)
    return escalation


def _visible_voicemail(voicemail_id: int) -> Voicemail:
    """In this socket's scope; another tenant's id is indistinguishable from a missing one."""
    voicemail = Voicemail.objects.select_related("conversation").filter(pk=voicemail_id).first()
    if voicemail is None:
        raise ConsoleError("not_found", VOICEMAIL_NOT_FOUND_MESSAGE)
    return voicemail


def _held_by(escalation: Escalation, user) -> None:
    if escalation.agent_id != user.pk or escalation.state not in HELD_STATES:
        raise ConsoleError("forbidden", "Only the agent handling this call can do that, and only while it is live.")


class _JsonObjectsOnly:
    """Answers a frame that is not a JSON object with a readable error instead of closing the socket."""

    async def send_error(self, code: str, message: str, ref=None) -> None:
        body = {"type": "error", "code": code, "message": message}
        if ref is not None:
            body["ref"] = ref
        await self.send_json(body)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        if text_data is None:
            await self.send_error("invalid", "Send JSON text messages, not binary ones.")
            return
        try:
            content = json.loads(text_data)
        except ValueError:
            await self.send_error("invalid", "That message is not valid JSON.")
            return
        if not isinstance(content, dict):
            await self.send_error("invalid", 'Send a JSON object such as {"type": "snapshot"}.')
            return
        await self.receive_json(content)


# --- the console ---------------------------------------------------------------------------------
class ConsoleConsumer(_JsonObjectsOnly, TenantScopedConsumer):
    """One agent's console across every tenant they act for (an agency agent: every covered one)."""

    #: Identical events arriving through several groups (tenant, queue, agent) are forwarded once.
    DEDUPE_SECONDS = 5.0

    async def connect_scoped(self) -> None:
        if not self.access:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.user = self.scope["user"]
        self.tenant_ids = sorted(self.access)
        # Every queue event is also published to its tenant's group, so joining the queue groups too
        # would deliver each event twice to every console (measured: it doubled the fan-out cost).
        self.groups = [agent_group(self.user.pk)] + [tenant_group(t) for t in self.tenant_ids]
        self._recent: deque[tuple[float, str]] = deque(maxlen=100)
        for group in self.groups:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        await self.send_snapshot()

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def send_snapshot(self, ref=None) -> None:
        snapshot = await self.scoped(
            lambda: console_snapshot(user=self.user, tenant_ids=self.tenant_ids, now=timezone.now())
        )
        if ref is not None:
            snapshot["ref"] = ref
        await self.send_json(snapshot)

    async def tenant_event(self, message: dict) -> None:
        event = message["event"]
        if event.get("type") == "escalation.waiting":
            forget_taken(event["escalation_id"])  # waiting again: this process's memory of its claim is stale
        text = message.get("text")  # encoded once by agents.realtime.publish
        key = text or json.dumps(event, sort_keys=True, default=str)
        now = time.monotonic()
        while self._recent and now - self._recent[0][0] > self.DEDUPE_SECONDS:
            self._recent.popleft()
        if any(k == key for _, k in self._recent):
            return
        self._recent.append((now, key))
        if text:
            await self.send(text_data=text)
        else:
            await self.send_json(event)

    async def receive_json(self, content: dict, **kwargs: Any) -> None:
        ref = content.get("ref") if isinstance(content.get("ref"), str | int) else None
        kind = content.get("type")
        model = CLIENT_MESSAGES.get(kind) if isinstance(kind, str) else None
        if model is None:
            await self.send_error(
                "unknown_type",
                f"Unknown message type {kind!r}; use one of: {', '.join(CLIENT_MESSAGES)}.",
                ref,
            )
            return
        try:
            msg = model.model_validate(content)
        except ValidationError as exc:
            await self.send_error("invalid", readable_validation_error(exc), ref)
            return
        handler = getattr(self, "do_" + kind.replace(".", "_"))
        try:
            answer = await handler(msg)
        except ConsoleError as exc:
            await self.send_error(exc.code, exc.message, ref)
            return
        except AlreadyTaken:
            # No snapshot here: the winner's "accepted"/"withdrawn" events make the console re-read its state
            # (debounced), and 199 losers of one offer each re-reading at once is what slowed every console.
            await self.send_error("already_taken", TAKEN_MESSAGE, ref)
            return
        except VoicemailAlreadyHandled as exc:
            await self.send_error("already_handled", str(exc), ref)
            await self.send_snapshot()
            return
        except (Escalation.DoesNotExist, Queue.DoesNotExist):
            await self.send_error("not_found", NOT_FOUND_MESSAGE, ref)
            return
        except PermissionDenied as exc:
            await self.send_error("forbidden", str(exc) or "You cannot do that now.", ref)
            return
        if answer is not None:
            if ref is not None:
                answer["ref"] = ref
            await self.send_json(answer)
        if kind not in ("heartbeat", "snapshot"):
            await self.send_snapshot()

    # Handlers return the acknowledgement to send (or None) and raise ConsoleError & co.
    async def do_snapshot(self, msg: SnapshotMsg) -> None:
        await self.send_snapshot(ref=msg.ref)

    async def do_heartbeat(self, msg: HeartbeatMsg) -> dict:
        presence = await self.scoped(lambda: presence_heartbeat(user=self.user, now=timezone.now()))
        return {"type": "ok", "action": "heartbeat", "state": presence.state}

    async def do_presence_set(self, msg: PresenceSetMsg) -> dict:
        def run():
            now = timezone.now()
            presence = presence_set(user=self.user, state=msg.state, reason=msg.reason, now=now)
            if msg.state != PresenceState.AVAILABLE:
                # Someone stepping away must not sit on offers others could answer.
                offers_withdraw_for_agents(agent_ids=[self.user.pk], now=now)
            return presence

        presence = await self.scoped(run)
        return {"type": "ok", "action": "presence.set", "state": presence.state}

    async def do_offer_accept(self, msg: EscalationMsg) -> dict:
        esc_id = msg.escalation_id
        if taken_known(esc_id) in self.access:
            raise AlreadyTaken(esc_id)  # known lost, in a business this agent answers for: no I/O

        def run():
            if taken_in(esc_id) in self.access:  # the shared marker (or this process's memory of it): no query
                raise AlreadyTaken(esc_id)
            _visible_escalation(esc_id)
            escalation = escalation_accept(escalation_id=esc_id, agent=self.user, now=timezone.now())
            chat_agent_joined(escalation=escalation, agent=self.user)
            return escalation

        escalation = await self.scoped(run)
        return {"type": "ok", "action": "offer.accept", "escalation_id": escalation.pk}

    async def do_chat_send(self, msg: ChatSendMsg) -> dict:
        """The agent types to a web-chat visitor (only on a chat escalation they hold)."""

        def run():
            escalation = _visible_escalation(msg.escalation_id)
            _held_by(escalation, self.user)
            try:
                return chat_agent_say(escalation=escalation, agent=self.user, text=msg.text).seq
            except (NotAChat, ValueError) as exc:
                raise ConsoleError("invalid", str(exc)) from exc

        seq = await self.scoped(run)
        return {"type": "ok", "action": "chat.send", "escalation_id": msg.escalation_id, "seq": seq}

    async def do_offer_decline(self, msg: EscalationMsg) -> dict:
        def run():
            escalation = _visible_escalation(msg.escalation_id)
            has_offer = EscalationOffer.objects.filter(
                escalation_id=escalation.pk, agent_id=self.user.pk, outcome=OfferOutcome.PENDING
            ).exists()
            if not has_offer:
                raise ConsoleError("no_offer", "You have no pending offer for this call (it may have timed out).")
            escalation_decline(escalation=escalation, agent=self.user, now=timezone.now())

        await self.scoped(run)
        return {"type": "ok", "action": "offer.decline", "escalation_id": msg.escalation_id}

    async def do_escalation_wrap(self, msg: WrapMsg) -> dict:
        def run():
            escalation = _visible_escalation(msg.escalation_id)
            _held_by(escalation, self.user)
            escalation_wrap(
                escalation=escalation, agent=self.user, disposition=msg.disposition, notes=msg.notes, now=timezone.now()
            )

        await self.scoped(run)
        return {"type": "ok", "action": "escalation.wrap", "escalation_id": msg.escalation_id}

    async def do_escalation_transfer(self, msg: TransferMsg) -> dict:
        def run():
            escalation = _visible_escalation(msg.escalation_id)
            _held_by(escalation, self.user)
            queue = Queue.objects.filter(pk=msg.queue_id, tenant_id=escalation.tenant_id).first()
            if queue is None:
                raise ConsoleError("not_found", "No such queue for this business.")
            if queue.pk == escalation.queue_id:
                raise ConsoleError("invalid", "The call is already in that queue; choose another one.")
            escalation_transfer(escalation=escalation, queue=queue, now=timezone.now())

        await self.scoped(run)
        return {"type": "ok", "action": "escalation.transfer", "escalation_id": msg.escalation_id}

    async def do_callback_dial(self, msg: EscalationMsg) -> dict:
        """ "Call back": ring the agent, then bridge the customer (only the agent holding the callback)."""

        def run():
            _visible_escalation(msg.escalation_id)
            return callback_dial(escalation_id=msg.escalation_id, agent=self.user, now=timezone.now())

        attempt = await self.scoped(run)
        return {
            "type": "ok",
            "action": "callback.dial",
            "escalation_id": msg.escalation_id,
            "ring": attempt.agent_rings,
        }

    async def do_callback_finish(self, msg: CallbackFinishMsg) -> dict:
        def run():
            _visible_escalation(msg.escalation_id)
            try:
                return callback_finish(
                    escalation_id=msg.escalation_id,
                    agent=self.user,
                    outcome=msg.outcome,
                    notes=msg.notes,
                    now=timezone.now(),
                )
            except ValueError as exc:
                raise ConsoleError("invalid", str(exc)) from exc

        callback = await self.scoped(run)
        return {
            "type": "ok",
            "action": "callback.finish",
            "escalation_id": msg.escalation_id,
            "callback_state": callback.state,
            "due_at": iso(callback.due_at),
        }

    async def do_voicemail_handle(self, msg: VoicemailMsg) -> dict:
        def run():
            voicemail = _visible_voicemail(msg.voicemail_id)
            self._may_act_on(voicemail.tenant_id)
            voicemail_handle(voicemail=voicemail, user=self.user, now=timezone.now())

        await self.scoped(run)
        return {"type": "ok", "action": "voicemail.handle", "voicemail_id": msg.voicemail_id}

    async def do_voicemail_callback(self, msg: VoicemailMsg) -> dict:
        def run():
            voicemail = _visible_voicemail(msg.voicemail_id)
            self._may_act_on(voicemail.tenant_id)
            try:
                return voicemail_call_back(voicemail=voicemail, user=self.user, now=timezone.now())
            except VoicemailAlreadyHandled:
                raise
            except VoicemailError as exc:
                raise ConsoleError("invalid", str(exc)) from exc

        callback = await self.scoped(run)
        return {
            "type": "ok",
            "action": "voicemail.callback",
            "voicemail_id": msg.voicemail_id,
            "callback_id": callback.pk,
            "due_at": iso(callback.due_at),
        }

    def _may_act_on(self, tenant_id: int) -> None:
        # Handling voicemails is agents' work: every role reaching the console may (kept explicit).
        access = self.access.get(tenant_id)
        if access is None or not access.allows(Role.AGENT):
            raise ConsoleError("forbidden", "You cannot act on this business's voicemails.")


# --- the wallboard -------------------------------------------------------------------------------
class WallboardConsumer(_JsonObjectsOnly, TenantScopedConsumer):
    """A supervisor's live figures for one tenant; refreshed (debounced) on every tenant event.

    Server -> client: {"type": "figures", ...wallboard_figures}. Client -> server: {"type": "refresh"}
    (the page sends it every 15 s so waits and the service level stay current) or {"type": "ping"}.
    """

    DEBOUNCE_SECONDS = 0.5

    async def connect_scoped(self) -> None:
        slug = self.scope["url_route"]["kwargs"]["tenant_slug"]
        chosen = next((a for a in self.access.values() if a.slug == slug), None)
        if chosen is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        if not chosen.allows(Role.SUPERVISOR):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.tenant_access = chosen
        self.group = tenant_group(chosen.tenant_id)
        self._refresh: asyncio.Task | None = None
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_figures()

    async def disconnect(self, code: int) -> None:
        task = getattr(self, "_refresh", None)
        if task is not None and not task.done():
            task.cancel()
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def send_figures(self) -> None:
        tenant_id = self.tenant_access.tenant_id
        figures = await self.scoped(
            lambda: wallboard_figures(tenant_id=tenant_id, now=timezone.now()), tenant_ids=[tenant_id]
        )
        await self.send_json({"type": "figures", **figures})

    async def tenant_event(self, message: dict) -> None:
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.ensure_future(self._debounced())

    async def _debounced(self) -> None:
        await asyncio.sleep(self.DEBOUNCE_SECONDS)
        await self.send_figures()

    async def receive_json(self, content: dict, **kwargs: Any) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "refresh":
            await self.send_figures()
        elif kind == "ping":
            await self.send_json({"type": "pong"})
        else:
            await self.send_error("unknown_type", 'Send {"type": "refresh"} or {"type": "ping"}.')
