"""The one door for realtime notifications about live work.

``publish(event_type, payload, tenant_id=..., queue_id=..., agent_ids=...)`` validates the payload
against the event type's schema and sends it to the channel-layer groups ``tenant.<id>``,
``queue.<id>`` and ``agent.<user id>`` once the current transaction commits (never before: a
console must never see an escalation the database does not have). Only ``agents.services`` and
``agents.voicemails`` call it. The layer is at-most-once and only notifies: consoles apply what an event says
when it is enough (static/js/console.js) and re-read their state from the database for the rest, on
(re)connect and every minute or so.

Group messages have ``type: "tenant.event"`` and carry ``event`` = ``{"type": <event type>, ...}``,
the shape ``tenants.consumers.TenantEventsConsumer.tenant_event`` forwards to browsers, and ``text``, the
same event already encoded as JSON (what consumers send, so a broadcast is encoded once, not per socket).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import threading
from collections.abc import Iterable
from typing import Literal

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import transaction
from pydantic import BaseModel, ConfigDict

from tenants.consumers import tenant_group

logger = logging.getLogger(__name__)


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConsoleItem(_Event):
    """The work as the agent console lists it (``agents.selectors.console_item``): a console adds it to its
    waiting list from the event alone, instead of every console re-reading its whole state."""

    escalation_id: int
    tenant_id: int
    tenant_name: str
    queue_id: int
    queue_name: str
    state: str
    priority: int
    reason_code: str
    reason_text: str
    waiting_since: str | None
    wait_seconds: int
    place: int | None
    kind: str
    callback: dict | None


class EscalationWaiting(_Event):
    escalation_id: int
    queue_id: int
    priority: int
    reason_code: str
    reason_text: str
    waiting_since: dt.datetime
    item: ConsoleItem


class EscalationOffered(_Event):
    escalation_id: int
    queue_id: int
    agent_id: int
    expires_at: dt.datetime


class EscalationAccepted(_Event):
    escalation_id: int
    queue_id: int
    agent_id: int
    accepted_at: dt.datetime


class EscalationWrapped(_Event):
    escalation_id: int
    queue_id: int
    agent_id: int
    disposition: str


class EscalationWithdrawn(_Event):
    escalation_id: int
    queue_id: int
    reason: Literal["taken", "abandoned", "transferred", "timed_out", "agent_offline", "callback"]


class PresenceChanged(_Event):
    user_id: int
    state: Literal["available", "busy", "away", "offline"]
    reason: str
    since: dt.datetime


class VoicemailNew(_Event):
    voicemail_id: int
    caller_number: str
    duration_seconds: int | None
    created_at: dt.datetime


class VoicemailTranscribed(_Event):
    voicemail_id: int


class VoicemailHandled(_Event):
    voicemail_id: int
    handled_by: int
    handled_at: dt.datetime
    action: Literal["handled", "callback"]


class CallbackCallState(_Event):
    """The agent's view of a callback call: their phone ringing, the customer ringing, bridged, failed."""

    escalation_id: int
    callback_id: int
    leg: Literal["agent", "customer"]
    status: str
    suggested_outcome: Literal["reached", "no_answer", ""] = ""


class CallbackChanged(_Event):
    """A callback was scheduled again, finished or flagged overdue (supervisors' and agents' lists)."""

    callback_id: int
    state: str
    due_at: dt.datetime
    attempts: int
    overdue: bool
    last_outcome: str


SCHEMAS: dict[str, type[_Event]] = {
    "callback.call_state": CallbackCallState,
    "callback.changed": CallbackChanged,
    "escalation.waiting": EscalationWaiting,
    "escalation.offered": EscalationOffered,
    "escalation.accepted": EscalationAccepted,
    "escalation.wrapped": EscalationWrapped,
    "escalation.withdrawn": EscalationWithdrawn,
    "presence.changed": PresenceChanged,
    "voicemail.new": VoicemailNew,
    "voicemail.transcribed": VoicemailTranscribed,
    "voicemail.handled": VoicemailHandled,
}


def queue_group(queue_id: int) -> str:
    return f"queue.{queue_id}"


def agent_group(user_id: int) -> str:
    return f"agent.{user_id}"


def groups_for(*, tenant_id: int | None, queue_id: int | None = None, agent_ids: Iterable[int] = ()) -> list[str]:
    groups = [tenant_group(tenant_id)] if tenant_id is not None else []
    if queue_id is not None:
        groups.append(queue_group(queue_id))
    groups += [agent_group(a) for a in dict.fromkeys(agent_ids)]
    return groups


def publish(
    event_type: str,
    payload: dict,
    *,
    tenant_id: int | None,
    queue_id: int | None = None,
    agent_ids: Iterable[int] = (),
) -> None:
    """Validate now, send after commit. Raises ValueError for an unknown type or a bad payload.

    ``tenant_id=None`` is only for per-person events (presence of someone with no tenant).
    """
    schema = SCHEMAS.get(event_type)
    if schema is None:
        raise ValueError(f"Unknown realtime event type {event_type!r}; add a schema to agents.realtime.SCHEMAS.")
    event = {"type": event_type, **schema.model_validate(payload).model_dump(mode="json")}
    # Encoded once here rather than by each of the (hundreds of) consoles that forward it.
    message = {"type": "tenant.event", "event": event, "text": json.dumps(event, separators=(",", ":"))}
    groups = groups_for(tenant_id=tenant_id, queue_id=queue_id, agent_ids=agent_ids)
    transaction.on_commit(lambda: _send(groups, message))


def _send(groups: list[str], message: dict) -> None:
    group_send_many([(group, message) for group in groups])


# --- sending from synchronous code ---------------------------------------------------------------------
#: How long synchronous code waits for the layer to take its messages (then logs and goes on).
SEND_TIMEOUT_SECONDS = 5.0
_publisher_lock = threading.Lock()
_publisher: tuple[asyncio.AbstractEventLoop, threading.Thread] | None = None


def _publisher_loop() -> asyncio.AbstractEventLoop:
    """One long-lived event loop per process for sends from synchronous code (Celery tasks, views).

    ``async_to_sync`` from a thread with no event loop builds a new loop per call, and the Redis layers
    keep their connections per loop: every send paid for a new loop and a new Redis connection (3 per
    event, 24 per broadcast offer to 8 agents; bench/callbacks_soak.py). A forked worker process starts
    its own loop (the parent's thread does not survive the fork)."""
    global _publisher
    with _publisher_lock:
        if _publisher is None or not _publisher[1].is_alive():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="realtime-publisher", daemon=True)
            thread.start()
            _publisher = (loop, thread)
        return _publisher[0]


def group_send_many(sends: list[tuple[str, dict]]) -> None:
    """Send these group messages in order, from synchronous code; best effort (the database holds the
    truth and consoles re-read it), so a failure is logged, never raised."""
    layer = get_channel_layer()
    if layer is None or not sends:
        return

    async def send_all() -> None:
        for group, message in sends:
            try:
                await layer.group_send(group, message)
            except Exception:
                event = message.get("event") or {}
                logger.warning(
                    "realtime send failed", extra={"group": group, "event": event.get("type", message["type"])}
                )

    try:
        if isinstance(layer, InMemoryChannelLayer):
            # In-process layer (make run, tests): its queues belong to the consumers' loop; asgiref reaches it.
            async_to_sync(send_all)()
        else:
            asyncio.run_coroutine_threadsafe(send_all(), _publisher_loop()).result(timeout=SEND_TIMEOUT_SECONDS)
    except Exception:
        logger.warning("realtime send failed", extra={"groups": [group for group, _ in sends]})
