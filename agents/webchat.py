"""Web chat: the website widget's conversations, run by the same engine and recorded like calls.

A visitor is anonymous. The widget names its ``ChatSite`` by public key; the chat socket
(``agents.chat_consumers``) looks the site up unscoped, checks the page's Origin, and then calls
the functions here inside ``tenant_scope([site.tenant_id])``. Every function below expects that scope.

- A visitor message runs one engine turn (``flows.runtime.run_turn``) on the flow's published version
  and is recorded with ``conversations.services.conversation_record_turn``, exactly like a call's input
  webhook; a transfer therefore creates the escalation through ``conversations.hooks`` and it is routed
  to the same queues as calls.
- After the handover the engine is done: visitor messages are recorded as ``visitor`` turns and sent to
  the accepting agent (group ``agent.<user id>``, the console's); the agent answers with
  ``chat_agent_say``, recorded as an ``agent`` turn and pushed to the visitor (group ``chat.<conversation id>``).
- The visitor's token is signed (conversation id + site id): it resumes that conversation on that site only.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core import signing
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.utils import timezone

from agents.models import ACTIVE_STATES, HELD_STATES, ChatSite, Escalation
from agents.realtime import agent_group, group_send_many
from conversations.models import Channel, Conversation, Lead, Turn
from conversations.services import conversation_open, conversation_record_turn
from flows.engine import (
    Ask,
    CaptureLead,
    ConversationState,
    Event,
    OfferCallback,
    Reason,
    Say,
    TransferToQueue,
    Voicemail,
)
from flows.runtime import compiled_version, run_turn, without_heavy
from tenants.scoping import unscoped

logger = logging.getLogger("switchboard.agents.webchat")

MAX_MESSAGE_CHARS = 1000
TOKEN_SALT = "switchboard.webchat.visitor"
TOKEN_MAX_AGE = 60 * 60 * 24  # a visitor resumes within a day (sessionStorage ends with the tab anyway)

#: Rate limits: per connection a bucket of BURST messages refilled at PER_SECOND, and at most PER_MINUTE;
#: per site (all its visitors, across processes through the Django cache) at most SITE_PER_MINUTE.
RATE_BURST = 5
RATE_PER_SECOND = 1.0
RATE_PER_MINUTE = 60
RATE_SITE_PER_MINUTE = getattr(settings, "CHAT_SITE_MESSAGES_PER_MINUTE", 600)
RATE_IP_CONNECTS_PER_MINUTE = getattr(settings, "CHAT_IP_CONNECTS_PER_MINUTE", 20)
RATE_IP_MESSAGES_PER_MINUTE = getattr(settings, "CHAT_IP_MESSAGES_PER_MINUTE", 120)

TOO_LONG_MESSAGE = f"Sorry, that message is too long. Please keep it under {MAX_MESSAGE_CHARS} characters."
SLOW_DOWN_MESSAGE = "You're sending messages a little fast. Please wait a moment and try again."
TOO_MANY_CHATS_MESSAGE = "Too many chats were opened from your network just now. Please try again in a minute."
INVALID_MESSAGE = "Sorry, we couldn't read that message. Please try again."
UNAVAILABLE_MESSAGE = "Sorry, chat is not available right now. Please try again later."
WAITING_TEXT = "Waiting for an agent. Your messages will be passed on when someone joins."
LEAVE_DETAILS_TEXT = (
    "If you'd like us to get back to you, type your name and a phone number or email here "
    "and we'll pass it to the team."
)
DETAILS_THANKS = "Thank you. We've passed your details to the team and someone will get back to you."
ENDED_TEXT = "This chat has ended. Start a new chat if you need anything else."


# --- origins ---------------------------------------------------------------------------------------
def origin_problem(origin: str) -> str | None:
    """Why ``origin`` is not a valid origin line (None when it is)."""
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{origin!r} is not an origin; write it like https://www.example.com"
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return f"{origin!r} has more than scheme, host and port; write it like https://www.example.com"
    return None


def normalize_origin(origin: str) -> str:
    return (origin or "").strip().rstrip("/").lower()


def origin_allowed(site: ChatSite, origin: str, *, own_origins: set[str] = frozenset()) -> bool:
    """Exact scheme://host[:port] match against the site's list, or one of Switchboard's own origins
    (the demo page and the admin preview are served by Switchboard itself)."""
    origin = normalize_origin(origin)
    if not origin or origin == "null":
        return False
    return origin in site.origins() or origin in {normalize_origin(o) for o in own_origins}


def own_origins(host_header: str) -> set[str]:
    """Switchboard's own origins: SITE_URL, and in DEBUG (``make run``) the host the socket came in on."""
    origins = set()
    site_url = urlsplit(settings.SITE_URL or "")
    if site_url.scheme and site_url.netloc:
        origins.add(f"{site_url.scheme}://{site_url.netloc}")
    if settings.DEBUG and host_header:
        origins |= {f"http://{host_header}", f"https://{host_header}"}
    return origins


