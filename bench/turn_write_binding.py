"""A call turn's one write (the transcript line and the conversation's new state, one WITH statement)
with psycopg's client-side binding (what Django uses) against server-side binding (parameters sent apart,
the statement prepared by psycopg after five runs), in client CPU, PostgreSQL backend CPU and wall time.

    .venv/bin/python bench/turn_write_binding.py [--postgres postgres://postgres@127.0.0.1:5432]

Creates a scratch database with the project's tables (migrate) and drops it. The app binds the turn's
statements server-side (contactcenter/sql.py); this shows what that buys.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg  # noqa: E402
from _servers import create_database, drop_database, free_port, prod_env  # noqa: E402
from psycopg import ClientCursor  # noqa: E402

DB_NAME = "switchboard_bench_binding"


def backend_cpu(conn) -> float:
    stat = Path(f"/proc/{conn.info.backend_pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432", help="server URL, no database")
    parser.add_argument("--runs", type=int, default=3000)
    args = parser.parse_args()
    url = f"{args.postgres.rstrip('/')}/{DB_NAME}"
    env = prod_env(
        settings_module="contactcenter.settings.prod", tmp=Path(tempfile.mkdtemp()), port=free_port(),
        database_url=url, redis_url="redis://127.0.0.1:6379/2", prefix="switchboard-bench-binding",
    )  # fmt: skip
    create_database(args.postgres, DB_NAME)
    try:
        os.environ.update(env)
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)
        from django.db import connections

        connections.close_all()
        measure(url, args.runs)
    finally:
        drop_database(args.postgres, DB_NAME)
    return 0


def measure(url: str, n: int) -> None:
    conn = psycopg.connect(url, autocommit=True)
    cur = conn.cursor()
    tid = cur.execute(
        "insert into tenants_tenant (name, slug, timezone, status, greeting, agent_notes, created_at)"
        " values ('t', 't', 'UTC', 'active', '', '', now()) returning id"
    ).fetchone()[0]
    cid = cur.execute(
        "insert into conversations_conversation (tenant_id, channel, caller_number, dialled_number, vonage_uuid,"
        " vonage_conversation_uuid, status, outcome, escalation_reason, escalation_text, state, started_at,"
        " turn_count) values (%s, 'voice', '+1', '+2', 'u', '', 'in_progress', '', '', '', '{}', now(), 0)"
        " returning id",
        (tid,),
    ).fetchone()[0]
    state = json.dumps(
        {
            "step": "menu",
            "served": True,
            "slots": {"name": "Jane Doe", "phone": "+15555550123"},
            "history": ["greet", "menu"] * 10,
            "intent_path": ["hours", "parking"] * 5,
            "recent": ["what time do you close today"] * 5,
        }
    )
    actions = json.dumps(
        [
            {
                "type": "say",
                "text": "We are open from nine to five, Monday to Friday. Anything else?",
                "reason": {"code": "faq", "explanation": "matched hours"},
            },
            {"type": "listen", "hints": ["book", "hours", "parking"] * 5},
        ]
    )
    sql = (
        "WITH new AS (INSERT INTO conversations_turn (tenant_id, conversation_id, seq, event, utterance, dtmf,"
        " asr_confidence, intent, confidence, out_of_scope, reply, reason_code, reason, step, actions,"
        " latency_ms, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())"
        " RETURNING id), changed AS (UPDATE conversations_conversation SET turn_count = %s, state = %s,"
        " status = %s WHERE id = %s) SELECT id FROM new"
    )
    seq = [0]

    def run(c):
        seq[0] += 1
        c.execute(
            sql,
            (
                tid,
                cid,
                seq[0],
                "utterance",
                "Hi, what time do you close today?",
                "",
                0.93,
                "hours",
                0.91,
                False,
                "We are open from nine to five, Monday to Friday. Anything else?",
                "faq",
                "matched the hours FAQ with high confidence",
                "menu",
                actions,
                5.1,
                seq[0],
                state,
                "in_progress",
                cid,
            ),
        ).fetchone()

    rounds = [("client-side binding", ClientCursor(conn)), ("server-side binding", conn.cursor())] * 2
    for name, c in rounds:
        for _ in range(200):
            run(c)
        b, t, w = backend_cpu(conn), time.process_time(), time.perf_counter()
        for _ in range(n):
            run(c)
        print(
            f"{name}: client {1e6 * (time.process_time() - t) / n:.0f} us,"
            f" postgres {1e6 * (backend_cpu(conn) - b) / n:.0f} us, wall {1e6 * (time.perf_counter() - w) / n:.0f} us"
        )
    conn.close()


if __name__ == "__main__":
    sys.exit(main())
