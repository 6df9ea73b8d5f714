"""Writes for live work: escalations, offers and presence.

Every function is keyword-only and runs inside a tenant scope entered by a door (HTTP, API,
Celery, websocket); presence functions touch per-user rows only. State lives in the database;
each change is announced through ``agents.realtime.publish`` after commit.

The claim is one conditional UPDATE (``escalation_accept``): whoever's UPDATE matches the
unclaimed row wins; everyone else gets ``AlreadyTaken``.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Iterable

from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from agents.models import (
    ACTIVE_STATES,
    HELD_STATES,
    UNCLAIMED_STATES,
    AgentProfile,
    Escalation,
    EscalationKind,
    EscalationOffer,
    EscalationState,
    OfferOutcome,
    Presence,
    PresenceState,
)
from agents.realtime import publish
from agents.routing import (
    HEARTBEAT_FRESH,
    eligibility_of,
    eligible_agents,
    has_free_slot,
    needs_phone,
    required_skills,
)
from agents.selectors import waiting_work
from conversations.models import Callback, Conversation
from flows.engine import TransferToQueue
from flows.models import EscalationPolicy, Queue, RoutingMode
from tenants.models import CoverageMode, User
from tenants.scoping import current_tenant_ids, unscoped
from tenants.selectors import tenant_access_for_user
from tenants.tasks import enqueue_on_commit

MISSED_OFFERS_BEFORE_AWAY = 2


class AlreadyTaken(Exception):
    """Someone else accepted this escalation first (or it ended)."""

    def __init__(self, escalation_id: int) -> None:
        super().__init__(
            f"Escalation {escalation_id} was already taken by another agent or has ended; pick another from the queue."
        )
        self.escalation_id = escalation_id


# --- the "taken" marker --------------------------------------------------------------------------------
# When 200 consoles accept the same offer at once, 199 lose. A short-lived marker in the shared cache (set
# after the winning commit, cleared when the escalation waits again) lets a console answer the losers
# without touching the database. It holds the tenant id so that it only ever answers for a business the
# asking agent acts for (anything else goes the database way and gets "not found").
_TAKEN_KEY = "escalation:taken:{id}"
_TAKEN_TTL = 600


# This process's memory of the markers it has read or set, for a few seconds: the hundreds of losing accepts
# of one broadcast that reach the same process are answered from memory (no I/O, so safe on an event loop).
_TAKEN_MEMO_SECONDS = 5.0
_taken_memo: dict[int, tuple[float, int]] = {}  # escalation id -> (monotonic expiry, tenant id)


def _remember_taken(escalation_id: int, tenant_id: int) -> None:
    now = time.monotonic()
    if len(_taken_memo) > 1000:
        for key in [k for k, (until, _) in list(_taken_memo.items()) if until <= now]:  # (a copy: other threads pop)
            _taken_memo.pop(key, None)
    _taken_memo[escalation_id] = (now + _TAKEN_MEMO_SECONDS, tenant_id)


def forget_taken(escalation_id: int | None = None) -> None:
    """The escalation is waiting again (moved to another queue, its agent went offline); None: all of them."""
    if escalation_id is None:
        _taken_memo.clear()
    else:
        _taken_memo.pop(escalation_id, None)


def _mark_taken(escalation: Escalation) -> None:
    key, pk, tenant_id = _TAKEN_KEY.format(id=escalation.pk), escalation.pk, escalation.tenant_id

    def mark() -> None:
        cache.set(key, tenant_id, timeout=_TAKEN_TTL)
        _remember_taken(pk, tenant_id)

    transaction.on_commit(mark)


def _unmark_taken(escalation: Escalation) -> None:
    key, pk = _TAKEN_KEY.format(id=escalation.pk), escalation.pk
    forget_taken(pk)
    cache.delete(key)  # now, and again after commit (an accept racing the move may have set it meanwhile)
    transaction.on_commit(lambda: (cache.delete(key), forget_taken(pk)))


def taken_known(escalation_id: int) -> int | None:
    """``taken_in`` from this process's memory alone (no I/O); None when it does not know."""
    hit = _taken_memo.get(escalation_id)
    return hit[1] if hit is not None and hit[0] > time.monotonic() else None