# --- sites and tokens --------------------------------------------------------------------------------
def site_for_key(public_key: str) -> ChatSite | None:
    """The ChatSite of a widget key, across all businesses (it is how a visitor finds its business)."""
    if not public_key or len(public_key) > 64:
        return None
    with unscoped("route a chat widget's public key to its business"):
        return (
            ChatSite.objects.select_related("tenant", "flow__published_version")
            .defer(*without_heavy("flow__published_version"))
            .filter(public_key=public_key)
            .first()
        )


def embed_snippet(site: ChatSite) -> str:
    """The one tag a business pastes into its pages. The script's URL is the stable, unhashed one (a hashed
    name would break every customer's page on the next deploy)."""
    base = (settings.SITE_URL or "").rstrip("/")
    static_url = settings.STATIC_URL if settings.STATIC_URL.startswith("/") else "/" + settings.STATIC_URL
    return f'<script src="{base}{static_url}js/widget.js" data-switchboard-key="{site.public_key}" defer></script>'


def visitor_token(site: ChatSite, conversation: Conversation) -> str:
    return signing.dumps({"c": conversation.pk, "s": site.pk}, salt=TOKEN_SALT, compress=True)


def conversation_for_token(site: ChatSite, token: str | None) -> Conversation | None:
    """The chat this token was issued for, only on the same site (and so the same business)."""
    if not token or not isinstance(token, str) or len(token) > 500:
        return None
    try:
        data = signing.loads(token, salt=TOKEN_SALT, max_age=TOKEN_MAX_AGE)
    except signing.BadSignature:
        return None
    if not isinstance(data, dict) or data.get("s") != site.pk:
        return None
    return (
        Conversation.objects.select_related("flow_version")
        .defer(*without_heavy("flow_version"))
        .filter(pk=data.get("c"), tenant_id=site.tenant_id, channel=Channel.CHAT)
        .first()
    )


# --- what the visitor sees ---------------------------------------------------------------------------
def _bot(text: str) -> dict:
    return {"type": "message", "from": "bot", "text": text}


def messages_for(actions: list[Any]) -> list[dict]:
    """The engine's actions as chat messages (Say/Ask texts; the transfer's handover line is its Say)."""
    out: list[dict] = []
    for action in actions:
        if isinstance(action, Say):
            out.append(_bot(action.text))
        elif isinstance(action, Ask):
            out.append(_bot(action.prompt))
        elif isinstance(action, Voicemail | OfferCallback):
            out.append(_bot(action.prompt))
            out.append(_bot(LEAVE_DETAILS_TEXT))
        elif isinstance(action, TransferToQueue):
            out.append({"type": "status", "state": "waiting", "text": WAITING_TEXT})
    return out


def _first_name(user) -> str:
    return (getattr(user, "first_name", "") or "").strip() or "An agent"


def transcript_for(conversation: Conversation) -> list[dict]:
    """The whole chat as the visitor saw it, re-read from the Turn rows (for a reconnect)."""
    messages: list[dict] = []
    agent_seen = False
    for turn in Turn.objects.filter(conversation_id=conversation.pk).order_by("seq"):
        if turn.utterance:
            messages.append({"type": "message", "from": "visitor", "text": turn.utterance})
        if turn.event == "agent":
            if not agent_seen:
                messages.append({"type": "status", "state": "agent", "text": "An agent joined the chat."})
                agent_seen = True
            name = turn.reason if turn.reason_code == "agent_reply" else ""
            messages.append({"type": "message", "from": "agent", "text": turn.reply, "name": name or "Agent"})
            continue
        try:
            from flows.engine import actions_from_json

            messages.extend(messages_for(actions_from_json(turn.actions or [])))
        except Exception:
            if turn.reply:
                messages.append(_bot(turn.reply))
    return messages


def chat_state(conversation: Conversation) -> str:
    """bot | waiting | agent | ended."""
    escalation = Escalation.objects.filter(
        conversation_id=conversation.pk, state__in=ACTIVE_STATES, kind="live"
    ).first()
    if escalation is not None:
        return "agent" if escalation.state in HELD_STATES else "waiting"
    state = ConversationState.from_json(conversation.state) if conversation.state else None
    if state is not None and state.finished and state.outcome not in ("voicemail", "callback"):
        return "ended"
    return "bot"


