"""Callbacks soak: a simulated day of callbacks through a real Celery worker and beat, time accelerated.

    .venv/bin/python bench/callbacks_soak.py                      # defaults: --callbacks 500 --speed 60 (~25 min)
    .venv/bin/python bench/callbacks_soak.py --callbacks 200 --speed 360 --json /tmp/soak.json

Measures the on-time rate of issue 6: the share of callbacks first offered to an agent within 2 minutes
of when they were due, and that none is lost or offered twice for one attempt.

What it does (loopback only, bounded, cleans up after itself in a ``finally``):

1. creates a fresh Postgres database (``switchboard_bench_soak_<pid>``, dropped at the end), migrates it
   and loads 3 businesses in 3 time zones (New York, London, Tokyo) with weekday opening hours, a queue
   each (two longest-idle, one broadcast), a phone number, and ``--agents`` agents each;
2. plans ``--callbacks`` callback requests over one simulated Monday (00:00-24:00 UTC), with a fixed
   seed: asked for overnight and before opening ("as soon as you open": due at opening), asked for while
   open (due at once), and for a chosen time later that day. Retries come from the agents' outcomes
   (no answer / voicemail: the product schedules the next attempt);
3. starts ``celery -A _soak_app worker`` (prefork, ``--concurrency`` 4 as the Procfile) and
   ``celery -A _soak_app beat`` with ``contactcenter.settings.prod`` (local values for its required
   variables, Redis db 13 as broker, cache and channel layer), all on an accelerated clock
   (bench/_clock.py: ``django.utils.timezone.now`` = simulated time; 1 real second = ``--speed``
   simulated seconds). The dispatch beat runs every 60 / speed real seconds, so it still runs every
   simulated minute (``CALLBACK_DISPATCH_SECONDS`` stays 60: its look-ahead is in simulated time), and
   Celery countdowns (the dispatch triggers at a callback's due second, retries) are scaled by
   bench/_clock.py; offer expiry and the presence sweep are scaled too (floor ``--min-interval`` real
   seconds); the other beat entries keep their production periods in real seconds;
4. this process asks for each callback at its simulated time through ``conversations.callbacks.
   callback_schedule`` (its after-commit hooks send the SMS and dispatch-now tasks to the broker, as the
   web process does); an agent-pool process heartbeats for every agent, accepts every offer it sees, presses
   "Call back", answers the legs (as Vonage's events would), talks and records an outcome;
5. at the end of the simulated day it stops everything and reads the database.

Reported: callbacks planned/created, dispatched, first offered within 2 simulated minutes of their first
due time (count, %), p50/p99/max lateness in simulated seconds (split into due -> dispatched and
dispatched -> first offer), the same per attempt (retries included), by kind of request, lost (due and
never dispatched), duplicated (more than one escalation per attempt), and the real run time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import heapq
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter, defaultdict
from pathlib import Path
from zoneinfo import ZoneInfo

import _clock
from _servers import admin_connect, machine, percentiles, prod_env, stop

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
UTC = dt.UTC
WINDOW_START = dt.datetime(2030, 1, 7, 0, 0, tzinfo=UTC)  # a Monday
WINDOW_END = WINDOW_START + dt.timedelta(days=1)
WARMUP = dt.timedelta(minutes=10)  # simulated time before the window, while the processes settle
ON_TIME = dt.timedelta(minutes=2)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")
BUSINESSES = [
    {"slug": "soak-dental", "name": "Soak Dental", "tz": "America/New_York", "hours": ("08:00", "18:00")},
    {"slug": "soak-plumbing", "name": "Soak Plumbing", "tz": "Europe/London", "hours": ("08:00", "17:00")},
    {"slug": "soak-vet", "name": "Soak Vet", "tz": "Asia/Tokyo", "hours": ("10:00", "19:00")},
]
ROUTING = {"soak-dental": "longest_idle", "soak-plumbing": "broadcast", "soak-vet": "longest_idle"}
KINDS = {"overnight": 0.06, "before_opening": 0.09, "asap_open": 0.35, "chosen_time": 0.50}
OUTCOMES = {"reached": 0.72, "no_answer": 0.22, "voicemail": 0.06}


# ================================================================ the plan
def opening(business: dict) -> tuple[dt.datetime, dt.datetime]:
    """The business's Monday opening and closing, in UTC."""
    zone = ZoneInfo(business["tz"])
    day = WINDOW_START.astimezone(zone).date()
    if WINDOW_START.astimezone(zone).hour >= 12:  # the local Monday starts after WINDOW_START (east of UTC)
        day += dt.timedelta(days=1)
    o, c = (dt.time.fromisoformat(t) for t in business["hours"])
    return (
        dt.datetime.combine(day, o, zone).astimezone(UTC),
        dt.datetime.combine(day, c, zone).astimezone(UTC),
    )


