"""Live agents on the phone: escalations from voice transfers, ringing the accepting agent into the
caller's conversation, the waiting caller's place in line, voicemail past the queue's max wait, and
abandonment when the caller hangs up.

``agents`` sits above ``conversations`` and ``telephony``: it subscribes to ``conversations.hooks``
(registered in ``AgentsConfig.ready()``) and uses the telephony client; neither imports this module.
Every entry point takes ids or a committed row and enters its own tenant scope.
"""

from __future__ import annotations

import datetime as dt
import logging
from urllib.parse import urlencode

from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from agents.models import UNCLAIMED_STATES, Escalation, EscalationKind, EscalationState
from agents.services import (
    agent_endpoint,
    escalation_abandon,
    escalation_announced,
    escalation_connect,
    escalation_create,
    escalation_expire,
    escalation_leg_started,
    escalation_requeue,
)
from conversations.models import Conversation, Outcome
from tenants.scoping import tenant_scope, unscoped

logger = logging.getLogger("switchboard.agents.voice")

#: Marker on the agent leg's event URL: ``?leg=agent&escalation=<id>&attempt=<n>``.
AGENT_LEG = "agent"
#: A waiting caller hears their place again after this long even when it did not change.
ANNOUNCE_EVERY = dt.timedelta(seconds=60)
#: Agent-leg statuses that mean the agent was not reached.
AGENT_LEG_FAILED = {"busy", "failed", "unanswered", "rejected", "timeout", "cancelled"}
VOICEMAIL_APOLOGY = "We're sorry, everyone on our team is still busy."
MAX_WAIT_OFFER = "We're sorry, everyone on our team is still busy."
AFTER_HOURS_OFFER = "We're closed right now and nobody is available to take your call."
#: Seconds before a caller who escalated after hours hears the callback offer (the handover line plays first).
AFTER_HOURS_OFFER_DELAY = 3


# --- subscriptions (conversations.hooks) ---------------------------------------------------------------
def on_conversation_escalated(conversation: Conversation, transfer_action_json: dict) -> None:
    """The engine handed a conversation to a person: record the escalation (which publishes and routes).
    A caller who reaches us while closed with nobody covering is offered a callback a moment later (once
    the handover line has played), instead of waiting on hold for nobody."""
    with tenant_scope([conversation.tenant_id]):
        escalation = escalation_create(conversation=conversation, transfer_action_json=transfer_action_json)
        if conversation.channel == "voice" and conversation.vonage_uuid and closed_and_uncovered(escalation):
            from agents.tasks import escalation_offer_callback_task

            escalation_offer_callback_task.apply_async(
                kwargs={"tenant_id": escalation.tenant_id, "escalation_id": escalation.pk, "source": "after_hours"},
                countdown=AFTER_HOURS_OFFER_DELAY,
            )


def on_conversation_ended(conversation: Conversation) -> None:
    """The caller hung up: an escalation nobody is talking to yet is abandoned (and a ringing agent leg,
    whose conversation is now empty, is hung up). A call the AI handled alone has nothing to abandon: the
    handover that creates an escalation sets the conversation's escalation fields in the same transaction,
    so such calls (most of them) end without a query here."""
    if not (conversation.escalation_reason or conversation.outcome == Outcome.ESCALATED):
        return
    now = timezone.now()
    with tenant_scope([conversation.tenant_id]):
        pending = Escalation.objects.filter(
            conversation_id=conversation.pk,
            state__in=(*UNCLAIMED_STATES, EscalationState.ACCEPTED),
            kind=EscalationKind.LIVE,
        )
        for escalation in pending:
            leg = escalation.agent_leg_uuid
            if escalation_abandon(escalation=escalation, now=now) and leg:
                _hangup_quietly(leg)


def scoped_leg_event(marker: dict, *, legs: tuple[str, ...], model, id_key: str, try_key: str, handle) -> bool:
    """The door for status events of legs we dialled ourselves: the event URL's marker names the kind of leg,
    the row (``id_key``) and the try (``try_key``); the row's tenant scopes ``handle(row_id, try, leg)``.
    Returns False for a leg of another kind (another subscriber's), True once handled or dropped."""
    leg = marker.get("leg")
    if leg not in legs:
        return False
    try:
        row_id, number = int(marker.get(id_key, "")), int(marker.get(try_key, ""))
    except ValueError:
        logger.warning("leg event with a malformed marker", extra={"marker": marker})
        return True
    with unscoped("a dialled leg's event names its row; that row's tenant scopes the rest"):
        tenant_id = model.objects.filter(pk=row_id).values_list("tenant_id", flat=True).first()
    if tenant_id is None:
        return True
    with tenant_scope([tenant_id]):
        handle(row_id, number, leg)
    return True