# --- opening and resuming ------------------------------------------------------------------------------
@dataclass
class Opened:
    conversation: Conversation
    token: str
    resumed: bool
    messages: list[dict] = field(default_factory=list)
    state: str = "bot"


def _apply_greeting(site: ChatSite, actions: list[Any]) -> list[Any]:
    if not site.greeting:
        return actions
    for n, action in enumerate(actions):
        if isinstance(action, Say):
            return [
                *actions[:n],
                action.model_copy(update={"text": site.greeting, "voice_text": None}),
                *actions[n + 1 :],
            ]
    return [
        Say(text=site.greeting, reason=Reason(code="chat_greeting", explanation="The chat site's greeting")),
        *actions,
    ]


def chat_open(*, site: ChatSite, token: str | None = None) -> Opened:
    """Resume the visitor's chat (a valid token of this site) or start a new one with the flow's opening."""
    existing = conversation_for_token(site, token)
    if existing is not None:
        return Opened(
            conversation=existing,
            token=visitor_token(site, existing),
            resumed=True,
            messages=transcript_for(existing),
            state=chat_state(existing),
        )
    version = site.flow.published_version
    if version is None:
        raise LookupError("the chat site's script is not published")
    started = time.perf_counter()
    conversation, _ = conversation_open(tenant_id=site.tenant_id, channel=Channel.CHAT, flow_version_id=version.pk)
    compiled = compiled_version(version)
    turn = run_turn(compiled, None, Event.start(timezone.now(), channel="chat"))
    actions = _apply_greeting(site, turn.actions)
    conversation_record_turn(
        conversation=conversation,
        event_kind="start",
        state=turn.state,
        actions=actions,
        latency_ms=(time.perf_counter() - started) * 1000,
    )
    return Opened(
        conversation=conversation,
        token=visitor_token(site, conversation),
        resumed=False,
        messages=messages_for(actions),
        state=chat_state(conversation),
    )


# --- visitor messages -----------------------------------------------------------------------------------
def _fresh(conversation_id: int) -> Conversation:
    return (
        Conversation.objects.select_related("flow_version")
        .defer(*without_heavy("flow_version"))
        .get(pk=conversation_id)
    )


def _record(conversation_id: int, **kwargs) -> Turn:
    """conversation_record_turn on a freshly locked row (the agent and the visitor may write at once)."""
    for attempt in range(3):
        try:
            with transaction.atomic():
                conversation = Conversation.objects.select_for_update().get(pk=conversation_id)
                return conversation_record_turn(conversation=conversation, **kwargs)
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _state_of(conversation: Conversation) -> ConversationState:
    return ConversationState.from_json(conversation.state) if conversation.state else ConversationState()


def chat_visitor_message(*, conversation_id: int, text: str) -> list[dict]:
    """One visitor message: an engine turn while the AI is answering; after the handover, a message for the
    agent; after a voicemail/callback offer, the visitor's details as a lead. Returns what to show."""
    started = time.perf_counter()
    conversation = _fresh(conversation_id)
    state = _state_of(conversation)
    escalation = Escalation.objects.filter(
        conversation_id=conversation.pk, state__in=ACTIVE_STATES, kind="live"
    ).first()
    if escalation is not None or state.outcome == "escalated":
        turn = _record(conversation.pk, event_kind="visitor", text=text, state=state, actions=[])
        if escalation is not None and escalation.agent_id and escalation.state in HELD_STATES:
            _notify_agent(escalation, turn)
            return []
        if escalation is not None:
            return [{"type": "status", "state": "waiting", "text": WAITING_TEXT}]
        return [{"type": "status", "state": "ended", "text": ENDED_TEXT}]
    if state.finished and state.outcome in ("voicemail", "callback"):
        already = Lead.objects.filter(conversation_id=conversation.pk).exists()
        thanks = DETAILS_THANKS
        if state.outcome == "callback":
            thanks = _chat_callback(conversation, text) or thanks
        actions: list[Any] = [Say(text=thanks, reason=Reason(code="chat_details", explanation="Details left"))]
        if not already:
            lead = CaptureLead(
                fields={"message": text, "channel": "chat", **{k: v for k, v in state.slots.items() if v is not None}},
                reason=Reason(code="chat_details", explanation="The visitor left their details after the offer"),
            )
            actions.insert(0, lead)
        _record(conversation.pk, event_kind="visitor", text=text, state=state, actions=actions)
        return messages_for(actions)
    if state.finished or conversation.flow_version is None:
        _record(conversation.pk, event_kind="visitor", text=text, state=state, actions=[])
        return [{"type": "status", "state": "ended", "text": ENDED_TEXT}]
    compiled = compiled_version(conversation.flow_version)
    event = Event.utterance(text, timezone.now(), channel="chat")
    turn = run_turn(compiled, state, event)
    _record(
        conversation.pk,
        event_kind=event.kind,
        text=text,
        understanding=turn.understanding,
        state=turn.state,
        actions=turn.actions,
        latency_ms=(time.perf_counter() - started) * 1000,
    )
    return messages_for(turn.actions)