def taken_in(escalation_id: int) -> int | None:
    """The tenant of an escalation known to be taken (or ended), without the database; None when unknown."""
    if (tenant_id := taken_known(escalation_id)) is not None:
        return tenant_id
    tenant_id = cache.get(_TAKEN_KEY.format(id=escalation_id))
    if tenant_id is not None:
        _remember_taken(escalation_id, tenant_id)
    return tenant_id


# --- escalations -------------------------------------------------------------------------------
def _queue_for(tenant_id: int, name: str) -> Queue:
    queue = Queue.objects.filter(tenant_id=tenant_id, name=name).first()
    if queue is None:
        # A caller must not be dropped because a queue was renamed after publishing.
        policy = EscalationPolicy.objects.filter(tenant_id=tenant_id).select_related("default_queue").first()
        queue = policy.default_queue if policy else None
    if queue is None:
        queue = Queue.objects.filter(tenant_id=tenant_id).order_by("id").first()
    if queue is None:
        raise Queue.DoesNotExist(f"No queue named {name!r} and no default queue; add a queue in the settings.")
    return queue


def _waiting_payload(escalation: Escalation) -> dict:
    from agents.selectors import console_item

    return {
        "escalation_id": escalation.pk,
        "queue_id": escalation.queue_id,
        "priority": escalation.priority,
        "reason_code": escalation.reason_code,
        "reason_text": escalation.reason_text,
        "waiting_since": escalation.created_at,
        "item": console_item(escalation, timezone.now()),
    }


def _enqueue_route(escalation: Escalation) -> None:
    from agents.tasks import escalation_route_task

    enqueue_on_commit(escalation_route_task, tenant_id=escalation.tenant_id, escalation_id=escalation.pk)


def escalation_create(
    *, conversation: Conversation, transfer_action_json: dict, now: dt.datetime | None = None
) -> Escalation:
    """Record a handover to a person (once per conversation while it is live) and start routing it."""
    action = TransferToQueue.model_validate(transfer_action_json)
    now = now or timezone.now()
    existing = Escalation.objects.filter(
        conversation=conversation, state__in=ACTIVE_STATES, kind=EscalationKind.LIVE
    ).first()
    if existing is not None:
        return existing
    queue = _queue_for(conversation.tenant_id, action.queue)
    summary = action.summary
    try:
        with transaction.atomic():
            escalation = Escalation.objects.create(
                tenant_id=conversation.tenant_id,
                conversation=conversation,
                queue=queue,
                reason_code=summary.reason_code[:64],
                reason_text=summary.reason_text[:300],
                priority=min(max(action.priority, 0), 9),
                skills=sorted({str(s) for s in action.skills}),
                summary=summary.model_dump(mode="json"),
                created_at=now,
            )
    except IntegrityError:
        # A concurrent retry of the same webhook created it first.
        return Escalation.objects.get(conversation=conversation, state__in=ACTIVE_STATES, kind=EscalationKind.LIVE)
    publish("escalation.waiting", _waiting_payload(escalation), tenant_id=escalation.tenant_id, queue_id=queue.pk)
    _enqueue_route(escalation)
    return escalation


def _routing_key(escalation: Escalation) -> tuple | None:
    """Escalations with the same key have the same eligible agents at one moment (None: it depends on the
    escalation's own wait, through overflow coverage)."""
    if escalation.queue.overflow_after_seconds is not None:
        return None
    return (escalation.queue_id, frozenset(required_skills(escalation)), needs_phone(escalation))


