"""Report rollups at scale: 1,000 tenants and 1,000,000 conversations (4 turns each) on PostgreSQL.

    .venv/bin/python bench/rollup.py                                  # defaults below
    .venv/bin/python bench/rollup.py --tenants 100 --conversations 100000 --loads 20 --json out.json

What it does (loopback only, bounded, cleans up after itself in a `finally`):

1. creates a fresh Postgres database (`switchboard_bench_rollup`, dropped at the end), runs migrate and
   collectstatic with production settings (contactcenter.settings.prod with local values for its
   required variables, STATIC_ROOT in a temporary directory);
2. generates the data in SQL (`INSERT ... SELECT generate_series`, no Python per row): --tenants
   businesses in 4 time zones (New York, Chicago, Los Angeles, London; Mon-Fri 09:00-17:00), two queues
   and a published flow each, 10 agencies covering 30% of them, and --conversations conversations spread
   evenly over the last --days days with 4 turns each (about 10% of the utterances out of scope),
   callers drawn from 500 numbers per business (so some call again within 48 h), 20% escalated (with
   escalations: wrapped, abandoned, chose a callback, expired; some answered by an agency), callbacks,
   voicemails, leads and appointment requests; then ANALYZE;
3. times the nightly rollup of one local day (the day before yesterday: complete in every time zone)
   for all tenants, as production runs it: `manage.py reports_rollup --day D` in a separate process with
   production settings (the command reports its own wall-clock time); twice, the second run being a
   recompute over existing rows;
4. rolls up the other days (so a 30-day dashboard has 30 days to read), in two runs of the command;
5. starts one daphne process with production settings, signs a tenant's owner in (a session made in
   the database) and loads the 30-day dashboard (`/t/<slug>/reports/?period=30d`) --loads times after 3
   warm-up loads, then the same figures from the API: p50 / p99 / max of the client round trip.

Figures are for this whole box: the servers, Postgres and the client share its cores.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _servers import (  # noqa: E402 (bench/ is on sys.path)
    admin_connect,
    clear_redis,
    create_database,
    drop_database,
    free_port,
    prod_env,
    start_servers,
    stop,
    wait_healthy,
)

ROOT = Path(__file__).resolve().parent.parent
DB_NAME = "switchboard_bench_rollup"
TIMEZONES = ["America/New_York", "America/Chicago", "America/Los_Angeles", "Europe/London"]
WEEKLY = {d: [["09:00", "17:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}
STEPS = [
    {"id": "greeting", "kind": "say"},
    {"id": "menu", "kind": "menu"},
    {"id": "to_person", "kind": "escalate"},
    {"id": "bye", "kind": "end"},
]
UTTERANCES = [
    "what are your hours",
    "do you take delta dental",
    "how much is a cleaning",
    "where do I park",
    "can I book a check-up",
    "do you do teeth whitening",
    "is parking free",
    "can I pay with bitcoin",
    "do you have weekend appointments",
    "I need to cancel my appointment",
    "what is your address",
    "do you see children",
    "how much is a filling",
    "do you offer payment plans",
    "is the office wheelchair accessible",
    "can I bring my dog",
    "do you have wifi",
    "I lost my retainer",
    "do you do invisalign",
    "my tooth hurts",
]


def sql_list(values: list[str]) -> str:
    return "ARRAY[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


# ---------------------------------------------------------------- environment
def write_settings(tmp: Path) -> None:
    (tmp / "bench_settings.py").write_text(
        "# Production settings; only STATIC_ROOT moves to the benchmark's temporary directory.\n"
        "from contactcenter.settings.prod import *  # noqa: F403\n"
        f"STATIC_ROOT = {str(tmp / 'static')!r}\n"
    )


def manage(env: dict[str, str], *argv: str, timeout: float = 3600) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *argv],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


# ---------------------------------------------------------------- data
def generate(args, first_day: dt.date) -> dict[str, float]:
    """Every row in SQL. Ids are explicit (tenant g owns queues 2g-1 / 2g, flow and version g)."""
    import psycopg

    t, n, days = args.tenants, args.conversations, args.days
    start = f"'{first_day.isoformat()} 00:00:00+00'::timestamptz"
    definition = json.dumps({"steps": STEPS})
    statements = [
        (
            "tenants",
            f"""INSERT INTO tenants_tenant (id, name, slug, timezone, status, greeting, agent_notes, created_at)
            SELECT g, 'Bench business ' || g, 'bench-' || g, ({sql_list(TIMEZONES)})[1 + g % 4], 'active', '', '',
                   now() - interval '400 days'
            FROM generate_series(1, {t}) g""",
        ),
        (
            "queues",
            f"""INSERT INTO flows_queue (id, tenant_id, name, description, required_skills, priority,
                   service_level_seconds, max_wait_seconds, overflow_when_no_agents, routing_mode, offer_timeout_seconds)
            SELECT 2 * g - 1 + q, g, (ARRAY['front-desk', 'billing'])[1 + q], '', '[]', 5, 30 + 30 * q, 300, true,
                   'longest_idle', 20
            FROM generate_series(1, {t}) g, generate_series(0, 1) q""",
        ),
        (
            "flows",
            f"""INSERT INTO flows_flow (id, tenant_id, name, description, language, start_step, messages, created_at,
                   updated_at)
            SELECT g, g, 'Main line', '', 'en-US', 'greeting', '{{}}', now(), now() FROM generate_series(1, {t}) g""",
        ),
        (
            "versions",
            f"""INSERT INTO flows_flowversion (id, tenant_id, flow_id, number, definition, content_hash, note,
                   created_at, train_seconds)
            SELECT g, g, g, 1, '{definition}', 'bench', '', now() - interval '60 days', 0
            FROM generate_series(1, {t}) g""",
        ),
        ("publish", "UPDATE flows_flow SET published_version_id = id"),
        (
            "hours",
            f"""INSERT INTO flows_businesshours (tenant_id, weekly, updated_at)
            SELECT g, '{json.dumps(WEEKLY)}', now() FROM generate_series(1, {t}) g""",
        ),
        (
            "agencies",
            """INSERT INTO tenants_agency (id, name, slug, invite_code, created_at)
            SELECT a, 'Bench agency ' || a, 'bench-agency-' || a, 'bench-invite-' || a, now()
            FROM generate_series(1, 10) a""",
        ),
        (
            "coverage",
            f"""INSERT INTO tenants_coverage (agency_id, tenant_id, mode, active, created_at)
            SELECT 1 + g % 10, g, 'overflow', true, now() FROM generate_series(1, {t}) g WHERE g % 10 < 3""",
        ),
        (
            "conversations",
            f"""INSERT INTO conversations_conversation (id, tenant_id, channel, caller_number, dialled_number,
                   vonage_conversation_uuid, status, outcome, escalation_reason, escalation_text, state, started_at,
                   answered_at, ended_at, duration_seconds, turn_count, flow_version_id)
            SELECT i, tenant, CASE WHEN r1 < 0.8 THEN 'voice' ELSE 'chat' END,
                   CASE WHEN r1 < 0.8 THEN '+1555' || lpad(tenant::text, 4, '0') || lpad(floor(r3 * 500)::text, 3, '0')
                        ELSE '' END,
                   '', '', 'completed',
                   CASE WHEN r2 < 0.60 THEN 'resolved' WHEN r2 < 0.80 THEN 'escalated' WHEN r2 < 0.88 THEN 'abandoned'
                        WHEN r2 < 0.94 THEN 'voicemail' ELSE 'callback' END,
                   CASE WHEN r2 >= 0.60 AND r2 < 0.80 THEN 'asked_for_human' ELSE '' END, '', '',
                   started, started, started + interval '3 minutes', 180, 4, tenant
            FROM (
                SELECT i, 1 + (i % {t}) AS tenant, random() AS r1, random() AS r2, random() AS r3,
                       {start} + (i::float8 / {n}) * interval '{days} days' AS started
                FROM generate_series(1, {n}) i
            ) s""",
        ),
        (
            "turns",
            f"""INSERT INTO conversations_turn (id, tenant_id, conversation_id, seq, event, utterance, dtmf, intent,
                   confidence, out_of_scope, reply, reason_code, reason, step, actions, latency_ms, created_at)
            SELECT (c.id - 1) * 4 + s.seq, c.tenant_id, c.id, s.seq,
                   CASE WHEN s.seq = 1 THEN 'start' ELSE 'utterance' END,
                   CASE WHEN s.seq IN (2, 3) THEN ({sql_list(UTTERANCES)})[1 + floor(random() * 20)::int] ELSE '' END,
                   '', '',
                   CASE WHEN s.seq IN (2, 3) THEN random() END,
                   s.seq IN (2, 3) AND random() < 0.1,
                   'Sure.', '', '',
                   CASE s.seq WHEN 1 THEN 'greeting' WHEN 2 THEN 'menu' WHEN 3 THEN 'menu'
                        ELSE CASE WHEN c.outcome = 'escalated' THEN 'to_person' ELSE 'bye' END END,
                   '[]', 40, c.started_at + s.seq * interval '10 seconds'
            FROM conversations_conversation c CROSS JOIN generate_series(1, 4) AS s(seq)""",
        ),
        (
            "escalations",
            """INSERT INTO agents_escalation (tenant_id, conversation_id, queue_id, reason_code, reason_text, priority,
                   skills, summary, state, created_at, accepted_at, connected_at, wrapped_at, ended_at, disposition,
                   notes, overflowed, via_agency_id, agent_leg_uuid, dial_attempts, kind)
            SELECT tenant_id, id, 2 * tenant_id - (CASE WHEN r1 < 0.7 THEN 1 ELSE 0 END),
                   (ARRAY['asked_for_human', 'out_of_scope', 'frustrated', 'urgent'])[1 + floor(r2 * 4)::int], '', 5,
                   '[]', '{}',
                   CASE WHEN r3 < 0.75 THEN 'wrapped' WHEN r3 < 0.85 THEN 'abandoned' WHEN r3 < 0.93 THEN 'callback'
                        ELSE 'expired' END,
                   created,
                   CASE WHEN r3 < 0.75 THEN created + wait END,
                   CASE WHEN r3 < 0.75 THEN created + wait + interval '5 seconds' END,
                   CASE WHEN r3 < 0.75 THEN created + wait + interval '5 seconds' + talk END,
                   CASE WHEN r3 < 0.75 THEN created + wait + interval '5 seconds' + talk
                        ELSE created + interval '2 minutes' END,
                   '', '', false,
                   CASE WHEN r3 < 0.75 AND tenant_id % 10 < 3 AND r1 < 0.3 THEN 1 + tenant_id % 10 END,
                   '', 0, 'live'
            FROM (
                SELECT id, tenant_id, started_at + interval '40 seconds' AS created, random() AS r1, random() AS r2,
                       random() AS r3, random() * 90 * interval '1 second' AS wait,
                       (60 + random() * 400) * interval '1 second' AS talk
                FROM conversations_conversation WHERE outcome = 'escalated'
            ) e""",
        ),
        (
            "callbacks",
            """INSERT INTO conversations_callback (tenant_id, conversation_id, queue_id, phone, name, priority, source,
                   preference, due_at, first_due_at, place_since, state, attempts, max_attempts, last_outcome, reason,
                   summary, notes, first_offered_at, sms_error, created_at)
            SELECT tenant_id, id, 2 * tenant_id - 1, '+15550000000', '', 5, 'flow', 'asap', due, due, started_at,
                   'completed', 1, 3, 'reached', '', '{}', '', due + random() * 240 * interval '1 second', '', started_at
            FROM (SELECT id, tenant_id, started_at, started_at + interval '1 hour' AS due
                  FROM conversations_conversation WHERE outcome = 'callback') c""",
        ),
        (
            "voicemails",
            """INSERT INTO conversations_voicemail (tenant_id, conversation_id, caller_number, recording_url,
                   recording_uuid, transcript, created_at, email_error)
            SELECT tenant_id, id, caller_number, 'https://example.test/r/' || id, 'bench-rec-' || id, '',
                   started_at + interval '1 minute', ''
            FROM conversations_conversation WHERE outcome = 'voicemail'""",
        ),
        (
            "leads",
            """INSERT INTO conversations_lead (tenant_id, conversation_id, name, phone, email, fields, created_at)
            SELECT tenant_id, id, 'Bench caller', caller_number, '', '{}', started_at + interval '1 minute'
            FROM conversations_conversation WHERE outcome = 'resolved' AND id % 12 = 0""",
        ),
        (
            "appointments",
            """INSERT INTO conversations_appointmentrequest (tenant_id, conversation_id, service, requested_text,
                   details, created_at)
            SELECT tenant_id, id, 'Cleaning', 'next Tuesday', '{}', started_at + interval '2 minutes'
            FROM conversations_conversation WHERE outcome = 'resolved' AND id % 20 = 1""",
        ),
    ]
    timings: dict[str, float] = {}
    with psycopg.connect(f"{args.postgres.rstrip('/')}/{DB_NAME}", autocommit=True) as conn:
        for name, sql in statements:
            started = time.perf_counter()
            conn.execute(sql)
            timings[name] = round(time.perf_counter() - started, 1)
            print(f"  {name:<14} {timings[name]:>6.1f} s", flush=True)
        for table in ("tenants_tenant", "flows_queue", "flows_flow", "flows_flowversion", "tenants_agency"):
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        for table in ("conversations_conversation", "conversations_turn"):
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        started = time.perf_counter()
        conn.execute("ANALYZE")
        timings["analyze"] = round(time.perf_counter() - started, 1)
        counts = {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in (
                "tenants_tenant",
                "conversations_conversation",
                "conversations_turn",
                "agents_escalation",
                "conversations_callback",
                "conversations_voicemail",
            )
        }
    print(f"  rows: {counts}", flush=True)
    return {"timings": timings, "counts": counts}


def rollup(env: dict[str, str], first: dt.date, last: dt.date | None = None) -> tuple[float, str]:
    argv = ["reports_rollup", "--day", first.isoformat()]
    if last is not None and last != first:
        argv += ["--until", last.isoformat()]
    started = time.perf_counter()
    out = manage(env, *argv).strip()
    wall = time.perf_counter() - started
    match = re.search(r"in ([0-9.]+) s", out)
    return (float(match.group(1)) if match else wall), out


# ---------------------------------------------------------------- dashboard
def sign_in(env: dict[str, str]) -> str:
    """An owner of bench-1 and a session for them, made in the database; returns the session key."""
    code = (
        "from django.contrib.auth import SESSION_KEY, BACKEND_SESSION_KEY, HASH_SESSION_KEY\n"
        "from django.contrib.sessions.backends.db import SessionStore\n"
        "from tenants.models import Membership, Role, Tenant, User\n"
        "user = User.objects.create_user(email='owner@bench.test', password='bench-only-9')\n"
        "Membership.objects.create(user=user, tenant=Tenant.objects.get(slug='bench-1'), role=Role.OWNER)\n"
        "s = SessionStore()\n"
        "s[SESSION_KEY] = str(user.pk)\n"
        "s[BACKEND_SESSION_KEY] = 'django.contrib.auth.backends.ModelBackend'\n"
        "s[HASH_SESSION_KEY] = user.get_session_auth_hash()\n"
        "s.create()\n"
        "print('SESSION', s.session_key)\n"
    )
    out = manage(env, "shell", "-c", code)
    return re.search(r"SESSION (\w+)", out).group(1)


def timed_gets(port: int, path: str, session: str, loads: int, warmup: int = 3) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Cookie": f"sessionid={session}", "Host": "127.0.0.1", "X-Forwarded-Proto": "https"}
    samples = []
    size = 0
    for n in range(warmup + loads):
        started = time.perf_counter()
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read()
        elapsed = (time.perf_counter() - started) * 1000
        if response.status != 200:
            raise RuntimeError(f"GET {path}: {response.status} {body[:300]!r}")
        size = len(body)
        if n >= warmup:
            samples.append(elapsed)
    conn.close()
    ordered = sorted(samples)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 1)

    return {
        "n": len(ordered),
        "p50": pick(0.5),
        "p99": pick(0.99),
        "max": round(ordered[-1], 1),
        "mean": round(statistics.mean(ordered), 1),
        "bytes": size,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--conversations", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30, help="the conversations are spread over this many days")
    parser.add_argument("--loads", type=int, default=30, help="timed dashboard loads")
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432", help="server URL, no database")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/2")
    parser.add_argument("--keep", action="store_true", help="keep the database (drop it yourself)")
    parser.add_argument(
        "--data-only", action="store_true", help="stop after generating the data and keep the database (to explore)"
    )
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    if not (1 <= args.tenants <= 5000 and 1 <= args.conversations <= 5_000_000 and 3 <= args.days <= 90):
        parser.error("bounded: 1-5000 tenants, 1-5,000,000 conversations, 3-90 days")

    tmp = Path(tempfile.mkdtemp(prefix="bench-rollup-"))
    port = free_port()
    prefix = f"switchboard-bench-rollup-{os.getpid()}"
    env = prod_env(
        settings_module="bench_settings",
        tmp=tmp,
        port=port,
        database_url=f"{args.postgres.rstrip('/')}/{DB_NAME}",
        redis_url=args.redis,
        prefix=prefix,
    )
    today = dt.datetime.now(dt.UTC).date()
    first_day = today - dt.timedelta(days=args.days)  # data: [first_day, today) in UTC
    timed_day = today - dt.timedelta(days=2)  # complete in every time zone
    report: dict = {
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "args": {k: v for k, v in vars(args).items() if k not in ("postgres", "redis")},
        "load_before": os.getloadavg(),
    }
    procs = []
    try:
        write_settings(tmp)
        print(f"Creating {DB_NAME}, migrating, collecting static files ...", flush=True)
        create_database(args.postgres, DB_NAME)
        manage(env, "migrate", "--noinput", "-v", "0")
        manage(env, "collectstatic", "--noinput", "-v", "0")
        with admin_connect(args.postgres) as conn:
            report["postgres"] = conn.execute("SHOW server_version").fetchone()[0]
        print(
            f"Generating {args.tenants} tenants and {args.conversations:,} conversations over {args.days} days ...",
            flush=True,
        )
        started = time.perf_counter()
        report["data"] = generate(args, first_day)
        report["data"]["seconds"] = round(time.perf_counter() - started, 1)
        if args.data_only:
            args.keep = True
            print(f"Kept {DB_NAME} (drop it with: DROP DATABASE {DB_NAME}).")
            return 0

        print(f"Timing the nightly rollup of {timed_day} for all tenants ...", flush=True)
        first, out = rollup(env, timed_day)
        print(f"  first run:  {first:.1f} s  ({out})", flush=True)
        again, out = rollup(env, timed_day)
        print(f"  recompute:  {again:.1f} s", flush=True)
        report["rollup_one_day"] = {"day": timed_day.isoformat(), "first_s": first, "recompute_s": again, "out": out}

        print("Rolling up the other days for the dashboard ...", flush=True)
        before, out_before = rollup(env, first_day - dt.timedelta(days=1), timed_day - dt.timedelta(days=1))
        after, out_after = rollup(env, timed_day + dt.timedelta(days=1), today)
        days_done = (timed_day - first_day).days + 1 + (today - timed_day).days
        report["rollup_other_days"] = {"days": days_done, "seconds": round(before + after, 1)}
        print(f"  {days_done} days in {before + after:.1f} s ({(before + after) / days_done:.1f} s a day)", flush=True)

        print("Starting daphne (production settings) and loading the dashboard ...", flush=True)
        session = sign_in(env)
        procs = start_servers(env, [port], tmp)
        wait_healthy([port], procs)
        report["dashboard_30d"] = timed_gets(port, "/t/bench-1/reports/?period=30d", session, args.loads)
        report["dashboard_7d"] = timed_gets(port, "/t/bench-1/reports/?period=7d", session, args.loads)
        report["api_summary_30d"] = timed_gets(
            port, "/api/v1/tenants/bench-1/reports/summary/?period=30d", session, args.loads
        )
        report["unmatched_30d"] = timed_gets(port, "/t/bench-1/reports/unmatched/?period=30d", session, args.loads)
        report["funnel_30d"] = timed_gets(port, "/t/bench-1/reports/funnel/?period=30d", session, args.loads)
        report["load_after"] = os.getloadavg()
    finally:
        stop(procs)
        if not args.keep:
            try:
                drop_database(args.postgres, DB_NAME)
            except Exception as exc:
                print(f"(could not drop {DB_NAME}: {exc})", file=sys.stderr)
        clear_redis(args.redis, prefix)
        shutil.rmtree(tmp, ignore_errors=True)

    print("\nResults")
    print(f"  data generation        {report['data']['seconds']:.0f} s ({report['data']['counts']})")
    one = report["rollup_one_day"]
    print(
        f"  nightly rollup, 1 day  {one['first_s']:.1f} s first run, {one['recompute_s']:.1f} s recompute (target <= 60 s)"
    )
    for key in ("dashboard_30d", "dashboard_7d", "api_summary_30d", "unmatched_30d", "funnel_30d"):
        r = report[key]
        print(
            f"  {key:<22} p50 {r['p50']} ms  p99 {r['p99']} ms  max {r['max']} ms  ({r['n']} loads, {r['bytes']} bytes)"
        )
    print(f"  load average before {report['load_before']}, after {report['load_after']}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