_PHONE_IN_TEXT = re.compile(r"(?:\+|00)?\d[\d\s().\-/]{5,20}\d")


def _chat_callback(conversation: Conversation, text: str) -> str | None:
    """After a callback offer in chat, a phone number in the visitor's message promises the callback (due
    from the business calendar, like a caller's). Returns what to tell the visitor, or None."""
    from conversations.callbacks import CallbackError, callback_schedule, when_text
    from conversations.models import OPEN_CALLBACK_STATES, Callback

    if Callback.objects.filter(conversation_id=conversation.pk, state__in=OPEN_CALLBACK_STATES).exists():
        return None
    match = _PHONE_IN_TEXT.search(text or "")
    if match is None:
        return None
    now = timezone.now()
    try:
        callback = callback_schedule(
            tenant_id=conversation.tenant_id,
            phone=match.group(0),
            source="flow",
            conversation=conversation,
            name=text[: match.start()].strip(" ,.-:")[:150],
            reason="Asked for a call back in the web chat",
            now=now,
        )
    except CallbackError:
        return None
    when = when_text(callback.due_at, tz=conversation.tenant.timezone, now=now)
    return f"Thank you. We'll call you back at {callback.phone} {when}."


def _notify_agent(escalation: Escalation, turn: Turn) -> None:
    """The visitor's words reach the agent's console (group ``agent.<id>``) once the turn is committed.

    ``agents.realtime.publish`` has a closed set of schemas, so this sends the console's own message
    shape (``tenant.event``) directly; the seq keeps two identical messages from being de-duplicated.
    """
    event = {
        "type": "chat.message",
        "escalation_id": escalation.pk,
        "conversation_id": escalation.conversation_id,
        "seq": turn.seq,
        "from": "visitor",
        "text": turn.utterance,
        "at": turn.created_at.isoformat() if turn.created_at else None,
    }
    group = agent_group(escalation.agent_id)
    transaction.on_commit(lambda: group_send_many([(group, {"type": "tenant.event", "event": event})]))


# --- the agent's side -------------------------------------------------------------------------------------
def chat_group(conversation_id: int) -> str:
    return f"chat.{conversation_id}"


class NotAChat(Exception):
    pass


def chat_agent_say(*, escalation: Escalation, agent, text: str) -> Turn:
    """The agent handling a chat escalation writes to the visitor: recorded as an ``agent`` turn, then
    pushed to the visitor's socket after commit. PermissionDenied unless ``agent`` holds it live."""
    from django.core.exceptions import PermissionDenied

    text = (text or "").strip()
    if not text:
        raise ValueError("Type a message first.")
    if len(text) > MAX_MESSAGE_CHARS:
        raise ValueError(f"Keep chat messages under {MAX_MESSAGE_CHARS} characters.")
    escalation = Escalation.objects.select_related("conversation").get(pk=escalation.pk)
    if escalation.agent_id != agent.pk or escalation.state not in HELD_STATES:
        raise PermissionDenied("Only the agent handling this chat can write to the visitor, and only while it is live.")
    conversation = escalation.conversation
    if conversation.channel != Channel.CHAT:
        raise NotAChat("This escalation is a phone call, not a chat.")
    name = _first_name(agent)
    first = not Turn.objects.filter(conversation_id=conversation.pk, event="agent").exists()
    say = Say(text=text, reason=Reason(code="agent_reply", explanation=name))
    with transaction.atomic():
        turn = _record(conversation.pk, event_kind="agent", state=_state_of(conversation), actions=[say])
        pushes = []
        if first:
            pushes.append({"type": "status", "state": "agent", "text": f"{name} joined the chat.", "name": name})
        pushes.append({"type": "message", "from": "agent", "text": text, "name": name, "seq": turn.seq})
        group = chat_group(conversation.pk)
        transaction.on_commit(lambda: group_send_many([(group, {"type": "chat.push", "message": m}) for m in pushes]))
    return turn