def plan(n: int, seed: int) -> list[dict]:
    """n callback requests: who, when asked, what they chose, and when they are due (sorted by asked_at)."""
    rng = random.Random(seed)
    requests = []
    for i in range(n):
        business = BUSINESSES[i % len(BUSINESSES)]
        o, c = opening(business)
        kind = rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
        if kind == "overnight":  # asked last night (before the soak starts): due at opening
            asked = WINDOW_START - dt.timedelta(seconds=rng.uniform(300, 8 * 3600))
            chosen, due = None, o
        elif kind == "before_opening":
            asked = WINDOW_START + dt.timedelta(seconds=rng.uniform(60, (o - WINDOW_START).total_seconds() - 60))
            chosen, due = None, o
        elif kind == "asap_open":
            asked = o + dt.timedelta(seconds=rng.uniform(0, (c - o).total_seconds() - 1800))
            chosen, due = None, asked
        else:  # a chosen time: a quarter hour at least 15 minutes ahead, within opening hours
            asked = WINDOW_START + dt.timedelta(seconds=rng.uniform(60, (c - WINDOW_START).total_seconds() - 3600))
            earliest = max(asked, o) + dt.timedelta(minutes=15)
            quarters = int((c - dt.timedelta(minutes=30) - earliest).total_seconds() // 900)
            start = earliest + dt.timedelta(seconds=(-earliest.timestamp()) % 900)
            chosen = start + dt.timedelta(minutes=15 * rng.randint(0, max(quarters - 1, 0)))
            due = chosen
        requests.append(
            {
                "i": i,
                "slug": business["slug"],
                "kind": kind,
                "asked": asked.isoformat(),
                "chosen": chosen.isoformat() if chosen else None,
                "due": due.isoformat(),
                "phone": f"+1555{3000000 + i:07d}",
            }
        )
    return sorted(requests, key=lambda r: r["asked"])


# ================================================================ setup (this process)
def write_settings(tmp: Path, speed: float, min_interval: float) -> str:
    """prod.py with beat's in-file scheduler (django_celery_beat stores whole seconds) and the two
    routing sweeps scaled to the accelerated clock."""
    lines = [
        "# Production settings for bench/callbacks_soak.py: only beat's scheduler and two periods differ.",
        "from contactcenter.settings.prod import *  # noqa: F403",
        "from contactcenter.settings.prod import CELERY_BEAT_SCHEDULE",
        "",
        'CELERY_BEAT_SCHEDULER = "celery.beat:PersistentScheduler"',
        "CELERY_BEAT_SCHEDULE = {**CELERY_BEAT_SCHEDULE}",
        'for _name in ("agents-offers-expire", "agents-presence-sweep"):',
        "    _entry = CELERY_BEAT_SCHEDULE[_name]",
        f'    CELERY_BEAT_SCHEDULE[_name] = {{**_entry, "schedule": max(_entry["schedule"] / {speed!r}, '
        f"{min_interval!r})}}",
        "# The dispatch beat runs every simulated CALLBACK_DISPATCH_SECONDS (production's 60 s look-ahead",
        "# stays in simulated seconds, as timezone.now() is simulated).",
        '_entry = CELERY_BEAT_SCHEDULE["agents-callbacks-dispatch"]',
        f'CELERY_BEAT_SCHEDULE["agents-callbacks-dispatch"] = {{**_entry, "schedule": _entry["schedule"] / {speed!r}}}',
    ]
    (tmp / "bench_soak_settings.py").write_text("\n".join(lines) + "\n")
    return "bench_soak_settings"


def prepare(args) -> dict:
    """Migrate; the businesses, their calendars, queues, numbers and agents. Returns ids for the others."""
    from django.core.management import call_command

    from agents.models import AgentProfile, Presence, PresenceState
    from flows.models import BusinessHours, Flow, Queue
    from telephony.models import PhoneNumber
    from tenants.models import Membership, Role, Tenant, User
    from tenants.scoping import tenant_scope

    call_command("migrate", verbosity=0, interactive=False)
    tenants, agents = {}, []
    for b, business in enumerate(BUSINESSES):
        tenant = Tenant.objects.create(
            name=business["name"], slug=business["slug"], timezone=business["tz"], status="active"
        )
        tenants[business["slug"]] = tenant.id
        with tenant_scope([tenant.id]):
            BusinessHours.objects.create(tenant=tenant, weekly={d: [list(business["hours"])] for d in WEEKDAYS})
            Queue.objects.create(
                tenant=tenant, name="front-desk", routing_mode=ROUTING[business["slug"]], offer_timeout_seconds=120
            )
            flow = Flow.objects.create(tenant=tenant, name="Main line", start_step="greeting")
            PhoneNumber.objects.create(tenant=tenant, number=f"+1555010{b:04d}", flow=flow)
        for a in range(args.agents):
            user = User(email=f"agent{a:02d}@{business['slug']}.test", full_name=f"Agent {a} of {business['name']}")
            user.set_unusable_password()
            user.save()
            Membership.objects.create(user=user, tenant=tenant, role=Role.AGENT)
            AgentProfile.objects.create(user=user, capacity=args.capacity, phone_number=f"+1555020{b}{a:03d}")
            since = WINDOW_START - WARMUP - dt.timedelta(minutes=a + 1)
            Presence.objects.create(user=user, state=PresenceState.AVAILABLE, since=since, last_heartbeat=since)
            agents.append({"user_id": user.pk, "tenant_id": tenant.id})
    return {"tenants": tenants, "agents": agents}


def ask(request: dict, tenant_id: int, now: dt.datetime | None = None):
    """The caller asks for a callback (as the voice flow / voicemail page / staff do)."""
    from conversations.callbacks import callback_schedule
    from tenants.scoping import tenant_scope

    chosen = dt.datetime.fromisoformat(request["chosen"]) if request["chosen"] else None
    with tenant_scope([tenant_id]):
        return callback_schedule(
            tenant_id=tenant_id,
            phone=request["phone"],
            source="flow",
            name=f"Caller {request['i']}",
            preference="at" if chosen else "asap",
            requested_for=chosen,
            reason=f"soak {request['kind']}",
            now=now,
        )


# ================================================================ the agent pool (a process of its own)
def first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [""])[0][:90]