def escalation_route(
    *, escalation: Escalation, now: dt.datetime, skip_locked: bool = False, nobody: set | None = None
) -> list[EscalationOffer]:
    """Offer an unclaimed escalation: to the longest-idle eligible agent, or to all of them (broadcast).

    ``skip_locked``: a routing pass leaves an escalation another worker is routing right now. ``nobody``:
    a pass's memo of routing keys for which no agent was free (later escalations with the same key are
    skipped in that pass)."""
    with transaction.atomic():
        # Serialises routing of one escalation across workers (a no-op lock on SQLite).
        # of=("self",): lock the escalation only, not its queue and tenant rows (that blocked every write of
        # the business while routing ran, and deadlocked with promising a callback; bench/callbacks_soak.py).
        esc = (
            Escalation.objects.select_for_update(of=("self",), skip_locked=skip_locked)
            .select_related("queue", "tenant")
            .filter(pk=escalation.pk)
            .first()
        )
        if esc is None or esc.state not in UNCLAIMED_STATES:
            return []
        queue = esc.queue
        pending = set(
            EscalationOffer.objects.filter(escalation=esc, outcome=OfferOutcome.PENDING).values_list(
                "agent_id", flat=True
            )
        )
        longest_idle = queue.routing_mode != RoutingMode.BROADCAST
        if longest_idle and pending:
            return []
        eligible = eligible_agents(escalation=esc, now=now)
        candidates = [c for c in eligible if c.user_id not in pending]
        if longest_idle:
            # One offer at a time per person, whichever business it is for (agency agents).
            with unscoped("which agents hold a pending offer in any tenant; only their ids leave"):
                holding_offers = set(
                    EscalationOffer.objects.filter(
                        outcome=OfferOutcome.PENDING, agent_id__in=[c.user_id for c in candidates]
                    ).values_list("agent_id", flat=True)
                )
            tried = Counter(EscalationOffer.objects.filter(escalation=esc).values_list("agent_id", flat=True))
            candidates = sorted(
                (c for c in candidates if c.user_id not in holding_offers),
                key=lambda c: (tried[c.user_id], c.idle_since, c.user_id),
            )[:1]
        if not candidates:
            # Longest idle: everyone eligible holds an offer already; broadcast: nobody is eligible at all
            # (others may still be offered a different escalation, so only then).
            if nobody is not None and (longest_idle or not eligible) and (key := _routing_key(esc)) is not None:
                nobody.add(key)
            return []
        expires = now + dt.timedelta(seconds=queue.offer_timeout_seconds)
        offers = [
            EscalationOffer.objects.create(
                tenant_id=esc.tenant_id, escalation=esc, agent_id=c.user_id, offered_at=now, expires_at=expires
            )
            for c in candidates
        ]
        AgentProfile.objects.filter(user_id__in=[c.user_id for c in candidates]).update(last_offer_at=now)
        if esc.callback_id:
            # On-time reporting: when a callback was first put in front of a person.
            Callback.objects.filter(pk=esc.callback_id, first_offered_at__isnull=True).update(first_offered_at=now)
        updates: dict = {"state": EscalationState.OFFERED, "offered_at": esc.offered_at or now}
        if any(c.coverage_mode == CoverageMode.OVERFLOW for c in candidates):
            updates["overflowed"] = True
        Escalation.objects.filter(pk=esc.pk, state__in=UNCLAIMED_STATES).update(**updates)
        for offer in offers:
            publish(
                "escalation.offered",
                {
                    "escalation_id": esc.pk,
                    "queue_id": queue.pk,
                    "agent_id": offer.agent_id,
                    "expires_at": offer.expires_at,
                },
                tenant_id=esc.tenant_id,
                queue_id=queue.pk,
                agent_ids=[offer.agent_id],
            )
    return offers


def route_for_freed_agent(agent: User) -> None:
    """An agent finished something: offer waiting work of every business they answer for now, rather than
    at the next offer sweep (after commit; one task per business, each in its own scope)."""
    for tenant_id in sorted(tenant_access_for_user(agent)):
        request_routing_pass(tenant_id)


#: How long a requested routing pass that has not started holds off further requests (its message may
#: be lost: then the offer sweep routes meanwhile and the next request after this queues a new pass).
ROUTE_PASS_PENDING_SECONDS = 10


def route_pass_key(tenant_id: int) -> str:
    return f"agents:route-pass-pending:{tenant_id}"


