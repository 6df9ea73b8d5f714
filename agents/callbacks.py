"""Callbacks as live work: dispatch, the agent's "Call back", outcomes, retries, overdue flags, SMS.

Due work lives in ``conversations.Callback`` (``due_at``). Every minute ``callbacks_dispatch`` claims
the due rows (``select_for_update(skip_locked=True)`` on Postgres, so two workers never claim the same
row) and turns each into an attempt offered to agents exactly like an escalation (kind ``callback``,
same queues, offers and claim). Its ``created_at`` is the callback's ``place_since``, so it is served
ahead of work that came in later.

The accepting agent presses "Call back": the telephony client rings the agent first; when they answer
they hear who is being called and the customer is dialled and bridged. The customer is dialled at most
once per attempt: the bridge is part of the agent leg's NCCO and the agent is rung again only after a
ring that never answered. Each ring has its own idempotency key. The agent records the outcome
(reached, no answer, voicemail, wrong number, cancelled); no answer and voicemail retry with backoff
within opening hours, up to the business's attempt limit.

Every function runs inside the tenant scope of the work (entered by the door: task, console, webhook).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from urllib.parse import urlencode

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from agents.models import (
    HELD_STATES,
    UNCLAIMED_STATES,
    Escalation,
    EscalationKind,
    EscalationOffer,
    EscalationState,
    OfferOutcome,
)
from agents.realtime import publish
from agents.services import (
    _waiting_payload,
    agent_endpoint,
    escalation_connect,
    request_routing_pass,
    route_for_freed_agent,
)
from conversations.callbacks import policy_for, retry_due_at, sms_text
from conversations.models import (
    RETRY_OUTCOMES,
    Callback,
    CallbackAttempt,
    CallbackOutcome,
    CallbackState,
    Conversation,
    Status,
)
from tenants.models import User
from tenants.tasks import enqueue_on_commit

logger = logging.getLogger("switchboard.callbacks")

#: Marker on a callback leg's event URL: ``?leg=callback&attempt=<id>&ring=<n>`` (agent) or
#: ``?leg=callback-customer&attempt=<id>&ring=<n>`` (the customer, from the connect action).
AGENT_LEG = "callback"
CUSTOMER_LEG = "callback-customer"
LEG_FAILED = {"busy", "failed", "unanswered", "rejected", "timeout", "cancelled"}
DISPATCH_BATCH = 200
MAX_TRIGGERS = 20  # per business and beat run (dispatch_triggers_schedule)


# --- dispatch ----------------------------------------------------------------------------------------
def _due_rows(now: dt.datetime, limit: int):
    return (
        # of=("self",): lock the callback rows only; PostgreSQL refuses FOR UPDATE on the nullable side of
        # the outer joins that select_related("queue", "conversation") adds.
        Callback.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(state=CallbackState.SCHEDULED, due_at__lte=now)
        .order_by("due_at", "id")[:limit]
    )


def _conversation_for(callback: Callback, now: dt.datetime) -> Conversation:
    """The escalation needs a conversation: the original contact, or a record of the outbound call."""
    if callback.conversation_id:
        return callback.conversation
    conversation = Conversation.objects.create(
        tenant_id=callback.tenant_id,
        channel="voice",
        caller_number=callback.phone,
        started_at=now,
        status=Status.COMPLETED,
        outcome="callback",
    )
    Callback.objects.filter(pk=callback.pk).update(conversation=conversation)
    return conversation


def dispatch_one(*, callback: Callback, now: dt.datetime) -> Escalation:
    """Turn a claimed, due callback into its next attempt, offered to agents (inside the claim's transaction)."""
    number = callback.attempts + 1
    attempt = CallbackAttempt.objects.create(
        tenant_id=callback.tenant_id, callback=callback, number=number, created_at=now
    )
    queue = callback.queue
    if queue is None:
        from agents.services import _queue_for

        queue = _queue_for(callback.tenant_id, "")
    summary = dict(callback.summary or {})
    summary.setdefault("reason_code", "callback")
    summary.setdefault("reason_text", callback.reason or "Call back")
    escalation = Escalation.objects.create(
        tenant_id=callback.tenant_id,
        conversation=_conversation_for(callback, now),
        queue=queue,
        kind=EscalationKind.CALLBACK,
        callback=callback,
        callback_attempt=attempt,
        reason_code="callback",
        reason_text=(f"Call back {callback.name or callback.phone} (attempt {number} of {callback.max_attempts})")[
            :300
        ],
        priority=callback.priority,
        summary=summary,
        created_at=callback.place_since,
    )
    Callback.objects.filter(pk=callback.pk).update(
        state=CallbackState.QUEUED, attempts=number, dispatched_at=now, overdue_at=None
    )
    publish("escalation.waiting", _waiting_payload(escalation), tenant_id=escalation.tenant_id, queue_id=queue.pk)
    return escalation  # offered by callbacks_dispatch's one routing pass over the business's waiting work


def callbacks_dispatch(*, now: dt.datetime, limit: int = DISPATCH_BATCH) -> list[int]:
    """Claim the due callbacks of the current scope and offer them to agents. Returns the escalation ids.

    One transaction per batch: a worker killed mid-batch commits nothing and the rows are due again at
    the next run; rows another worker holds are skipped (Postgres), never claimed twice (the state
    changes from scheduled to queued inside the claim).
    """
    made: list[int] = []
    tenants: set[int] = set()
    with transaction.atomic():
        for callback in list(_due_rows(now, limit).select_related("queue", "conversation")):
            try:
                with transaction.atomic():
                    made.append(dispatch_one(callback=callback, now=now).pk)
                    tenants.add(callback.tenant_id)
            except IntegrityError:
                logger.exception("could not dispatch a callback", extra={"callback_id": callback.pk})
        # One routing pass per business after the batch commits, in queue order (priority, then place in
        # line), rather than one task per callback: a burst due at opening is offered in one go.
        for tenant_id in sorted(tenants):
            request_routing_pass(tenant_id)
    return made


def dispatch_trigger(*, tenant_id: int, due_at: dt.datetime, now: dt.datetime) -> bool:
    """Dispatch this business's callbacks at ``due_at`` rather than on the next beat, when that moment comes
    before the next beat. A short countdown only (at most one beat period): if the message is lost, the
    beat still dispatches the callback, at most one period late. Returns whether a trigger was sent."""
    from agents.tasks import callbacks_dispatch_tenant_task

    wait = (due_at - now).total_seconds()
    if wait > settings.CALLBACK_DISPATCH_SECONDS:
        return False
    # Whole seconds, rounded up: the task must not run before the callback is due.
    countdown = max(0, math.ceil(wait))
    callbacks_dispatch_tenant_task.apply_async(kwargs={"tenant_id": tenant_id}, countdown=countdown or None)
    return True


def dispatch_triggers_schedule(*, now: dt.datetime) -> int:
    """Callbacks of the current scope falling due before the next beat: one trigger per distinct second
    (a burst due at opening is one trigger), at most ``MAX_TRIGGERS`` per run. Returns triggers sent."""
    horizon = now + dt.timedelta(seconds=settings.CALLBACK_DISPATCH_SECONDS)
    upcoming = (
        Callback.objects.filter(state=CallbackState.SCHEDULED, due_at__gt=now, due_at__lte=horizon)
        .order_by("due_at")
        .values_list("tenant_id", "due_at")
    )
    seconds: dict[tuple[int, int], dt.datetime] = {}
    for tenant_id, due_at in upcoming:
        key = (tenant_id, math.ceil((due_at - now).total_seconds()))
        seconds.setdefault(key, due_at)
        if len(seconds) >= MAX_TRIGGERS:
            break
    for (tenant_id, _), due_at in seconds.items():
        dispatch_trigger(tenant_id=tenant_id, due_at=due_at, now=now)
    return len(seconds)


def callbacks_flag_overdue(*, now: dt.datetime) -> list[int]:
    """Callbacks due longer ago than the business's limit and not yet taken by anyone: flag them to
    supervisors once (wallboard, console, reports)."""
    flagged: list[int] = []
    limits: dict[int, dt.timedelta] = {}
    open_rows = Callback.objects.filter(
        state__in=(CallbackState.SCHEDULED, CallbackState.QUEUED), overdue_at__isnull=True, due_at__lt=now
    )
    for callback in open_rows:
        if callback.tenant_id not in limits:
            limits[callback.tenant_id] = dt.timedelta(minutes=policy_for(callback.tenant_id).overdue_after_minutes)
        if now - callback.due_at < limits[callback.tenant_id]:
            continue
        taken = Escalation.objects.filter(callback_id=callback.pk, state__in=HELD_STATES).exists()
        if taken:
            continue
        with transaction.atomic():
            if not Callback.objects.filter(pk=callback.pk, overdue_at__isnull=True).update(overdue_at=now):
                continue
            callback.overdue_at = now
            _publish_changed(callback)
            flagged.append(callback.pk)
    if flagged:
        logger.warning("callbacks overdue", extra={"callback_ids": flagged})
    return flagged


def _publish_changed(callback: Callback) -> None:
    publish(
        "callback.changed",
        {
            "callback_id": callback.pk,
            "state": callback.state,
            "due_at": callback.due_at,
            "attempts": callback.attempts,
            "overdue": callback.overdue_at is not None,
            "last_outcome": callback.last_outcome,
        },
        tenant_id=callback.tenant_id,
    )


# --- the agent's "Call back" --------------------------------------------------------------------------
def _held_callback(escalation_id: int, agent: User) -> Escalation:
    escalation = (
        Escalation.objects.select_related("callback", "callback_attempt", "tenant")
        .filter(pk=escalation_id, kind=EscalationKind.CALLBACK)
        .first()
    )
    if escalation is None:
        raise Escalation.DoesNotExist(f"No callback {escalation_id}.")
    if escalation.agent_id != agent.pk or escalation.state not in HELD_STATES:
        raise PermissionDenied("Accept this callback first; only the agent holding it can call back.")
    return escalation


def callback_dial(*, escalation_id: int, agent: User, now: dt.datetime) -> CallbackAttempt:
    """The agent pressed "Call back": ring them (then the customer). Refused while a ring of this attempt is
    live or after the customer was dialled; a ring that never answered may be retried."""
    escalation = _held_callback(escalation_id, agent)
    agent_endpoint(agent)  # PermissionDenied with the fix when the agent cannot be rung
    attempt = escalation.callback_attempt
    with transaction.atomic():
        rang = CallbackAttempt.objects.filter(
            pk=attempt.pk, customer_status="", agent_leg_status__in=("", "failed")
        ).update(
            agent_rings=F("agent_rings") + 1,
            agent_leg_status="ringing",
            agent_leg_uuid="",
            agent_id=agent.pk,
            dialled_at=attempt.dialled_at or now,
        )
        if not rang:
            raise PermissionDenied("This callback is already being dialled; wait for the call or record the outcome.")
        attempt.refresh_from_db()
        from agents.tasks import callback_dial_task

        enqueue_on_commit(
            callback_dial_task, tenant_id=attempt.tenant_id, attempt_id=attempt.pk, ring=attempt.agent_rings
        )
        _publish_call_state(escalation, leg="agent", status="ringing")
    return attempt


def _leg_url(leg: str, attempt: CallbackAttempt, ring: int) -> str:
    base = settings.SITE_URL.rstrip("/")
    return f"{base}{reverse('vonage-event')}?{urlencode({'leg': leg, 'attempt': attempt.pk, 'ring': ring})}"


def _from_number(callback: Callback) -> str:
    from telephony.models import PhoneNumber

    dialled = callback.conversation.dialled_number if callback.conversation_id else ""
    if dialled and PhoneNumber.objects.filter(tenant_id=callback.tenant_id, number=dialled).exists():
        return dialled
    number = PhoneNumber.objects.filter(tenant_id=callback.tenant_id, active=True).order_by("id").first()
    if number is None:
        raise PermissionDenied("This business has no phone number to call from; add one under Phone numbers.")
    return number.number


def callback_dial_run(*, attempt_id: int, ring: int) -> str | None:
    """Task body: place the call of this ring (idempotent: one call per attempt and ring)."""
    from telephony.client import get_voice_client

    attempt = (
        CallbackAttempt.objects.select_related("callback", "callback__conversation", "callback__tenant", "agent")
        .filter(pk=attempt_id)
        .first()
    )
    if attempt is None:
        return None  # not in this tenant's scope, or gone
    if attempt.agent_leg_uuid or attempt.agent_rings != ring:
        return attempt.agent_leg_uuid or None  # superseded, or already placed by an earlier delivery
    # Claim the ring before calling: a redelivery after a worker died mid-call (acks_late) must not call
    # again, since Vonage may have created the call before the death. The agent can "Ring me again"
    # (a new ring, a new key), and a late answer of this ring is then hung up (callback_leg_event).
    if not CallbackAttempt.objects.filter(pk=attempt.pk, agent_rings=ring, agent_leg_status="ringing").update(
        agent_leg_status="placing"
    ):
        return None
    callback = attempt.callback
    business = callback.tenant.name
    who = callback.name or " ".join(callback.phone)
    result = get_voice_client().call_agent_then_customer(
        idempotency_key=attempt.dial_key,
        to=agent_endpoint(attempt.agent),
        from_number=_from_number(callback),
        customer_number=callback.phone,
        announce=f"Calling back {who} for {business}. Connecting now.",
        event_url=_leg_url(AGENT_LEG, attempt, ring),
        customer_event_url=_leg_url(CUSTOMER_LEG, attempt, ring),
    )
    CallbackAttempt.objects.filter(pk=attempt.pk, agent_rings=ring, agent_leg_uuid="").update(
        agent_leg_uuid=result.uuid[:64]
    )
    CallbackAttempt.objects.filter(pk=attempt.pk, agent_rings=ring, agent_leg_status="placing").update(
        agent_leg_status="ringing"
    )
    return result.uuid


def callback_dial_release(*, attempt_id: int, ring: int) -> None:
    """A temporary failure before Vonage took the call: the retry of the same ring may call (same key)."""
    CallbackAttempt.objects.filter(pk=attempt_id, agent_rings=ring, agent_leg_status="placing").update(
        agent_leg_status="ringing"
    )


def callback_dial_failed(*, attempt_id: int, ring: int, reason: str) -> None:
    """The call could not be placed (Vonage refused, the agent has no phone): let the agent try again."""
    attempt = CallbackAttempt.objects.filter(pk=attempt_id).first()
    if attempt is None:
        return
    with transaction.atomic():
        if CallbackAttempt.objects.filter(
            pk=attempt.pk, agent_rings=ring, agent_leg_status__in=("ringing", "placing")
        ).update(agent_leg_status="failed"):
            escalation = Escalation.objects.filter(callback_attempt_id=attempt.pk).first()
            if escalation is not None:
                _publish_call_state(escalation, leg="agent", status="failed")
    logger.warning("callback call not placed: %s", reason, extra={"attempt_id": attempt_id})


def _publish_call_state(escalation: Escalation, *, leg: str, status: str, suggested: str = "") -> None:
    publish(
        "callback.call_state",
        {
            "escalation_id": escalation.pk,
            "callback_id": escalation.callback_id,
            "leg": leg,
            "status": status[:16],
            "suggested_outcome": suggested,
        },
        tenant_id=escalation.tenant_id,
        agent_ids=[escalation.agent_id] if escalation.agent_id else (),
    )


def callback_leg_event(*, attempt_id: int, ring: int, leg: str, payload: dict) -> None:
    """Status of the agent's leg or the bridged customer's. Stale rings and duplicates change nothing."""
    attempt = CallbackAttempt.objects.filter(pk=attempt_id).first()
    escalation = Escalation.objects.filter(callback_attempt_id=attempt_id).first()
    if attempt is None or escalation is None:
        return
    status = str(payload.get("status") or "")[:16]
    if attempt.agent_rings != ring:
        # An older ring answered late (after "Ring me again"): hang it up before its bridge dials the
        # customer a second time for this attempt.
        if leg == AGENT_LEG and status == "answered" and payload.get("uuid"):
            from agents.voice import _hangup_quietly

            _hangup_quietly(str(payload["uuid"]))
        return
    now = timezone.now()
    if leg == AGENT_LEG:
        if payload.get("uuid") and not attempt.agent_leg_uuid:
            CallbackAttempt.objects.filter(pk=attempt.pk, agent_rings=ring, agent_leg_uuid="").update(
                agent_leg_uuid=str(payload["uuid"])[:64]
            )
        if status == "answered":
            CallbackAttempt.objects.filter(pk=attempt.pk).update(agent_leg_status="answered")
            escalation_connect(escalation=escalation, now=now)
            _publish_call_state(escalation, leg="agent", status="answered")
        elif status in LEG_FAILED and attempt.agent_leg_status in ("ringing", "placing", ""):
            if CallbackAttempt.objects.filter(pk=attempt.pk, agent_rings=ring, customer_status="").update(
                agent_leg_status="failed"
            ):
                _publish_call_state(escalation, leg="agent", status=status)
        elif status == "completed":
            CallbackAttempt.objects.filter(pk=attempt.pk).update(agent_leg_status="completed")
            _publish_call_state(escalation, leg="agent", status="completed")
        return
    # The customer's leg (the connect action's events).
    if status == "answered":
        CallbackAttempt.objects.filter(pk=attempt.pk).update(customer_status="answered", bridged_at=now)
        _publish_call_state(escalation, leg="customer", status="answered", suggested=CallbackOutcome.REACHED)
    elif status in LEG_FAILED or status == "machine":
        CallbackAttempt.objects.filter(pk=attempt.pk, bridged_at__isnull=True).update(customer_status=status)
        _publish_call_state(escalation, leg="customer", status=status, suggested=CallbackOutcome.NO_ANSWER)
    elif status in ("started", "ringing"):
        CallbackAttempt.objects.filter(pk=attempt.pk, customer_status="").update(customer_status=status)
        _publish_call_state(escalation, leg="customer", status=status)


# --- outcome ---------------------------------------------------------------------------------------------
FINAL_STATE = {
    CallbackOutcome.REACHED: CallbackState.COMPLETED,
    CallbackOutcome.WRONG_NUMBER: CallbackState.FAILED,
    CallbackOutcome.CANCELLED: CallbackState.CANCELLED,
}


def callback_finish(
    *, escalation_id: int, agent: User, outcome: str, notes: str = "", now: dt.datetime | None = None
) -> Callback:
    """The agent records how the attempt went; it wraps the work. No answer or voicemail schedule the next
    attempt (backoff, within opening hours) while attempts remain; otherwise the callback closes."""
    now = now or timezone.now()
    try:
        outcome = CallbackOutcome(outcome)
    except ValueError:
        choices = ", ".join(o.value for o in CallbackOutcome)
        raise ValueError(f"outcome: {outcome!r} is not a callback outcome; use one of {choices}.") from None
    escalation = _held_callback(escalation_id, agent)
    callback = escalation.callback
    policy = policy_for(callback.tenant_id)
    with transaction.atomic():
        done = Escalation.objects.filter(pk=escalation.pk, agent_id=agent.pk, state__in=HELD_STATES).update(
            state=EscalationState.WRAPPED,
            wrapped_at=now,
            ended_at=now,
            disposition=f"callback_{outcome.value}"[:64],
            notes=notes,
        )
        if done != 1:
            raise PermissionDenied("Only the agent handling this callback can record its outcome, and only once.")
        CallbackAttempt.objects.filter(pk=escalation.callback_attempt_id).update(
            outcome=outcome, notes=notes, ended_at=now
        )
        retry = outcome in RETRY_OUTCOMES and callback.attempts < callback.max_attempts
        updates: dict = {"last_outcome": outcome, "notes": notes or callback.notes}
        if retry:
            updates.update(
                state=CallbackState.SCHEDULED, due_at=retry_due_at(callback=callback, policy=policy, now=now)
            )
            updates["overdue_at"] = None
        else:
            updates.update(state=FINAL_STATE.get(outcome, CallbackState.FAILED), closed_at=now)
        Callback.objects.filter(pk=callback.pk, state=CallbackState.QUEUED).update(**updates)
        callback.refresh_from_db()
        publish(
            "escalation.wrapped",
            {
                "escalation_id": escalation.pk,
                "queue_id": escalation.queue_id,
                "agent_id": agent.pk,
                "disposition": f"callback_{outcome.value}",
            },
            tenant_id=escalation.tenant_id,
            queue_id=escalation.queue_id,
            agent_ids=[agent.pk],
        )
        _publish_changed(callback)
        route_for_freed_agent(agent)
    return callback


def on_callback_leg_event(marker: dict, payload: dict) -> bool:
    """conversations.hooks.on_leg_event subscriber for the legs of a callback call."""
    from agents.voice import scoped_leg_event

    return scoped_leg_event(
        marker,
        legs=(AGENT_LEG, CUSTOMER_LEG),
        model=CallbackAttempt,
        id_key="attempt",
        try_key="ring",
        handle=lambda row_id, ring, leg: callback_leg_event(attempt_id=row_id, ring=ring, leg=leg, payload=payload),
    )


# --- scheduling side effects (conversations.hooks) ----------------------------------------------------------
def on_callback_scheduled(callback: Callback) -> None:
    """After the commit that promised a call back: a waiting caller who chose it leaves the queue keeping
    their place (the live escalation becomes "callback"), the SMS confirmation is sent, and a callback
    that is already due is dispatched now rather than on the next minute."""
    from agents.tasks import callback_sms_task
    from tenants.scoping import tenant_scope

    now = timezone.now()
    with tenant_scope([callback.tenant_id]):
        if callback.conversation_id:
            _take_place_from_live_escalation(callback, now)
        policy = policy_for(callback.tenant_id)
        if policy.sms_confirmation:
            callback_sms_task.apply_async(kwargs={"tenant_id": callback.tenant_id, "callback_id": callback.pk})
        # Due already: dispatched now; due before the next beat run (which looks ahead only from its own
        # time): dispatched at its due second.
        dispatch_trigger(tenant_id=callback.tenant_id, due_at=callback.due_at, now=now)


def _take_place_from_live_escalation(callback: Callback, now: dt.datetime) -> None:
    live = (
        Escalation.objects.filter(
            conversation_id=callback.conversation_id,
            kind=EscalationKind.LIVE,
            state__in=(*UNCLAIMED_STATES, EscalationState.EXPIRED),
        )
        .order_by("-created_at")
        .first()
    )
    if live is None:
        return
    with transaction.atomic():
        ended = Escalation.objects.filter(pk=live.pk, state__in=(*UNCLAIMED_STATES, EscalationState.EXPIRED)).update(
            state=EscalationState.CALLBACK, ended_at=live.ended_at or now
        )
        if not ended:
            return
        pending = EscalationOffer.objects.filter(escalation_id=live.pk, outcome=OfferOutcome.PENDING)
        agent_ids = list(pending.values_list("agent_id", flat=True))
        pending.update(outcome=OfferOutcome.WITHDRAWN, responded_at=now)
        Callback.objects.filter(pk=callback.pk).update(
            place_since=min(live.created_at, callback.place_since),
            queue_id=live.queue_id,
            priority=max(live.priority, callback.priority),
            summary=live.summary or callback.summary,
        )
        publish(
            "escalation.withdrawn",
            {"escalation_id": live.pk, "queue_id": live.queue_id, "reason": "callback"},
            tenant_id=live.tenant_id,
            queue_id=live.queue_id,
            agent_ids=agent_ids,
        )


def callback_sms_send(*, callback_id: int, now: dt.datetime | None = None) -> str:
    """Text the caller when we will call back, once (claimed by a conditional UPDATE; released when
    Vonage fails so a retry can send it). Returns "sent", "already_sent", "skipped" or "failed"."""
    from telephony.client import TelephonyError, get_voice_client

    now = now or timezone.now()
    callback = Callback.objects.select_related("tenant", "conversation").filter(pk=callback_id).first()
    if callback is None:
        return "skipped"
    policy = policy_for(callback.tenant_id)
    if not policy.sms_confirmation:
        return "skipped"
    if not Callback.objects.filter(pk=callback.pk, sms_sent_at__isnull=True).update(sms_sent_at=now):
        return "already_sent"
    try:
        sender = _from_number(callback)
        get_voice_client().send_sms(
            idempotency_key=f"callback-{callback.pk}-confirmation",
            to=callback.phone,
            from_=sender,
            text=sms_text(callback=callback, tenant=callback.tenant, policy=policy, now=now),
        )
    except TelephonyError as exc:
        Callback.objects.filter(pk=callback.pk).update(sms_sent_at=None, sms_error=str(exc)[:300])
        if exc.retryable:
            raise
        return "failed"
    except PermissionDenied as exc:  # no number to send from
        Callback.objects.filter(pk=callback.pk).update(sms_sent_at=None, sms_error=str(exc)[:300])
        return "failed"
    Callback.objects.filter(pk=callback.pk).update(sms_error="")
    return "sent"