def run_pool(config_path: str) -> int:
    """Heartbeat every agent; accept every offer seen; ring, answer, talk, record an outcome."""
    _clock.install()
    import django

    django.setup()
    from django.core.exceptions import PermissionDenied

    from agents.callbacks import callback_dial, callback_finish, on_callback_leg_event
    from agents.models import Escalation, EscalationOffer, OfferOutcome, Presence, PresenceState
    from agents.services import AlreadyTaken, escalation_accept, escalation_decline, presence_set
    from conversations.models import CallbackAttempt, CallbackState
    from tenants.models import User
    from tenants.scoping import tenant_scope, unscoped

    config = json.loads(Path(config_path).read_text())
    rng = random.Random(config["seed"] + 1)
    end = dt.datetime.fromisoformat(config["end"])
    tenant_of = {a["user_id"]: a["tenant_id"] for a in config["agents"]}
    ids = list(tenant_of)
    users = {u.pk: u for u in User.objects.filter(pk__in=ids)}
    stats: Counter = Counter()
    retries: list[dict] = []
    errors: Counter = Counter()
    stop = threading.Event()

    def heartbeat() -> None:
        # The console heartbeats every 10 s; freshness is 30 simulated seconds (0.125 real s at 240x).
        while not stop.is_set():
            try:
                with unscoped("soak: agents' heartbeats"):
                    Presence.objects.filter(user_id__in=ids).update(last_heartbeat=_clock.sim_now())
            except Exception as exc:
                errors[f"heartbeat: {type(exc).__name__}: {first_line(exc)}"] += 1
            stop.wait(config["heartbeat_real_s"])

    threading.Thread(target=heartbeat, daemon=True).start()
    actions: list = []  # (simulated time, seq, action, escalation id, agent id)
    seq = iter(range(10**9))
    last_presence_check = 0.0
    print("POOL READY", flush=True)
    while _clock.sim_now() < end:
        now = _clock.sim_now()
        try:
            if time.monotonic() - last_presence_check > 2 * config["poll_real_s"]:
                last_presence_check = time.monotonic()
                with unscoped("soak: agents swept offline or set away come back"):
                    gone = list(
                        Presence.objects.filter(user_id__in=ids)
                        .exclude(state=PresenceState.AVAILABLE)
                        .values_list("user_id", "state")
                    )
                for user_id, state in gone:
                    stats[f"presence_back_from_{state}"] += 1
                    presence_set(user=users[user_id], state=PresenceState.AVAILABLE, now=now)
            with unscoped("soak: the pool's pending offers"):
                pending = list(
                    EscalationOffer.objects.filter(outcome=OfferOutcome.PENDING, agent_id__in=ids).values_list(
                        "escalation_id", "agent_id", "tenant_id"
                    )
                )
            for escalation_id, agent_id, tenant_id in pending:
                try:
                    with tenant_scope([tenant_id]):
                        escalation_accept(escalation_id=escalation_id, agent=users[agent_id], now=now)
                    stats["accepted"] += 1
                    when = now + dt.timedelta(seconds=rng.uniform(10, 30))
                    heapq.heappush(actions, (when, next(seq), "dial", escalation_id, agent_id))
                except AlreadyTaken:
                    stats["lost_race"] += 1  # broadcast: someone else took it first
                except PermissionDenied:
                    # At capacity (broadcast offers several at once): decline, as the console's button does.
                    with tenant_scope([tenant_id]):
                        escalation = Escalation.objects.filter(pk=escalation_id).first()
                        if escalation is not None:
                            escalation_decline(escalation=escalation, agent=users[agent_id], now=now)
                    stats["declined_at_capacity"] += 1
                except Exception as exc:
                    errors[f"accept: {type(exc).__name__}: {first_line(exc)}"] += 1
            while actions and actions[0][0] <= now:
                _, _, action, escalation_id, agent_id = heapq.heappop(actions)
                agent, tenant_id = users[agent_id], tenant_of[agent_id]
                try:
                    with tenant_scope([tenant_id]):
                        if action == "dial":
                            callback_dial(escalation_id=escalation_id, agent=agent, now=now)
                            stats["dialled"] += 1
                            when = now + dt.timedelta(seconds=rng.uniform(5, 15))
                            heapq.heappush(actions, (when, next(seq), "legs", escalation_id, agent_id))
                        elif action == "legs":
                            attempt = CallbackAttempt.objects.filter(escalation__pk=escalation_id).first()
                            outcome = rng.choices(list(OUTCOMES), weights=list(OUTCOMES.values()))[0]
                            marker = {"attempt": str(attempt.pk), "ring": str(attempt.agent_rings)}
                            on_callback_leg_event({**marker, "leg": "callback"}, {"status": "answered"})
                            customer = {"reached": "answered", "no_answer": "unanswered", "voicemail": "machine"}
                            on_callback_leg_event({**marker, "leg": "callback-customer"}, {"status": customer[outcome]})
                            talk = rng.uniform(60, 240) if outcome == "reached" else rng.uniform(30, 60)
                            when = now + dt.timedelta(seconds=talk)
                            heapq.heappush(actions, (when, next(seq), f"finish:{outcome}", escalation_id, agent_id))
                        else:
                            outcome = action.split(":", 1)[1]
                            callback = callback_finish(
                                escalation_id=escalation_id, agent=agent, outcome=outcome, now=now
                            )
                            stats[f"outcome_{outcome}"] += 1
                            if callback.state == CallbackState.SCHEDULED:
                                retries.append(
                                    {
                                        "callback_id": callback.pk,
                                        "number": callback.attempts + 1,
                                        "due": callback.due_at.isoformat(),
                                    }
                                )
                except Exception as exc:  # counted and reported; the pool goes on like a person would
                    errors[f"{action.split(':')[0]}: {type(exc).__name__}: {first_line(exc)}"] += 1
        except Exception as exc:
            errors[f"loop: {type(exc).__name__}: {first_line(exc)}"] += 1
        time.sleep(config["poll_real_s"])
    stop.set()
    Path(config["out"]).write_text(json.dumps({"stats": stats, "retries": retries, "errors": errors}))
    print("POOL DONE", flush=True)
    return 0


