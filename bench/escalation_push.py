"""Escalation push: M agent consoles on 2 ASGI processes, K escalations, latency and the claim race.

    .venv/bin/python bench/escalation_push.py                      # defaults: --agents 200 --escalations 50
    .venv/bin/python bench/escalation_push.py --agents 50 --escalations 10 --json /tmp/push.json

What it does (loopback only, bounded, cleans up after itself in a `finally`):

1. creates a fresh Postgres database (`switchboard_bench_push_<pid>`, dropped at the end), migrates it and
   loads one business with M agents (memberships, agent profiles with room for every escalation,
   presence "available") and a logged-in session per agent (written straight into the session table);
2. starts 2 daphne processes with production settings (contactcenter.settings.prod with local values for
   its required variables, SECURE_SSL_REDIRECT=False), Redis as the channel layer under a bench-only
   prefix (its keys are deleted at the end);
3. connects the M consoles (`/ws/console/`, session cookie, same Origin), split evenly over the 2
   processes, from `--fleets` client processes (asyncio + autobahn, which daphne already depends on: no
   extra package); each console heartbeats every 10 s like the browser's console.js;
4. creates K escalations one after another in this process through the real service
   (`agents.services.escalation_create` on a web-chat conversation, so no phone leg is dialled), with
   routing run inline (Celery eager) exactly as the worker's task would run it (longest-idle: one
   offer). Every realtime event is timestamped in this process when its transaction's on-commit hook
   sends it (`agents.realtime._send` is wrapped), and every console timestamps its receipt: same
   machine, same clock;
5. the claim race: as soon as a console receives `escalation.offered`, it sends `offer.accept` for it.
   All M consoles race for every escalation; the next escalation starts once every console has had its
   answer (or after --round-timeout). Otherwise each console reads what static/js/console.js reads: a
   snapshot on connect, a snapshot 250 ms after an event about its own work (an offer to it, its own
   accept), one every 45-75 s, and nothing for events it applies itself (new waiting work, others' offers,
   work taken or withdrawn, a lost claim).

Reported: p50/p90/p99/max from commit to receipt for `escalation.waiting` (the escalation's own commit)
and `escalation.offered` (the routing transaction's commit), per console and event; also "offered" from
the escalation's commit (routing included); lost events (a console that never got one), duplicated
events (a console that got one twice), winners per escalation (must be exactly 1), what the losers were
told, and the database's view (one accepted escalation per row, one agent each).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

from _servers import (  # noqa: E402 (bench/ is on sys.path)
    admin_connect,
    clear_redis,
    cpu_seconds,
    cpu_used,
    free_port,
    machine,
    percentiles,
    prod_env,
    start_servers,
    stop,
    wait_healthy,
)

ROOT = Path(__file__).resolve().parent.parent
HEARTBEAT_S = 10.0
REFRESH_S = 60.0  # console.js's REFRESH_MS


# ================================================================ the client fleet (no Django here)
def run_fleet(config_path: str) -> int:
    """One client process: its share of the consoles. Prints READY, then ROUND <id> lines; writes
    receipts to the output file when it reads STOP on stdin."""
    from autobahn.asyncio.websocket import WebSocketClientFactory, WebSocketClientProtocol

    config = json.loads(Path(config_path).read_text())
    consoles = config["consoles"]  # [{"idx", "user_id", "session", "port"}]
    total = len(consoles)
    receipts: list[list] = []  # [console idx, event type, escalation id, agent id, t]
    answers: list[list] = []  # [console idx, escalation id, "ok"|error code, t]
    other: Counter = Counter()
    done_for: dict[int, set[int]] = defaultdict(set)  # escalation id -> consoles with an answer
    ready = {"n": 0}
    closed: list = []
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    all_ready = asyncio.Event()

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    class Console(WebSocketClientProtocol):
        def onOpen(self):  # noqa: N802 - autobahn's names
            self.me = self.factory.me
            self.snapshots = 0
            self.raced: set[int] = set()
            self.settling: int | None = None
            self.heartbeat()  # at once, like console.js on open: presence stays fresh from the start

        def heartbeat(self):
            self.send({"type": "heartbeat"})
            self.hb = loop.call_later(HEARTBEAT_S, self.heartbeat)

        def send(self, message: dict) -> None:
            self.sendMessage(json.dumps(message).encode())

        def request_snapshot(self):
            # As static/js/console.js: re-read the state 250 ms after the last event that needs it.
            if getattr(self, "snap_timer", None):
                self.snap_timer.cancel()
            self.snap_timer = loop.call_later(0.25, lambda: self.send({"type": "snapshot"}))

        def refresh(self):
            # As console.js: a snapshot every 45-75 s whatever happened (the layer is at-most-once).
            self.send({"type": "snapshot"})
            self.refresher = loop.call_later(REFRESH_S * random.uniform(0.75, 1.25), self.refresh)

        def onMessage(self, payload, is_binary):  # noqa: N802
            t = time.time()
            message = json.loads(payload)
            kind = message.get("type")
            idx = self.me["idx"]
            if kind in ("escalation.waiting", "escalation.offered"):
                esc = message["escalation_id"]
                receipts.append([idx, kind, esc, message.get("agent_id"), t])
                # console.js adds waiting work from the event's item and marks others' offers in place; only
                # an offer to this agent makes it re-read its state (the offer's countdown and details).
                if kind == "escalation.offered" and message.get("agent_id") == self.me["user_id"]:
                    self.request_snapshot()
                if kind == "escalation.offered" and esc not in self.raced:
                    self.raced.add(esc)
                    self.send({"type": "offer.accept", "escalation_id": esc, "ref": esc})
            elif kind == "snapshot":
                self.snapshots += 1
                if self.snapshots == 1:
                    ready["n"] += 1
                    if ready["n"] == total:
                        all_ready.set()
                    self.refresher = loop.call_later(REFRESH_S * random.uniform(0.5, 1.5), self.refresh)
                if self.settling is not None:
                    # The snapshot the server sends after a won claim: this console is settled.
                    esc, self.settling = self.settling, None
                    self.settled(esc)
            elif (
                kind in ("ok", "error") and message.get("action", "offer.accept") == "offer.accept" and "ref" in message
            ):
                esc = int(message["ref"])
                answers.append([idx, esc, "ok" if kind == "ok" else message.get("code"), t])
                if kind == "ok":
                    self.settling = esc  # the server sends the winner a snapshot next
                else:
                    # "already_taken": console.js takes the work off its lists; nothing to re-read.
                    self.settled(esc)
            else:
                other[str(kind)] += 1
                if (
                    kind in ("escalation.accepted", "escalation.wrapped")
                    and message.get("agent_id") == self.me["user_id"]
                ):
                    self.request_snapshot()  # this agent's own work changed (console.js does the same)
                if kind == "escalation.withdrawn" and message.get("reason") not in ("taken", "abandoned"):
                    self.request_snapshot()  # still unclaimed somewhere: console.js re-reads

        def settled(self, esc: int) -> None:
            idx = self.me["idx"]
            done_for[esc].add(idx)
            if len(done_for[esc]) == total:
                say(f"ROUND {esc}")

        def onClose(self, was_clean, code, reason):  # noqa: N802
            for timer in ("hb", "refresher", "snap_timer"):
                if getattr(self, timer, None):
                    getattr(self, timer).cancel()
            me = self.factory.me
            closed.append([me["idx"], code, reason])
            if not getattr(self, "snapshots", 0) and me.setdefault("retries", 0) < 3:
                # Closed before its first snapshot (a refused or failed handshake): try again, counted.
                me["retries"] += 1
                loop.call_later(1.0, lambda: loop.create_task(connect(me, asyncio.Semaphore(1))))

    async def connect(console: dict, gate: asyncio.Semaphore) -> None:
        async with gate:
            port = console["port"]
            factory = WebSocketClientFactory(
                f"ws://127.0.0.1:{port}/ws/console/",
                origin=f"http://127.0.0.1:{port}",
                headers={"Cookie": f"sessionid={console['session']}"},
            )
            # The load generator's own cost: autobahn validates UTF-8 in pure Python byte by byte (browsers do it
            # natively); the JSON parse below would fail on bad text anyway.
            factory.setProtocolOptions(utf8validateIncoming=False)
            factory.protocol = Console
            factory.me = console
            await loop.create_connection(factory, "127.0.0.1", port)

    async def main() -> None:
        gate = asyncio.Semaphore(20)
        await asyncio.gather(*(connect(c, gate) for c in consoles), return_exceptions=True)
        try:
            await asyncio.wait_for(all_ready.wait(), timeout=120)
        except TimeoutError:
            closed.append(["retries", sum(c.get("retries", 0) for c in consoles)])
            say(f"FAILED only {ready['n']} of {total} consoles got their snapshot; closed: {closed[:3]}")
            return
        say(f"READY {total}")
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while True:
            line = (await reader.readline()).decode().strip()
            if line in ("STOP", ""):
                break
        retries = sum(c.get("retries", 0) for c in consoles)
        Path(config["out"]).write_text(
            json.dumps(
                {"receipts": receipts, "answers": answers, "other": dict(other), "closed": closed, "retries": retries}
            )
        )
        say("BYE")

    loop.run_until_complete(main())
    return 0


# ================================================================ the orchestrator
def write_settings(args, tmp: Path) -> str:
    """prod.py as it is, or (with --redis-socket-timeout) with that socket timeout on the channel layer's
    Redis connections. Returns the settings module to use."""
    if args.redis_socket_timeout is None and args.layer == "core":
        return "contactcenter.settings.prod"
    lines = [
        "# Production settings; only the channel layer differs (see bench/README.md).",
        "from contactcenter.settings.prod import *  # noqa: F403",
    ]
    if args.redis_socket_timeout is not None:
        timeout = None if args.redis_socket_timeout <= 0 else args.redis_socket_timeout
        lines.append(
            'CHANNEL_LAYERS["default"]["CONFIG"]["hosts"] = '
            f'[{{"address": REDIS_URL, "socket_timeout": {timeout!r}}}]  # noqa: F405'
        )
    if args.layer == "pubsub":
        lines.append(
            'CHANNEL_LAYERS["default"]["BACKEND"] = "channels_redis.pubsub.RedisPubSubChannelLayer"  # noqa: F405'
        )
    (tmp / "bench_push_settings.py").write_text("\n".join(lines) + "\n")
    return "bench_push_settings"


def bench_env(args, db_name: str, ports: list[int], prefix: str, tmp: Path) -> dict[str, str]:
    env = prod_env(
        settings_module=write_settings(args, tmp),
        tmp=tmp,
        port=ports[0],
        database_url=f"{args.postgres.rstrip('/')}/{db_name}",
        redis_url=args.redis,
        prefix=prefix,
    )
    env["LOG_LEVEL"] = "WARNING"
    return env


def prepare_data(m: int, k: int) -> tuple[int, list[dict]]:
    """Migrate; one business, one queue, M available agents with a session each. Returns (tenant id, agents)."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.management import call_command
    from django.db import connections
    from django.utils import timezone

    from agents.models import AgentProfile, Presence, PresenceState
    from flows.models import Queue
    from tenants.models import Membership, Role, Tenant, User
    from tenants.scoping import tenant_scope

    call_command("migrate", verbosity=0, interactive=False)
    tenant = Tenant.objects.create(name="Bench Dental", slug="bench-dental", status="active")
    with tenant_scope([tenant.id]):
        Queue.objects.create(tenant=tenant, name="front-desk")
    now = timezone.now()
    agents = []
    for i in range(m):
        user = User(email=f"agent{i:04d}@bench.test", full_name=f"Agent {i}")
        user.set_unusable_password()  # sessions are written directly; no hashing for 200 users
        user.save()
        Membership.objects.create(user=user, tenant=tenant, role=Role.AGENT)
        AgentProfile.objects.create(user=user, capacity=min(k + 5, 32000), phone_number="+15555550160")
        Presence.objects.create(user=user, state=PresenceState.AVAILABLE, since=now, last_heartbeat=now)
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        agents.append({"idx": i, "user_id": user.pk, "session": session.session_key})
    connections.close_all()
    return tenant.id, agents


