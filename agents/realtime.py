"""The one door for realtime notifications about live work.

``publish(event_type, payload, tenant_id=..., queue_id=..., agent_ids=...)`` validates the payload
against the event type's schema and sends it to the channel-layer groups ``tenant.<id>``,
``queue.<id>`` and ``agent.<user id>`` once the current transaction commits (never before: a
console must never see an escalation the database does not have). Only ``agents.services`` and
``agents.voicemails`` call it. The layer is at-most-once and only notifies; consoles re-read state from the database.

Group messages have ``type: "tenant.event"`` and carry ``event`` = ``{"type": <event type>, ...}``,
the shape ``tenants.consumers.TenantEventsConsumer.tenant_event`` forwards to browsers.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from typing import Literal

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from pydantic import BaseModel, ConfigDict

from tenants.consumers import tenant_group

logger = logging.getLogger(__name__)


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EscalationWaiting(_Event):
    escalation_id: int
    queue_id: int
    priority: int
    reason_code: str
    reason_text: str
    waiting_since: dt.datetime


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
    message = {"type": "tenant.event", "event": event}
    groups = groups_for(tenant_id=tenant_id, queue_id=queue_id, agent_ids=agent_ids)
    transaction.on_commit(lambda: _send(groups, message))


def _send(groups: list[str], message: dict) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    for group in groups:
        try:
            async_to_sync(layer.group_send)(group, message)
        except Exception:
            # Notifications are best effort; the database already holds the truth.
            logger.warning("realtime publish failed", extra={"group": group, "event": message["event"]["type"]})