def request_routing_pass(tenant_id: int) -> None:
    """After commit, one routing pass over this business's waiting work (``route_waiting`` task).

    Requests made while a pass is queued and not yet started join it: a burst of accepts or wraps makes
    one pass, not one each (they queued behind one another's row locks; bench/callbacks_soak.py). The
    pass clears the mark when it starts, so a request after that queues another and none is missed."""
    from agents.tasks import route_waiting_task

    def send() -> None:
        if cache.add(route_pass_key(tenant_id), 1, timeout=ROUTE_PASS_PENDING_SECONDS):
            route_waiting_task.apply_async(kwargs={"tenant_id": tenant_id})

    transaction.on_commit(send)


def waiting_work_route(*, tenant_ids: list[int], now: dt.datetime) -> int:
    """Offer every unclaimed escalation of these tenants, in order (priority, then longest waiting)."""
    made = 0
    nobody: set = set()
    for escalation in waiting_work(tenant_ids=tenant_ids, now=now):
        key = _routing_key(escalation)
        if key is not None and key in nobody:
            continue  # no agent free for this queue and skills: the rest of its line waits for one
        made += len(escalation_route(escalation=escalation, now=now, skip_locked=True, nobody=nobody))
    return made


def escalation_accept(*, escalation_id: int, agent: User, now: dt.datetime) -> Escalation:
    """Claim an escalation for ``agent``. Exactly one concurrent caller wins.

    Raises ``Escalation.DoesNotExist`` when the escalation is not visible to the agent (another
    tenant's is indistinguishable from a missing one), ``PermissionDenied`` when the agent may not
    take it now (skills, presence, capacity, coverage), and ``AlreadyTaken`` for everyone who lost.
    """
    escalation = Escalation.objects.select_related("queue", "tenant").get(pk=escalation_id)
    if escalation.tenant_id not in tenant_access_for_user(agent):
        raise Escalation.DoesNotExist(f"No escalation {escalation_id}.")
    if escalation.state not in UNCLAIMED_STATES or escalation.agent_id is not None:
        raise AlreadyTaken(escalation_id)
    voice_leg = needs_agent_leg(escalation)
    if voice_leg:
        agent_endpoint(agent)  # refuses (PermissionDenied, with the fix) before claiming when the agent cannot be rung
    who = eligibility_of(escalation=escalation, user_id=agent.pk, now=now)
    if who is None:
        raise PermissionDenied(
            "You cannot take this escalation now: check that you are available, have the queue's skills "
            "and a free slot, and that your agency's coverage applies."
        )
    claim: dict = {
        "state": EscalationState.ACCEPTED,
        "agent_id": agent.pk,
        "accepted_at": now,
        "via_agency_id": who.via_agency_id,
    }
    if who.coverage_mode == CoverageMode.OVERFLOW:
        claim["overflowed"] = True
    if voice_leg:
        claim.update(dial_attempts=F("dial_attempts") + 1, agent_leg_uuid="")
    with transaction.atomic():
        won = Escalation.objects.filter(pk=escalation.pk, state__in=UNCLAIMED_STATES, agent__isnull=True).update(
            **claim
        )
        if won != 1:
            raise AlreadyTaken(escalation_id)
        _mark_taken(escalation)
        EscalationOffer.objects.filter(
            escalation_id=escalation.pk, agent_id=agent.pk, outcome=OfferOutcome.PENDING
        ).update(outcome=OfferOutcome.ACCEPTED, responded_at=now)
        others = _withdraw_pending(escalation, now=now)
        AgentProfile.objects.filter(user_id=agent.pk).update(missed_offers_in_a_row=0)
        publish(
            "escalation.accepted",
            {"escalation_id": escalation.pk, "queue_id": escalation.queue_id, "agent_id": agent.pk, "accepted_at": now},
            tenant_id=escalation.tenant_id,
            queue_id=escalation.queue_id,
            agent_ids=[agent.pk],
        )
        # Only those whose offers it ends: everyone else learns it from "accepted" (one broadcast per claim, not two).
        _publish_withdrawn(escalation, others, reason="taken", broadcast=False)
        if has_free_slot(agent.pk):
            # Capacity left (chats, callbacks): the next waiting item is offered now, not at the next sweep.
            route_for_freed_agent(agent)
    escalation.refresh_from_db()
    if voice_leg:
        _enqueue_dial(escalation)
    return escalation