class Fleet:
    """A client subprocess and a thread reading its stdout lines into a list."""

    def __init__(self, n: int, consoles: list[dict], tmp: Path, env: dict[str, str]):
        self.out = tmp / f"fleet-{n}.json"
        config = tmp / f"fleet-{n}-config.json"
        config.write_text(json.dumps({"consoles": consoles, "out": str(self.out)}))
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--fleet", str(config)],
            cwd=ROOT,
            env={**os.environ, **env},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=open(tmp / f"fleet-{n}.log", "wb"),  # noqa: SIM115
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.strip())
                self.cond.notify_all()

    def wait_for(self, predicate, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines:
                    if predicate(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return None
                self.cond.wait(left)

    def finish(self) -> dict:
        try:
            self.proc.stdin.write("STOP\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass
        self.wait_for(lambda line: line == "BYE", 60)
        stop([self.proc])
        return json.loads(self.out.read_text()) if self.out.exists() else {"receipts": [], "answers": [], "other": {}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fleet", help=argparse.SUPPRESS)
    parser.add_argument("--agents", type=int, default=200, help="consoles connected (default 200)")
    parser.add_argument("--escalations", type=int, default=50, help="escalations, one after another (default 50)")
    parser.add_argument("--servers", type=int, default=2, help="daphne processes (default 2)")
    parser.add_argument("--fleets", type=int, default=2, help="client processes holding the consoles (default 2)")
    parser.add_argument(
        "--settle",
        type=float,
        default=3.0,
        help="seconds between the last console's connection and the first round (default 3)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=0,
        help="first rounds left out of the latency figures and reported apart (default 0)",
    )
    parser.add_argument(
        "--gap",
        type=float,
        default=0.5,
        help="pause after each round once every console has its post-race snapshot (s, default 0.5)",
    )
    parser.add_argument("--round-timeout", type=float, default=15.0, help="seconds to wait for a round's answers")
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432", help="server URL, no database")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/2")
    parser.add_argument(
        "--redis-socket-timeout",
        type=float,
        default=None,
        help="override the channel layer's Redis socket timeout (s; 0 = none). Default: prod.py as it is",
    )
    parser.add_argument(
        "--layer",
        choices=["core", "pubsub"],
        default="core",
        help="channel layer: core (RedisChannelLayer, as prod.py) or pubsub (RedisPubSubChannelLayer)",
    )
    parser.add_argument("--json", dest="json_out", help="also write the figures to this JSON file")
    args = parser.parse_args()
    if args.fleet:
        return run_fleet(args.fleet)
    if not (1 <= args.agents <= 1000 and 1 <= args.escalations <= 500):
        parser.error("--agents must be 1..1000 and --escalations 1..500 (this is a bounded benchmark)")

    tmp = Path(tempfile.mkdtemp(prefix="switchboard-push-"))
    ports = [free_port() for _ in range(args.servers)]
    prefix = f"switchboard-bench-push-{os.getpid()}"
    db_name = f"switchboard_bench_push_{os.getpid()}"
    env = bench_env(args, db_name, ports, prefix, tmp)
    procs: list[subprocess.Popen] = []
    fleets: list[Fleet] = []
    started = time.monotonic()
    result: dict = {"machine": machine(), "command": " ".join(["python", *sys.argv]), "args": vars(args)}
    try:
        with admin_connect(args.postgres) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{db_name}"')
        os.environ.update(env)
        sys.path.insert(0, str(tmp))
        import django

        django.setup()
        print(f"loading {args.agents} agents into {db_name} ...", flush=True)
        tenant_id, agents = prepare_data(args.agents, args.escalations)
        procs = start_servers(env, ports, tmp)
        wait_healthy(ports, procs)
        for agent in agents:
            agent["port"] = ports[agent["idx"] % len(ports)]
        shares = [agents[n :: args.fleets] for n in range(args.fleets)]
        t_connect = time.monotonic()
        fleets = [Fleet(n, share, tmp, env) for n, share in enumerate(shares) if share]
        for fleet in fleets:
            line = fleet.wait_for(lambda x: x.startswith(("READY", "FAILED")), 150)
            if not line or not line.startswith("READY"):
                raise RuntimeError(f"a client process did not connect its consoles: {line or 'timed out'}")
        result["connect_seconds"] = round(time.monotonic() - t_connect, 1)
        print(f"{args.agents} consoles connected in {result['connect_seconds']} s", flush=True)
        time.sleep(args.settle)  # the servers finish the connect storm (each console's first heartbeat) first

        from contactcenter import heap

        # This process publishes the events, as a Celery worker does in production, which freezes its warm heap
        # (GC_FREEZE in production settings) so full collections do not pause its sends.
        heap.freeze("benchmark publisher ready")
        groups = {"servers": [p.pid for p in procs], "consoles": [f.proc.pid for f in fleets]}
        cpu_before, rounds_started = cpu_seconds(groups), time.monotonic()
        sent, created, rounds_timed_out, result["publisher_send_ms"] = drive(tenant_id, args, fleets)
        used = cpu_used(cpu_before, cpu_seconds(groups))
        rounds = args.warmup + args.escalations
        result["cpu_ms_per_round"] = {k: round(1000 * v / rounds, 1) for k, v in used.items()}
        result["cpu_busy_share"] = round(
            sum(used.values()) / ((time.monotonic() - rounds_started) * (os.cpu_count() or 1)), 2
        )
        data = [fleet.finish() for fleet in fleets]
        fleets = []
        result.update(analyse(args, agents, data, sent, created, rounds_timed_out))
        result["db"] = check_database(tenant_id)
        result["wall_seconds"] = round(time.monotonic() - started, 1)
        logs = [log.read_text(errors="replace") for log in sorted(tmp.glob("daphne-*.log"))]
        result["server_log_errors"] = sum(text.count("Traceback") for text in logs)
        first = next((text for text in logs if "Traceback" in text), "")
        if first:
            at = first.index("Traceback")
            result["server_log_first_traceback"] = first[max(0, first.rfind("\n", 0, at - 300)) : at + 2500]
        report(result)
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(result, indent=2, default=str))
        return 0 if result["verdict"]["claim_race_ok"] and result["verdict"]["no_lost_or_duplicated"] else 1
    except BaseException:
        for log in sorted(tmp.glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-25:]
            print(f"--- last lines of {log.name}:", *tail, sep="\n", file=sys.stderr)
        raise
    finally:
        for fleet in fleets:
            stop([fleet.proc])
        stop(procs)
        try:
            from django.db import connections

            connections.close_all()
        except Exception:
            pass
        with admin_connect(args.postgres) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        clear_redis(args.redis, prefix)
        for path in sorted(tmp.glob("*")):
            path.unlink()
        tmp.rmdir()


def drive(tenant_id: int, args, fleets: list[Fleet]):
    """Create the K escalations one after another; returns (send times, create times, rounds timed out)."""
    from django.utils import timezone

    import agents.realtime as realtime
    from agents.services import escalation_create
    from contactcenter.celery import app as celery_app
    from conversations.models import Conversation
    from tenants.scoping import tenant_scope

    celery_app.conf.task_always_eager = True  # routing runs here, as the worker's task would run it
    sent: dict[tuple[str, int], float] = {}  # (event type, escalation id) -> on-commit send time
    send_ms: dict[str, list[float]] = defaultdict(list)  # how long the publisher's group_sends took
    real_send = realtime._send

    def timed_send(groups, message):
        event = message["event"]
        key = (event["type"], event.get("escalation_id"))
        t0 = time.time()
        real_send(groups, message)
        if event["type"] in ("escalation.waiting", "escalation.offered") and key not in sent:
            sent[key] = t0
            if measuring["on"]:  # (the warm-up's first sends also open the publisher's connection)
                send_ms[event["type"]].append((time.time() - t0) * 1000)

    measuring = {"on": args.warmup == 0}
    realtime._send = timed_send
    created: dict[int, float] = {}
    timed_out = []
    action = {
        "type": "transfer",
        "queue": "front-desk",
        "priority": 5,
        "reason": {"code": "caller_requested_human", "explanation": "The caller asked for a person."},
        "summary": {"reason_code": "caller_requested_human", "reason_text": "Caller asked for a person."},
    }
    for n in range(args.warmup + args.escalations):
        measuring["on"] = n >= args.warmup
        with tenant_scope([tenant_id]):
            conversation = Conversation.objects.create(
                tenant_id=tenant_id, channel="chat", caller_number=f"+1555000{n:04d}", started_at=timezone.now()
            )
            escalation = escalation_create(conversation=conversation, transfer_action_json=action)
        created[escalation.pk] = sent.get(("escalation.waiting", escalation.pk), time.time())
        for fleet in fleets:
            tag = f"ROUND {escalation.pk}"
            if fleet.wait_for(lambda line, tag=tag: line == tag, args.round_timeout) is None:
                timed_out.append(escalation.pk)
                break
        time.sleep(args.gap)
        if n >= args.warmup and (n + 1 - args.warmup) % 10 == 0:
            print(f"  {n + 1 - args.warmup}/{args.escalations} escalations", flush=True)
    realtime._send = real_send
    return sent, created, timed_out, {kind: percentiles(v) for kind, v in send_ms.items()}


def analyse(args, agents, data, sent, created, timed_out) -> dict:
    receipts = [r for d in data for r in d["receipts"]]
    answers = [a for d in data for a in d["answers"]]
    escalations = sorted(created)
    warmup = set(escalations[: args.warmup])
    consoles = [a["idx"] for a in agents]
    latency: dict[str, list[float]] = {"escalation.waiting": [], "escalation.offered": []}
    warmup_latency: dict[str, list[float]] = {"escalation.waiting": [], "escalation.offered": []}
    per_escalation: dict[tuple[str, int], list[float]] = defaultdict(list)
    offered_from_create: list[float] = []
    count: Counter = Counter()
    for idx, kind, esc, _agent, t in receipts:
        count[(idx, kind, esc)] += 1
        if count[(idx, kind, esc)] == 1 and (kind, esc) in sent and esc in warmup:
            warmup_latency[kind].append((t - sent[(kind, esc)]) * 1000)
        elif count[(idx, kind, esc)] == 1 and (kind, esc) in sent:
            latency[kind].append((t - sent[(kind, esc)]) * 1000)
            per_escalation[(kind, esc)].append((t - sent[(kind, esc)]) * 1000)
            if kind == "escalation.offered" and esc not in warmup:
                offered_from_create.append((t - created[esc]) * 1000)
    first_t: dict[tuple, float] = {}
    dup_gaps: list[float] = []
    dup_escalations: Counter = Counter()
    for idx, kind, esc, _agent, t in sorted(receipts, key=lambda r: r[4]):
        if (idx, kind, esc) in first_t:
            dup_gaps.append((t - first_t[(idx, kind, esc)]) * 1000)
            dup_escalations[f"{kind} #{esc}"] += 1
        else:
            first_t[(idx, kind, esc)] = t
    race_ms = []
    last_answer: dict[int, float] = {}
    for _idx, esc, _outcome, t in answers:
        last_answer[esc] = max(t, last_answer.get(esc, 0))
    for esc, t in last_answer.items():
        if ("escalation.offered", esc) in sent:
            race_ms.append((t - sent[("escalation.offered", esc)]) * 1000)
    lost = dict.fromkeys(latency, 0)
    duplicated = dict.fromkeys(latency, 0)
    for esc in escalations:
        for idx in consoles:
            for kind in latency:
                n = count[(idx, kind, esc)]
                lost[kind] += n == 0
                duplicated[kind] += max(0, n - 1)
    winners: dict[int, list[int]] = defaultdict(list)
    outcomes: Counter = Counter()
    answered: Counter = Counter()
    for idx, esc, outcome, _t in answers:
        outcomes[outcome] += 1
        answered[(idx, esc)] += 1
        if outcome == "ok":
            winners[esc].append(idx)
    wrong_winners = {esc: len(winners.get(esc, [])) for esc in escalations if len(winners.get(esc, [])) != 1}
    unanswered = sum(1 for esc in escalations for idx in consoles if answered[(idx, esc)] == 0)
    no_lost = not any(lost.values()) and not any(duplicated.values())
    return {
        "escalations": len(escalations) - len(warmup),
        "warmup_rounds": len(warmup),
        "consoles": len(consoles),
        "latency_ms": {
            "waiting (commit -> console)": percentiles(latency["escalation.waiting"]),
            "offered (routing commit -> console)": percentiles(latency["escalation.offered"]),
            "offered (escalation commit -> console, routing included)": percentiles(offered_from_create),
        },
        "slowest_rounds": {
            kind: [
                {
                    "round": escalations.index(esc) + 1 - args.warmup,
                    "p50": round(statistics.median(v), 1),
                    "max": round(max(v), 1),
                }
                for (k, esc), v in sorted(per_escalation.items(), key=lambda kv: -max(kv[1]))
                if k == kind and esc not in warmup
            ][:4]
            for kind in latency
        },
        "warmup_latency_ms": {kind: percentiles(v) for kind, v in warmup_latency.items()},
        "all_rounds_latency_ms": {kind: percentiles(latency[kind] + warmup_latency[kind]) for kind in latency},
        "lost": lost,
        "duplicated": duplicated,
        "duplicates_detail": {
            "by_event": dict(dup_escalations.most_common(10)),
            "ms_after_first_copy": percentiles(dup_gaps),
        },
        "race": {
            "accept_answers": dict(outcomes),
            "escalations_without_exactly_one_winner": wrong_winners,
            "console_escalation_pairs_without_answer": unanswered,
            "rounds_timed_out": timed_out,
            "offered_commit_to_last_answer_ms": percentiles(race_ms),
        },
        "other_messages": dict(sum((Counter(d["other"]) for d in data), Counter())),
        "closed_sockets": sum(len(d.get("closed", [])) for d in data),
        "connect_retries": sum(d.get("retries", 0) for d in data),
        "verdict": {
            "claim_race_ok": not wrong_winners and not unanswered and not timed_out,
            "no_lost_or_duplicated": no_lost,
            "p99_waiting_ms": percentiles(latency["escalation.waiting"]).get("p99"),
            "p99_offered_ms": percentiles(latency["escalation.offered"]).get("p99"),
        },
    }


def check_database(tenant_id: int) -> dict:
    from django.db.models import Count

    from agents.models import Escalation, EscalationOffer
    from tenants.scoping import tenant_scope

    with tenant_scope([tenant_id]):
        states = dict(Escalation.objects.values_list("state").annotate(n=Count("id")).values_list("state", "n"))
        no_agent = Escalation.objects.filter(state="accepted", agent__isnull=True).count()
        offers = dict(
            EscalationOffer.objects.values_list("outcome").annotate(n=Count("id")).values_list("outcome", "n")
        )
    return {"escalation_states": states, "accepted_without_agent": no_agent, "offer_outcomes": offers}


def report(r: dict) -> None:
    print()
    print(f"machine: {r['machine']}")
    print(f"command: {r['command']}")
    print(f"{r['consoles']} consoles on {r['args']['servers']} daphne processes, {r['escalations']} escalations")
    print(f"consoles connected in {r['connect_seconds']} s; whole run {r['wall_seconds']} s")
    print()
    print(f"{'commit -> receipt (ms)':58} {'n':>6} {'p50':>7} {'p90':>7} {'p99':>7} {'max':>7}")
    for name, p in r["latency_ms"].items():
        if p.get("n"):
            print(f"{name:58} {p['n']:>6} {p['p50']:>7} {p['p90']:>7} {p['p99']:>7} {p['max']:>7}")
    for name, p in r["publisher_send_ms"].items():
        print(f"  of which the publisher's group_send calls for {name}: p50 {p['p50']} / p99 {p['p99']} ms")
    for name, p in r["warmup_latency_ms"].items():
        if p.get("n"):
            every = r["all_rounds_latency_ms"][name]
            print(f"  warm-up round(s) left out, {name}: p50 {p['p50']} / max {p['max']} ms"
                  f" (all rounds with it: p99 {every['p99']} ms)")  # fmt: skip
    for name, rounds in r["slowest_rounds"].items():
        print(f"  slowest rounds for {name} (round: p50 / max ms): " + ", ".join(
            f"#{x['round']}: {x['p50']} / {x['max']}" for x in rounds))  # fmt: skip
    print()
    print(f"lost events (console never got it): {r['lost']}")
    print(f"duplicated events (console got it twice or more): {r['duplicated']}")
    if r["duplicates_detail"]["by_event"]:
        print(f"  duplicates by event: {r['duplicates_detail']['by_event']}")
        print(
            f"  duplicate copies arrived this long after the first (ms): {r['duplicates_detail']['ms_after_first_copy']}"
        )
    race = r["race"]
    print(f"accept answers: {race['accept_answers']}")
    print(f"escalations without exactly one winner: {race['escalations_without_exactly_one_winner'] or 'none'}")
    print(f"console/escalation pairs without an answer: {race['console_escalation_pairs_without_answer']}")
    print(f"rounds timed out: {race['rounds_timed_out'] or 'none'}")
    print(f"race resolved (offered commit -> last console's answer, ms): {race['offered_commit_to_last_answer_ms']}")
    print(f"database: {r['db']}")
    print(f"other messages received: {r['other_messages']}")
    print(f"sockets closed: {r['closed_sockets']} (handshakes retried: {r['connect_retries']})")
    print(f"tracebacks in the server logs: {r['server_log_errors']}")
    if r.get("server_log_first_traceback"):
        print("the first one:\n" + r["server_log_first_traceback"])
    if r.get("cpu_ms_per_round"):
        print(f"CPU ms per round (one escalation: push, race, answers), by process: {r['cpu_ms_per_round']};"
              f" the cores were {100 * r['cpu_busy_share']:.0f}% busy over the rounds (gaps included)")  # fmt: skip
    print(f"verdict: {r['verdict']}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