# ================================================================ processes
def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=open(log, "wb"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def analyse(setup: dict, requests: list[dict], created: dict[int, int], pool: dict) -> dict:
    from django.db.models import Count, Min

    from agents.models import Escalation, EscalationOffer
    from conversations.models import Callback, CallbackAttempt
    from tenants.scoping import unscoped

    judged_before = WINDOW_END - ON_TIME  # due after this had less than 2 minutes to be offered
    kind_of = {created[r["i"]]: r["kind"] for r in requests if r["i"] in created}
    slug_of = {tenant_id: slug for slug, tenant_id in setup["tenants"].items()}
    with unscoped("soak analysis"):
        callbacks = {c.pk: c for c in Callback.objects.filter(tenant_id__in=setup["tenants"].values())}
        attempts = {
            (a.callback_id, a.number): a for a in CallbackAttempt.objects.filter(callback_id__in=list(callbacks))
        }
        per_attempt = Counter(
            dict(
                Escalation.objects.filter(callback_id__in=list(callbacks))
                .values_list("callback_attempt_id")
                .annotate(n=Count("id"))
                .values_list("callback_attempt_id", "n")
            )
        )
        escalation_of = dict(
            Escalation.objects.filter(callback_id__in=list(callbacks)).values_list("callback_attempt_id", "id")
        )
        first_offer = dict(
            EscalationOffer.objects.filter(escalation_id__in=list(escalation_of.values()))
            .values("escalation_id")
            .annotate(first=Min("offered_at"))
            .values_list("escalation_id", "first")
        )
    late, to_dispatch, to_offer = [], [], []
    by_kind: dict[str, list[float]] = defaultdict(list)
    by_business: dict[str, list[float]] = defaultdict(list)
    lost, never_offered, on_time, judged = [], [], 0, 0
    for pk, callback in callbacks.items():
        if callback.first_due_at > judged_before:
            continue
        judged += 1
        first = attempts.get((pk, 1))
        if first is None:
            lost.append(pk)
            continue
        if callback.first_offered_at is None:
            never_offered.append(pk)
            continue
        lateness = (callback.first_offered_at - callback.first_due_at).total_seconds()
        late.append(lateness)
        by_kind[kind_of.get(pk, "?")].append(lateness)
        by_business[f"{slug_of[callback.tenant_id]} ({ROUTING[slug_of[callback.tenant_id]]})"].append(lateness)
        to_dispatch.append((first.created_at - callback.first_due_at).total_seconds())
        to_offer.append((callback.first_offered_at - first.created_at).total_seconds())
        on_time += lateness <= ON_TIME.total_seconds()
    # Every attempt, retries included: the due time of attempt n > 1 is what callback_finish scheduled.
    due_of = {(pk, 1): c.first_due_at for pk, c in callbacks.items()}
    for retry in pool.get("retries", []):
        due_of[(retry["callback_id"], retry["number"])] = dt.datetime.fromisoformat(retry["due"])
    attempt_late, attempts_lost, attempts_judged, attempts_on_time, retries_after_window = [], [], 0, 0, 0
    for key, due in due_of.items():
        if due > judged_before:
            retries_after_window += key[1] > 1
            continue
        attempts_judged += 1
        attempt = attempts.get(key)
        if attempt is None:
            attempts_lost.append(key)
            continue
        offered = first_offer.get(escalation_of.get(attempt.pk))
        if offered is None:
            continue
        seconds = (offered - due).total_seconds()
        attempt_late.append(seconds)
        attempts_on_time += seconds <= ON_TIME.total_seconds()
    duplicated = {k: n for k, n in per_attempt.items() if n > 1}
    extra_escalations = sum(
        1 for pk, c in callbacks.items() if sum(1 for (cb, _n) in attempts if cb == pk) != c.attempts
    )
    states = Counter(c.state for c in callbacks.values())
    return {
        "callbacks_planned": len(requests),
        "callbacks_created": len(callbacks),
        "judged": judged,
        "dispatched": sum(1 for pk in callbacks if (pk, 1) in attempts),
        "on_time": on_time,
        "on_time_pct": round(100 * on_time / judged, 2) if judged else None,
        "lateness_s": percentiles(late),
        "due_to_dispatched_s": percentiles(to_dispatch),
        "dispatched_to_first_offer_s": percentiles(to_offer),
        "lateness_by_kind_s": {k: percentiles(v) for k, v in sorted(by_kind.items())},
        "late_by_kind": {k: sum(1 for x in v if x > ON_TIME.total_seconds()) for k, v in sorted(by_kind.items())},
        "lateness_by_business_s": {k: percentiles(v) for k, v in sorted(by_business.items())},
        "late_by_business": {
            k: sum(1 for x in v if x > ON_TIME.total_seconds()) for k, v in sorted(by_business.items())
        },
        "lost": len(lost),
        "lost_ids": lost[:20],
        "never_offered": len(never_offered),
        "duplicated_attempts": len(duplicated),
        "attempt_count_mismatch": extra_escalations,
        "attempts_judged": attempts_judged,
        "attempts_on_time": attempts_on_time,
        "attempts_on_time_pct": round(100 * attempts_on_time / attempts_judged, 2) if attempts_judged else None,
        "attempt_lateness_s": percentiles(attempt_late),
        "attempts_lost": len(attempts_lost),
        "retries_due_after_the_window": retries_after_window,
        "states_at_end": dict(states),
    }


def task_durations(folder: Path, soak_seconds: float, processes: int) -> dict:
    """Per task: runs and run times (real s), from the worker processes' signal logs (bench/_soak_app.py)."""
    runs: dict[str, list[float]] = defaultdict(list)
    for log in folder.glob("tasks-*.log"):
        for line in log.read_text(errors="replace").splitlines():
            name, _start, seconds = line.split()
            runs[name].append(float(seconds))
    busy = sum(sum(v) for v in runs.values())
    return {
        "busy_share_of_processes": round(busy / (processes * soak_seconds), 3) if soak_seconds else None,
        "by_task": {
            name: {**percentiles([1000 * x for x in values]), "total_s": round(sum(values), 1)}
            for name, values in sorted(runs.items(), key=lambda kv: -sum(kv[1]))
        },
    }


def report(result: dict) -> None:
    r = result
    print()
    print(f"Callbacks soak — {r['machine']}")
    print(f"  command: {r['command']}")
    print(
        f"  simulated {WINDOW_START:%a %Y-%m-%d %H:%M} - {WINDOW_END:%a %H:%M} UTC at x{r['speed']:g} "
        f"(dispatch every {60 / r['speed']:.3f} real s = 1 simulated minute); real run time {r['wall_seconds']} s "
        f"(soak {r['soak_seconds']} s)"
    )
    print(
        f"  callbacks: {r['callbacks_created']} created of {r['callbacks_planned']} planned; "
        f"{r['judged']} due inside the window; {r['dispatched']} dispatched"
    )
    print(f"  first offered within 2 simulated minutes of due: {r['on_time']} of {r['judged']} = {r['on_time_pct']}%")
    lat = r["lateness_s"]
    print(f"  lateness (first offer - first due), simulated s: {lat}")
    print(f"    due -> dispatched: {r['due_to_dispatched_s']}")
    print(f"    dispatched -> first offer: {r['dispatched_to_first_offer_s']}")
    for kind, p in r["lateness_by_kind_s"].items():
        print(f"    {kind:15s} late (> 2 min) {r['late_by_kind'][kind]:3d} of {p}")
    for business, p in r["lateness_by_business_s"].items():
        print(f"    {business:28s} late (> 2 min) {r['late_by_business'][business]:3d} of {p}")
    print(
        f"  every attempt (retries included): {r['attempts_on_time']} of {r['attempts_judged']} on time = "
        f"{r['attempts_on_time_pct']}%; lateness {r['attempt_lateness_s']}; "
        f"{r['retries_due_after_the_window']} retries due after the window"
    )
    print(
        f"  lost (due, never dispatched): {r['lost']} callbacks, {r['attempts_lost']} attempts; "
        f"dispatched but never offered: {r['never_offered']}; duplicated (>1 escalation per attempt): "
        f"{r['duplicated_attempts']}; attempt count mismatches: {r['attempt_count_mismatch']}"
    )
    print(f"  states at the end: {r['states_at_end']}")
    print(f"  agent pool: {r['pool_stats']}; errors: {r['pool_errors'] or 'none'}")
    print(f"  requester: {r['requester']}")
    print(f"  broker backlog (messages waiting, sampled every 0.5 real s): {r['broker_backlog']}; beat: {r['beat']}")
    print(f"  what waited in the broker (counted every 5 s of backlog > 50): {r['backlog_tasks']}")
    print(f"  peak backlog by simulated hour (UTC, where > 10): {r['backlog_by_hour']}")
    tasks = r["worker_tasks"]
    print(f"  worker: busy {tasks['busy_share_of_processes']} of its processes; run times (real ms):")
    for name, p in tasks["by_task"].items():
        print(f"    {name:40s} {p}")
    print(f"  worker/beat log: {r['log_errors']}")
    print(f"  load average before {r['load_before']}, after {r['load_after']} (other jobs on the box count)")


# ================================================================ main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pool", help=argparse.SUPPRESS)
    parser.add_argument("--callbacks", type=int, default=500, help="callback requests over the day (default 500)")
    parser.add_argument(
        "--speed",
        type=float,
        default=60.0,
        help="simulated seconds per real second (default 60: faster, and a 20 s offer timeout is shorter than "
        "the agent pool takes to answer on 2 cores)",
    )
    parser.add_argument("--agents", type=int, default=8, help="agents per business (default 8)")
    parser.add_argument("--capacity", type=int, default=4, help="callbacks an agent may hold at once (default 4)")
    parser.add_argument(
        "--min-interval", type=float, default=0.25, help="floor of the scaled beat periods, real s (default 0.25)"
    )
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument(
        "--concurrency", type=int, default=4, help="worker processes (default 4, as the Procfile's CELERY_CONCURRENCY)"
    )
    parser.add_argument("--worker-log-level", default="WARNING", help="the Celery worker's -l (default WARNING)")
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432", help="server URL, no database")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13", help="an empty Redis db (flushed at the end)")
    parser.add_argument("--keep-logs", help="copy the worker/beat/pool logs to this directory")
    parser.add_argument("--json", dest="json_out", help="also write the figures to this JSON file")
    args = parser.parse_args()
    if args.pool:
        return run_pool(args.pool)
    if not (1 <= args.callbacks <= 5000 and 10 <= args.speed <= 2000 and 1 <= args.agents <= 100):
        parser.error("--callbacks 1..5000, --speed 10..2000, --agents 1..100 (this is a bounded benchmark)")

    import redis

    broker = redis.Redis.from_url(args.redis, socket_connect_timeout=2)
    if broker.dbsize():
        parser.error(f"{args.redis} is not empty: the soak flushes its Redis db at the end; pick an empty one")
    tmp = Path(tempfile.mkdtemp(prefix="switchboard-soak-"))
    db_name = f"switchboard_bench_soak_{os.getpid()}"
    prefix = f"switchboard-bench-soak-{os.getpid()}"
    env = prod_env(
        settings_module=write_settings(tmp, args.speed, args.min_interval),
        tmp=tmp,
        port=8000,
        database_url=f"{args.postgres.rstrip('/')}/{db_name}",
        redis_url=args.redis,
        prefix=prefix,
    )
    env.update(
        {
            "PYTHONPATH": os.pathsep.join([str(tmp), str(BENCH), str(ROOT)]),
            "CALLBACK_DISPATCH_SECONDS": "60",
            "LOG_LEVEL": "WARNING",
            "SOAK_TASK_TIMES": str(tmp),
        }
    )
    procs: list[subprocess.Popen] = []
    started = time.monotonic()
    result: dict = {
        "machine": machine(),
        "command": " ".join(["python", *sys.argv]),
        "speed": args.speed,
        "load_before": os.getloadavg(),
    }
    try:
        with admin_connect(args.postgres) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{db_name}"')
        os.environ.update(env)
        sys.path[:0] = [str(tmp), str(ROOT)]
        _clock.install()  # unconfigured: real time until the soak starts
        import django

        django.setup()
        print(f"migrating {db_name} and loading {len(BUSINESSES)} businesses ...", flush=True)
        setup = prepare(args)
        requests = plan(args.callbacks, args.seed)
        created: dict[int, int] = {}
        overnight = [r for r in requests if dt.datetime.fromisoformat(r["asked"]) < WINDOW_START]
        for request in overnight:  # asked last night, before this soak: the rows are there, due at opening
            created[request["i"]] = ask(
                request, setup["tenants"][request["slug"]], dt.datetime.fromisoformat(request["asked"])
            ).pk
        print(
            f"{len(requests)} callbacks planned ({len(overnight)} asked overnight); starting worker, beat and agents",
            flush=True,
        )

        boot = 12.0
        env["SOAK_CLOCK"] = _clock.configure(WINDOW_START - WARMUP, time.time() + boot, args.speed)
        os.environ["SOAK_CLOCK"] = env["SOAK_CLOCK"]
        pool_out = tmp / "pool.json"
        pool_config = tmp / "pool-config.json"
        pool_config.write_text(
            json.dumps(
                {
                    "agents": setup["agents"],
                    "end": WINDOW_END.isoformat(),
                    "seed": args.seed,
                    "out": str(pool_out),
                    "heartbeat_real_s": min(0.025, 10 / args.speed),
                    "poll_real_s": min(0.025, 6 / args.speed),
                }
            )
        )
        celery = [sys.executable, "-m", "celery", "-A", "_soak_app"]
        procs.append(
            start(
                [
                    *celery,
                    "worker",
                    "-l",
                    args.worker_log_level,
                    "-c",
                    str(args.concurrency),
                    "-P",
                    "prefork",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                ],
                env,
                tmp / "worker.log",
            )
        )
        procs.append(start([*celery, "beat", "-l", "WARNING", "-s", str(tmp / "beat-schedule")], env, tmp / "beat.log"))
        pool = start([sys.executable, str(Path(__file__)), "--pool", str(pool_config)], env, tmp / "pool.log")
        procs.append(pool)

        # The broker's backlog, sampled: a worker that cannot keep up shows here first.
        backlog: list[int] = []
        sampling = threading.Event()

        waiting_tasks: Counter = Counter()
        backlog_by_hour: dict[int, int] = defaultdict(int)

        def sample() -> None:
            while not sampling.wait(0.5):
                try:
                    backlog.append(int(broker.llen("celery")))
                    hour = _clock.sim_now().hour
                    backlog_by_hour[hour] = max(backlog_by_hour[hour], backlog[-1])
                    if backlog[-1] > 50 and len(backlog) % 10 == 0:  # what is waiting, every 5 s of backlog
                        for raw in broker.lrange("celery", 0, -1):
                            waiting_tasks[json.loads(raw)["headers"]["task"]] += 1
                except Exception:
                    pass

        threading.Thread(target=sample, daemon=True).start()

        # The requester: each caller asks at their simulated time (this process, as the web process would).
        lag: list[float] = []
        failures: Counter = Counter()
        t_soak = time.monotonic()
        for n, request in enumerate(r for r in requests if r["i"] not in created):
            lag.append(_clock.sleep_until(dt.datetime.fromisoformat(request["asked"])))
            try:
                created[request["i"]] = ask(request, setup["tenants"][request["slug"]]).pk
            except Exception as exc:  # the web request would have failed: the caller got no promise
                where = next(
                    (
                        f"{f.filename.rsplit('/', 2)[-2]}/{f.name}:{f.lineno}"
                        for f in reversed(traceback.extract_tb(exc.__traceback__))
                        if "/work/" in f.filename and ".venv" not in f.filename
                    ),
                    "?",
                )
                failures[f"{type(exc).__name__} at {where}: {first_line(exc)}"] += 1
            if n % 100 == 0:
                print(f"  {_clock.sim_now():%H:%M} simulated: {len(created)} callbacks asked for", flush=True)
            for proc in procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"{proc.args[3:5]} exited with {proc.returncode}")
        _clock.sleep_until(WINDOW_END)
        print(f"  {_clock.sim_now():%a %H:%M} simulated: the day is over; stopping", flush=True)
        pool.wait(timeout=60)
        stop(procs, 20, kill_group=True)
        sampling.set()
        result["soak_seconds"] = round(time.monotonic() - t_soak, 1)
        pool_data = (
            json.loads(pool_out.read_text()) if pool_out.exists() else {"stats": {}, "retries": [], "errors": {}}
        )
        result.update(analyse(setup, requests, created, pool_data))
        result["pool_stats"] = pool_data["stats"]
        result["pool_errors"] = pool_data["errors"]
        result["requester"] = {"asked": len(created), "failures": dict(failures), "lag_s": percentiles(lag)}
        result["broker_backlog"] = {**percentiles(backlog), "samples_over_10": sum(1 for b in backlog if b > 10)}
        result["backlog_tasks"] = dict(waiting_tasks.most_common())
        result["worker_tasks"] = task_durations(tmp, result["soak_seconds"], args.concurrency)
        result["backlog_by_hour"] = {
            f"{hour:02d}h": peak for hour, peak in sorted(backlog_by_hour.items()) if peak > 10
        }
        result["beat"] = {"callback_dispatch_real_s": 60.0 / args.speed, "min_interval_real_s": args.min_interval}
        result["log_errors"] = {
            log.name: {
                "tracebacks": log.read_text(errors="replace").count("Traceback"),
                "errors": log.read_text(errors="replace").count('"level": "ERROR"'),
            }
            for log in sorted(tmp.glob("*.log"))
        }
        result["wall_seconds"] = round(time.monotonic() - started, 1)
        result["load_after"] = os.getloadavg()
        report(result)
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(result, indent=2, default=str))
        ok = result["lost"] == 0 and result["duplicated_attempts"] == 0 and result["attempts_lost"] == 0
        return 0 if ok else 1
    except BaseException:
        for log in sorted(tmp.glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-25:]
            print(f"--- last lines of {log.name}:", *tail, sep="\n", file=sys.stderr)
        raise
    finally:
        stop(procs, 20, kill_group=True)
        if args.keep_logs:
            keep = Path(args.keep_logs)
            keep.mkdir(parents=True, exist_ok=True)
            for log in tmp.glob("*.log"):
                (keep / log.name).write_bytes(log.read_bytes())
        try:
            from django.db import connections

            connections.close_all()
        except Exception:
            pass
        with admin_connect(args.postgres) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        broker.flushdb()
        broker.close()
        for path in sorted(tmp.glob("*")):
            path.unlink()
        tmp.rmdir()


if __name__ == "__main__":
    sys.exit(main())