def on_agent_leg_event(marker: dict, payload: dict) -> bool:
    """A status event of an agent leg we dialled into a caller's conversation."""
    return scoped_leg_event(
        marker,
        legs=(AGENT_LEG,),
        model=Escalation,
        id_key="escalation",
        try_key="attempt",
        handle=lambda row_id, attempt, leg: agent_leg_event(escalation_id=row_id, attempt=attempt, payload=payload),
    )


# --- the agent's leg ---------------------------------------------------------------------------------
def agent_leg_event_url(escalation: Escalation, attempt: int) -> str:
    from telephony.services import base_url

    query = urlencode({"leg": AGENT_LEG, "escalation": escalation.pk, "attempt": attempt})
    return f"{base_url()}{reverse('vonage-event')}?{query}"


def dial_idempotency_key(escalation: Escalation, attempt: int) -> str:
    return f"escalation-{escalation.pk}-agent-{escalation.agent_id}-attempt-{attempt}"


def agent_dial(*, escalation_id: int, attempt: int) -> str | None:
    """Ring the accepting agent into the caller's named conversation (inside the tenant's scope).

    Idempotent: one call per escalation, agent and attempt (the client de-duplicates on the key and a
    leg already recorded for this attempt is not dialled again). Returns the leg uuid, or None when
    there is nothing (left) to dial. Raises ``TelephonyError`` from the client (the task decides).
    """
    from telephony.client import get_voice_client

    escalation = Escalation.objects.select_related("conversation").filter(pk=escalation_id).first()
    if escalation is None or escalation.state != EscalationState.ACCEPTED or escalation.dial_attempts != attempt:
        return None  # taken back, ended, or a newer attempt superseded this one
    if escalation.agent_leg_uuid:
        return escalation.agent_leg_uuid
    try:
        target = agent_endpoint(escalation.agent)
    except Exception:
        logger.warning("accepting agent cannot be rung; back to the queue", extra={"escalation_id": escalation.pk})
        escalation_requeue(escalation=escalation, now=timezone.now(), attempt=attempt)
        return None
    ctx = caller_voice_context(escalation.conversation)
    result = get_voice_client().call_into_conversation(
        idempotency_key=dial_idempotency_key(escalation, attempt),
        to=target,
        from_number=ctx.from_number or escalation.conversation.dialled_number,
        conversation_name=ctx.conversation_name,
        event_url=agent_leg_event_url(escalation, attempt),
    )
    escalation_leg_started(escalation=escalation, attempt=attempt, leg_uuid=result.uuid)
    return result.uuid


def agent_leg_event(*, escalation_id: int, attempt: int, payload: dict) -> None:
    """answered -> connected; busy/failed/unanswered/... -> back to waiting and routed again.
    Events of an older attempt, or after the escalation moved on, change nothing."""
    escalation = Escalation.objects.filter(pk=escalation_id).first()
    if escalation is None or escalation.dial_attempts != attempt:
        return
    status = str(payload.get("status") or "")
    leg_uuid = str(payload.get("uuid") or "")
    if escalation.agent_leg_uuid and leg_uuid and leg_uuid != escalation.agent_leg_uuid:
        logger.warning("agent leg event for another leg", extra={"escalation_id": escalation.pk})
        return
    now = timezone.now()
    if leg_uuid and not escalation.agent_leg_uuid:
        escalation_leg_started(escalation=escalation, attempt=attempt, leg_uuid=leg_uuid)
    if status == "answered":
        escalation_connect(escalation=escalation, now=now)
    elif status in AGENT_LEG_FAILED:
        escalation_requeue(escalation=escalation, now=now, attempt=attempt)


# --- the waiting caller ------------------------------------------------------------------------------
def caller_voice_context(conversation: Conversation):
    """The caller's VoiceContext, built the way the webhooks build it (same conversation name, hold
    music, recording URL, language and fallback)."""
    from flows.models import FlowVersion
    from telephony.models import PhoneNumber
    from telephony.services import voice_context

    number = PhoneNumber.objects.filter(number=conversation.dialled_number).first()
    definition = {}
    if conversation.flow_version_id:  # the script's language and voice, never its megabyte model
        definition = (
            FlowVersion.objects.filter(pk=conversation.flow_version_id).values_list("definition", flat=True).first()
        ) or {}
    return voice_context(conversation, number, definition.get("language") or "en-US", definition.get("voice_style"))