def _withdraw_pending(escalation: Escalation, *, now: dt.datetime) -> list[int]:
    pending = EscalationOffer.objects.filter(escalation_id=escalation.pk, outcome=OfferOutcome.PENDING)
    agent_ids = list(pending.values_list("agent_id", flat=True))
    pending.update(outcome=OfferOutcome.WITHDRAWN, responded_at=now)
    return agent_ids


def _publish_withdrawn(
    escalation: Escalation, agent_ids: Iterable[int], *, reason: str, broadcast: bool = True
) -> None:
    agent_ids = list(agent_ids)
    if not agent_ids:
        return
    publish(
        "escalation.withdrawn",
        {"escalation_id": escalation.pk, "queue_id": escalation.queue_id, "reason": reason},
        tenant_id=escalation.tenant_id if broadcast else None,
        agent_ids=agent_ids,
    )


def _reopen_if_unoffered(escalation_id: int) -> bool:
    """An offered escalation with no pending offer left goes back to waiting."""
    has_pending = EscalationOffer.objects.filter(escalation_id=escalation_id, outcome=OfferOutcome.PENDING).exists()
    if has_pending:
        return False
    return bool(
        Escalation.objects.filter(pk=escalation_id, state=EscalationState.OFFERED).update(state=EscalationState.WAITING)
    )


def _lock_escalation(escalation_id: int) -> None:
    """Every write touching an escalation and its offers locks the escalation row first, then offers, then
    agent profiles, the order accept uses (its conditional UPDATE locks the escalation first): opposite
    orders deadlocked offer expiry against accepts under load (bench/callbacks_soak.py)."""
    Escalation.objects.select_for_update(of=("self",)).filter(pk=escalation_id).values_list("pk", flat=True).first()


def escalation_decline(*, escalation: Escalation, agent: User, now: dt.datetime) -> list[EscalationOffer]:
    """The agent turns the offer down; it goes to the next agent. Returns the new offers."""
    with transaction.atomic():
        _lock_escalation(escalation.pk)
        declined = EscalationOffer.objects.filter(
            escalation_id=escalation.pk, agent_id=agent.pk, outcome=OfferOutcome.PENDING
        ).update(outcome=OfferOutcome.DECLINED, responded_at=now)
        if not declined:
            return []
        # Declining is an answer, so it does not count as a missed offer.
        AgentProfile.objects.filter(user_id=agent.pk).update(missed_offers_in_a_row=0)
        _reopen_if_unoffered(escalation.pk)
        return escalation_route(escalation=escalation, now=now)


def offers_expire(*, now: dt.datetime) -> int:
    """Time out due offers in the current scope, re-offer their escalations, and route waiting work.

    An agent who misses ``MISSED_OFFERS_BEFORE_AWAY`` offers in a row is set away. Returns the
    number of offers timed out.
    """
    due = list(
        EscalationOffer.objects.filter(outcome=OfferOutcome.PENDING, expires_at__lte=now).select_related("escalation")
    )
    timed_out = 0
    touched: dict[int, Escalation] = {}
    for offer in due:
        with transaction.atomic():
            _lock_escalation(offer.escalation_id)
            if not EscalationOffer.objects.filter(pk=offer.pk, outcome=OfferOutcome.PENDING).update(
                outcome=OfferOutcome.TIMED_OUT, responded_at=now
            ):
                continue  # another worker got it
            timed_out += 1
            AgentProfile.objects.filter(user_id=offer.agent_id).update(
                missed_offers_in_a_row=F("missed_offers_in_a_row") + 1
            )
            missed = (
                AgentProfile.objects.filter(user_id=offer.agent_id)
                .values_list("missed_offers_in_a_row", flat=True)
                .first()
            )
            _publish_withdrawn(offer.escalation, [offer.agent_id], reason="timed_out")
            if missed is not None and missed >= MISSED_OFFERS_BEFORE_AWAY:
                presence_set(
                    user=User.objects.get(pk=offer.agent_id),
                    state=PresenceState.AWAY,
                    reason=f"missed {missed} offers",
                    now=now,
                )
            _reopen_if_unoffered(offer.escalation_id)
            touched[offer.escalation_id] = offer.escalation
    for escalation in touched.values():
        escalation_route(escalation=escalation, now=now)
    tenant_ids = current_tenant_ids()
    if tenant_ids is None:
        tenant_ids = sorted({e.tenant_id for e in touched.values()})
    waiting_work_route(tenant_ids=tenant_ids, now=now)
    return timed_out