def chat_agent_joined(*, escalation: Escalation, agent) -> None:
    """Optional: tell the visitor at once that an agent took the chat (the console calls it on accept)."""
    if escalation.conversation.channel != Channel.CHAT:
        return
    name = _first_name(agent)
    message = {"type": "status", "state": "agent", "text": f"{name} joined the chat.", "name": name}
    group = chat_group(escalation.conversation_id)
    transaction.on_commit(lambda: group_send_many([(group, {"type": "chat.push", "message": message})]))


# --- rate limits -------------------------------------------------------------------------------------------
class Bucket:
    """Per connection: BURST messages at once, refilled at PER_SECOND, and at most PER_MINUTE a minute."""

    def __init__(self, burst: int = RATE_BURST, per_second: float = RATE_PER_SECOND, per_minute: int = RATE_PER_MINUTE):
        self.burst, self.per_second, self.per_minute = burst, per_second, per_minute
        self.tokens = float(burst)
        self.updated = time.monotonic()
        self.minute: list[float] = []

    def allow(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now
        self.minute = [t for t in self.minute if now - t < 60]
        if self.tokens < 1 or len(self.minute) >= self.per_minute:
            return False
        self.tokens -= 1
        self.minute.append(now)
        return True


def _within_minute_limit(name: str, limit: int) -> bool:
    """Count one more under ``name`` in the current minute (shared cache: every process); False past limit."""
    key = f"webchat:rate:{name}:{int(time.time() // 60)}"
    cache.add(key, 0, timeout=90)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=90)
        count = 1
    return count <= limit


def site_allows(site: ChatSite, limit: int | None = None) -> bool:
    """Per site (all its visitors, every process): at most ``limit`` messages in the current minute."""
    return _within_minute_limit(site.public_key, RATE_SITE_PER_MINUTE if limit is None else limit)


def ip_allows(ip: str, what: str) -> bool:
    """Per visitor address, across every site and process: chats opened ("connect") and messages ("message")
    a minute, so one address cannot flood a business's queue by opening chat after chat."""
    limit = RATE_IP_CONNECTS_PER_MINUTE if what == "connect" else RATE_IP_MESSAGES_PER_MINUTE
    return _within_minute_limit(f"ip:{what}:{ip or 'unknown'}", limit)


# --- a visitor who leaves while waiting -------------------------------------------------------------
#: A visitor whose every chat tab has been closed this long is gone: their waiting escalation is abandoned
#: (a reload or a flaky connection reconnects well within it and keeps the place).
GONE_AFTER_SECONDS = 60
_SOCKETS_KEY = "webchat:sockets:{conversation_id}"


def visitor_connected(*, conversation_id: int) -> None:
    """A chat socket of this conversation started (several tabs may share one conversation)."""
    key = _SOCKETS_KEY.format(conversation_id=conversation_id)
    cache.add(key, 0, timeout=TOKEN_MAX_AGE)
    cache.incr(key)


def visitor_disconnected(*, tenant_id: int, conversation_id: int) -> None:
    """A chat socket closed; when it was the last one, check again in GONE_AFTER_SECONDS (a short countdown,
    not a long ETA) whether the visitor came back."""
    from agents.tasks import chat_visitor_gone_task

    key = _SOCKETS_KEY.format(conversation_id=conversation_id)
    try:
        left = cache.decr(key)
    except ValueError:
        left = 0
    if left <= 0:
        chat_visitor_gone_task.apply_async(
            kwargs={"tenant_id": tenant_id, "conversation_id": conversation_id}, countdown=GONE_AFTER_SECONDS
        )


def chat_visitor_gone(*, conversation_id: int, now=None) -> bool:
    """No tab came back: an escalation still waiting for an agent is abandoned (nobody is there to help).
    One an agent already holds is left to the agent. Returns True when one was abandoned."""
    from agents.models import UNCLAIMED_STATES
    from agents.services import escalation_abandon

    if (cache.get(_SOCKETS_KEY.format(conversation_id=conversation_id)) or 0) > 0:
        return False
    escalation = Escalation.objects.filter(
        conversation_id=conversation_id, state__in=UNCLAIMED_STATES, kind="live", conversation__channel="chat"
    ).first()
    if escalation is None:
        return False
    return escalation_abandon(escalation=escalation, now=now or timezone.now())