def closed_and_uncovered(escalation: Escalation, *, now: dt.datetime | None = None) -> bool:
    """After hours (the tenant's calendar), no agency coverage that answers then, and nobody eligible now:
    the caller would wait for nobody."""
    from agents.routing import eligible_agents, tenant_is_closed
    from conversations.callbacks import policy_for
    from tenants.models import Coverage, CoverageMode

    now = now or timezone.now()
    if not tenant_is_closed(escalation.tenant, now):  # the cached calendar first: no query while open
        return False
    if not policy_for(escalation.tenant_id).offer_after_hours:
        return False
    if Coverage.objects.filter(
        tenant_id=escalation.tenant_id, active=True, mode__in=(CoverageMode.ALWAYS, CoverageMode.AFTER_HOURS)
    ).exists():
        return False
    return not eligible_agents(escalation=escalation, now=now)


def offer_callback_to_caller(*, escalation: Escalation, now: dt.datetime, source: str, ctx=None) -> bool:
    """Take a waiting caller out of the queue: offer a callback (press 1) or a voicemail; without a number
    to call back (withheld) or when the business turned the offer off, straight to voicemail. The
    escalation expires (nobody took it); if the caller chooses the callback it becomes "callback" and
    keeps its place (``agents.callbacks.on_callback_scheduled``). Returns True when the caller was moved."""
    from conversations.callbacks import policy_for
    from telephony.client import get_voice_client
    from telephony.ncco import apology_ncco, callback_offer_ncco
    from telephony.services import callback_choice_url

    conversation = escalation.conversation
    ctx = ctx or caller_voice_context(conversation)
    policy = policy_for(escalation.tenant_id)
    wanted = policy.offer_on_max_wait if source == "max_wait" else policy.offer_after_hours
    if wanted and conversation.caller_number:
        message = MAX_WAIT_OFFER if source == "max_wait" else AFTER_HOURS_OFFER
        url = callback_choice_url(conversation, source=source, fallback_number=ctx.fallback_number or "")
        ncco = callback_offer_ncco(ctx, message=message, choice_url=url)
    else:
        ncco = apology_ncco(ctx, message=VOICEMAIL_APOLOGY, fallback_number="", record_url=ctx.record_url)
    with transaction.atomic():
        if not escalation_expire(escalation=escalation, now=now):
            return False
        # Inside the transaction: if Vonage refuses, the escalation stays waiting for the next run.
        get_voice_client().transfer(uuid=conversation.vonage_uuid, ncco=ncco)
    return True


def _hangup_quietly(uuid: str) -> None:
    from telephony.client import get_voice_client

    try:
        get_voice_client().hangup(uuid=uuid)
    except Exception:
        logger.warning("could not hang up a leg", extra={"vonage_uuid": uuid}, exc_info=True)


def waiting_voice_escalations():
    """Unclaimed escalations of live calls in the current scope, in the order they will be served per queue."""
    return (
        Escalation.objects.filter(state__in=UNCLAIMED_STATES, kind=EscalationKind.LIVE, conversation__channel="voice")
        .exclude(conversation__vonage_uuid__isnull=True)
        .exclude(conversation__vonage_uuid="")
        .filter(conversation__ended_at__isnull=True)
        .select_related("queue", "conversation")
        .order_by("queue_id", "-priority", "created_at", "id")
    )


def queue_announce(*, now: dt.datetime) -> dict[str, int]:
    """For every caller waiting in the current scope: past the queue's max wait, voicemail (and the
    escalation expires); otherwise their place in line, when it changed or a minute has passed.
    Returns counts {"announced": n, "expired": m}."""
    from telephony.client import get_voice_client
    from telephony.ncco import queue_announcement_ncco

    client = get_voice_client()
    counts = {"announced": 0, "expired": 0}
    places: dict[int, int] = {}
    for escalation in list(waiting_voice_escalations()):
        conversation = escalation.conversation
        expired = now - escalation.created_at >= dt.timedelta(seconds=escalation.queue.max_wait_seconds)
        if not expired:
            place = places[escalation.queue_id] = places.get(escalation.queue_id, 0) + 1
        try:
            ctx = caller_voice_context(conversation)
            if expired or closed_and_uncovered(escalation, now=now):
                source = "max_wait" if expired else "after_hours"
                if offer_callback_to_caller(escalation=escalation, now=now, source=source, ctx=ctx):
                    counts["expired"] += 1
                continue
            due = (
                escalation.announced_place != place
                or escalation.announced_at is None
                or now - escalation.announced_at >= ANNOUNCE_EVERY
            )
            if due:
                client.transfer(uuid=conversation.vonage_uuid, ncco=queue_announcement_ncco(place, ctx))
                escalation_announced(escalation=escalation, place=place, now=now)
                counts["announced"] += 1
        except Exception:
            # One caller's failure must not silence everyone else in line.
            logger.exception("queue announcement failed", extra={"escalation_id": escalation.pk})
    return counts