def offers_withdraw_for_agents(*, agent_ids: Iterable[int], now: dt.datetime) -> int:
    """Withdraw pending offers to agents who went offline, and offer that work to someone else."""
    agent_ids = list(agent_ids)
    offers = list(
        EscalationOffer.objects.filter(outcome=OfferOutcome.PENDING, agent_id__in=agent_ids).select_related(
            "escalation"
        )
    )
    withdrawn = 0
    for offer in offers:
        with transaction.atomic():
            _lock_escalation(offer.escalation_id)
            if not EscalationOffer.objects.filter(pk=offer.pk, outcome=OfferOutcome.PENDING).update(
                outcome=OfferOutcome.WITHDRAWN, responded_at=now
            ):
                continue
            withdrawn += 1
            _publish_withdrawn(offer.escalation, [offer.agent_id], reason="agent_offline")
            _reopen_if_unoffered(offer.escalation_id)
        escalation_route(escalation=offer.escalation, now=now)
    return withdrawn


def escalation_connect(*, escalation: Escalation, now: dt.datetime) -> bool:
    """The agent's leg joined the caller (telephony reports it)."""
    return bool(
        Escalation.objects.filter(pk=escalation.pk, state=EscalationState.ACCEPTED).update(
            state=EscalationState.CONNECTED, connected_at=now
        )
    )


def escalation_wrap(
    *, escalation: Escalation, agent: User, disposition: str, notes: str = "", now: dt.datetime | None = None
) -> Escalation:
    """The agent finishes the conversation and records how it went."""
    now = now or timezone.now()
    if escalation.kind == EscalationKind.CALLBACK:
        raise PermissionDenied("Record how the callback went (reached, no answer, ...) to finish it.")
    with transaction.atomic():
        done = Escalation.objects.filter(pk=escalation.pk, agent_id=agent.pk, state__in=HELD_STATES).update(
            state=EscalationState.WRAPPED,
            wrapped_at=now,
            ended_at=now,
            disposition=disposition[:64],
            notes=notes,
        )
        if done != 1:
            raise PermissionDenied("Only the agent handling this escalation can wrap it up, and only once.")
        publish(
            "escalation.wrapped",
            {
                "escalation_id": escalation.pk,
                "queue_id": escalation.queue_id,
                "agent_id": agent.pk,
                "disposition": disposition[:64],
            },
            tenant_id=escalation.tenant_id,
            queue_id=escalation.queue_id,
            agent_ids=[agent.pk],
        )
        route_for_freed_agent(agent)
    escalation.refresh_from_db()
    return escalation


def escalation_transfer(*, escalation: Escalation, queue: Queue, now: dt.datetime | None = None) -> Escalation:
    """Move a live escalation to another queue of the same business; it waits and is routed again."""
    now = now or timezone.now()
    if queue.tenant_id != escalation.tenant_id:
        raise Queue.DoesNotExist("No such queue.")
    with transaction.atomic():
        previous_agent = escalation.agent_id
        moved = Escalation.objects.filter(pk=escalation.pk, state__in=ACTIVE_STATES).update(
            queue=queue,
            state=EscalationState.WAITING,
            agent=None,
            accepted_at=None,
            connected_at=None,
            offered_at=None,
            via_agency=None,
        )
        if not moved:
            raise AlreadyTaken(escalation.pk)
        _unmark_taken(escalation)
        old = Escalation(pk=escalation.pk, tenant_id=escalation.tenant_id, queue_id=escalation.queue_id)
        withdrawn = _withdraw_pending(escalation, now=now)
        if previous_agent:
            withdrawn.append(previous_agent)
        _publish_withdrawn(old, withdrawn, reason="transferred")
        escalation.refresh_from_db()
        publish(
            "escalation.waiting",
            _waiting_payload(escalation),
            tenant_id=escalation.tenant_id,
            queue_id=queue.pk,
        )
        _enqueue_route(escalation)
    return escalation


def escalation_abandon(*, escalation: Escalation, now: dt.datetime | None = None) -> bool:
    """The caller hung up before or while being helped."""
    now = now or timezone.now()
    with transaction.atomic():
        ended = Escalation.objects.filter(pk=escalation.pk, state__in=ACTIVE_STATES).update(
            state=EscalationState.ABANDONED, ended_at=now
        )
        if not ended:
            return False
        notify = _withdraw_pending(escalation, now=now)
        if escalation.agent_id:
            notify.append(escalation.agent_id)
        publish(
            "escalation.withdrawn",
            {"escalation_id": escalation.pk, "queue_id": escalation.queue_id, "reason": "abandoned"},
            tenant_id=escalation.tenant_id,
            queue_id=escalation.queue_id,
            agent_ids=notify,
        )
    return True


# --- presence ----------------------------------------------------------------------------------
def _publish_presence(presence: Presence) -> None:
    payload = {
        "user_id": presence.user_id,
        "state": presence.state,
        "reason": presence.reason,
        "since": presence.since,
    }
    tenant_ids = sorted(tenant_access_for_user(presence.user))
    if not tenant_ids:
        publish("presence.changed", payload, tenant_id=None, agent_ids=[presence.user_id])
    for n, tenant_id in enumerate(tenant_ids):
        publish("presence.changed", payload, tenant_id=tenant_id, agent_ids=[presence.user_id] if n == 0 else ())


def presence_set(*, user: User, state: str, reason: str = "", now: dt.datetime | None = None) -> Presence:
    """Set a person's presence. Becoming available counts as a heartbeat and clears missed offers."""
    state = PresenceState(state)
    now = now or timezone.now()
    with transaction.atomic():
        presence, created = Presence.objects.select_for_update().get_or_create(
            user=user, defaults={"state": state, "since": now}
        )
        changed = created or presence.state != state
        if presence.state != state:
            presence.state = state
            presence.since = now
        presence.reason = reason[:200]
        if state == PresenceState.AVAILABLE:
            presence.last_heartbeat = now
            AgentProfile.objects.filter(user_id=user.pk).update(missed_offers_in_a_row=0)
        elif state == PresenceState.AWAY:
            AgentProfile.objects.filter(user_id=user.pk).update(missed_offers_in_a_row=0)
        presence.save()
        if changed:
            _publish_presence(presence)
    return presence


def presence_heartbeat(*, user: User, now: dt.datetime) -> Presence:
    """The console is still open. Does not change the state (an offline person must choose available)."""
    updated = Presence.objects.filter(user_id=user.pk).update(last_heartbeat=now)
    if not updated:
        Presence.objects.get_or_create(
            user=user, defaults={"state": PresenceState.OFFLINE, "since": now, "last_heartbeat": now}
        )
    return Presence.objects.get(user_id=user.pk)


def presence_sweep(*, now: dt.datetime) -> list[int]:
    """People whose console stopped sending heartbeats for 30 s go offline. Returns their user ids."""
    stale = Presence.objects.exclude(state=PresenceState.OFFLINE).filter(
        Q(last_heartbeat__lt=now - HEARTBEAT_FRESH) | Q(last_heartbeat__isnull=True)
    )
    swept: list[int] = []
    for presence in stale.select_related("user"):
        with transaction.atomic():
            still_stale = Q(last_heartbeat__lt=now - HEARTBEAT_FRESH) | Q(last_heartbeat__isnull=True)
            if not Presence.objects.filter(still_stale, pk=presence.pk, state=presence.state).update(
                state=PresenceState.OFFLINE, since=now, reason="no heartbeat for 30 s"
            ):
                continue
            presence.refresh_from_db()
            _publish_presence(presence)
            swept.append(presence.user_id)
    return swept


# --- voice: the agent's leg and the waiting caller ---------------------------------------------------
AGENT_UNREACHABLE_MESSAGE = (
    "Add a phone number or a Vonage app user to your agent profile before taking calls: "
    "we ring you there to connect you to the caller."
)


def needs_agent_leg(escalation: Escalation) -> bool:
    """A live phone call: accepting it means ringing the agent into the caller's conversation."""
    if escalation.kind != EscalationKind.LIVE:
        return False  # a callback: the agent presses "Call back" (agents.callbacks)
    conversation = escalation.conversation
    return conversation.channel == "voice" and bool(conversation.vonage_uuid)


def agent_endpoint(agent: User):
    """Where to ring ``agent`` (PhoneTarget, else AppUserTarget). PermissionDenied with a readable
    message when the profile has neither (or an unusable phone number)."""
    from telephony.client import AppUserTarget, PhoneTarget
    from telephony.ncco import digits_only

    profile = AgentProfile.objects.filter(user_id=agent.pk).first()
    phone = (profile.phone_number if profile else "").strip()
    app_user = (profile.app_user if profile else "").strip()
    if phone and digits_only(phone):
        return PhoneTarget(phone)
    if app_user:
        return AppUserTarget(app_user)
    if phone:
        raise PermissionDenied(
            f"Your agent profile's phone number {phone!r} is not a valid international number "
            "(e.g. +15555550123); fix it or add a Vonage app user before taking calls."
        )
    raise PermissionDenied(AGENT_UNREACHABLE_MESSAGE)


def _enqueue_dial(escalation: Escalation) -> None:
    from agents.tasks import escalation_dial_task

    enqueue_on_commit(
        escalation_dial_task,
        tenant_id=escalation.tenant_id,
        escalation_id=escalation.pk,
        attempt=escalation.dial_attempts,
    )


def escalation_leg_started(*, escalation: Escalation, attempt: int, leg_uuid: str) -> bool:
    """Remember the agent's leg of this dial attempt (while the escalation is still accepted)."""
    return bool(
        Escalation.objects.filter(
            pk=escalation.pk, state=EscalationState.ACCEPTED, dial_attempts=attempt, agent_leg_uuid=""
        ).update(agent_leg_uuid=leg_uuid[:64])
    )


def escalation_requeue(*, escalation: Escalation, now: dt.datetime, attempt: int | None = None) -> bool:
    """The accepting agent could not be reached (busy, failed, unanswered): the escalation waits again
    and is routed afresh. With ``attempt``, only that dial attempt's failure counts (a late event of an
    older attempt changes nothing)."""
    match = Escalation.objects.filter(pk=escalation.pk, state=EscalationState.ACCEPTED)
    if attempt is not None:
        match = match.filter(dial_attempts=attempt)
    with transaction.atomic():
        previous_agent = match.values_list("agent_id", flat=True).first()
        moved = match.update(
            state=EscalationState.WAITING, agent=None, accepted_at=None, via_agency=None, agent_leg_uuid=""
        )
        if not moved:
            return False
        _unmark_taken(escalation)
        escalation.refresh_from_db()
        if previous_agent:
            _publish_withdrawn(escalation, [previous_agent], reason="agent_offline")
        publish(
            "escalation.waiting",
            _waiting_payload(escalation),
            tenant_id=escalation.tenant_id,
            queue_id=escalation.queue_id,
        )
        _enqueue_route(escalation)
    return True


def escalation_expire(*, escalation: Escalation, now: dt.datetime) -> bool:
    """Nobody took it within the queue's max wait: the escalation ends as expired (the caller is sent
    to voicemail by ``agents.voice``). Only an unclaimed escalation expires."""
    with transaction.atomic():
        ended = Escalation.objects.filter(pk=escalation.pk, state__in=UNCLAIMED_STATES).update(
            state=EscalationState.EXPIRED, ended_at=now
        )
        if not ended:
            return False
        _publish_withdrawn(escalation, _withdraw_pending(escalation, now=now), reason="timed_out")
    return True


def escalation_announced(*, escalation: Escalation, place: int, now: dt.datetime) -> None:
    Escalation.objects.filter(pk=escalation.pk).update(announced_at=now, announced_place=place)
