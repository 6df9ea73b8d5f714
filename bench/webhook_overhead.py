"""What the webhook door itself costs per request, in this process (no daphne, no load, no contention).

    .venv/bin/python bench/webhook_overhead.py [--requests 3000] [--postgres postgres://postgres@127.0.0.1:5432]

1. CPU per request through the real ASGI application (contactcenter.asgi) for GET /healthz/live (the
   bare view: Django's full middleware chain) and for an unsigned POST to a webhook (the webhook door up
   to the signature check, which refuses it: everything a turn pays besides its own work).
2. CPU per request of the database connection's request housekeeping under the production pool
   (request_started, a cursor, request_finished): borrowing a connection and giving it back every
   request, against a webhook thread keeping its connection (telephony.asgi.keep_lane_connections).

Needs PostgreSQL (a scratch database is created and dropped) and nothing else. Each figure is the best
of three rounds: this 2-core box's speed swings by a third from minute to minute.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _servers import InProcessASGI, create_database, drop_database, free_port, prod_env  # noqa: E402

DB_NAME = "switchboard_bench_overhead"


def asgi_cpu(path: str, method: str, body: bytes, n: int) -> float:
    """Best-of-three CPU milliseconds per request through the ASGI application, one at a time."""
    from contactcenter.asgi import application

    asgi = InProcessASGI(application, scheme="https", port=443)
    headers = {"content-type": "application/json"}

    def run() -> int:
        return asgi.request(method, path, headers=headers, body=body)[0]

    try:
        status = run()
        for _ in range(200):
            run()
        best = float("inf")
        for _ in range(3):
            started = time.process_time()
            for _ in range(n):
                run()
            best = min(best, (time.process_time() - started) * 1000 / n)
    finally:
        asgi.close()
    print(f"  {method} {path} -> {status}: {best:.3f} ms CPU per request")
    return best


def housekeeping_cpu(n: int, keep: bool) -> float:
    from django.core import signals
    from django.db import connection

    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        for _ in range(n):
            signals.request_started.send(sender=None)
            with connection.cursor():
                pass
            if keep:
                connection.close_at = time.monotonic() + 60  # what keep_lane_connections does once
            signals.request_finished.send(sender=None)
        best = min(best, (time.process_time() - started) * 1e6 / n)
    connection.close()
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per round (default 3000)")
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432", help="server URL, no database")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="switchboard-bench-"))
    env = prod_env(
        settings_module="contactcenter.settings.prod",
        tmp=tmp,
        port=free_port(),
        database_url=f"{args.postgres.rstrip('/')}/{DB_NAME}",
        redis_url="redis://127.0.0.1:6379/2",
        prefix="switchboard-bench-overhead",
    )
    create_database(args.postgres, DB_NAME)
    try:
        import os

        os.environ.update(env)
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)
        logging.disable(logging.CRITICAL)  # one log line per request otherwise
        warnings.filterwarnings("ignore", message="No directory at")  # no collectstatic here
        print(f"Database pool: {settings.DATABASES['default'].get('OPTIONS', {}).get('pool')}")
        print("1. Through the ASGI application, one request at a time:")
        bare = asgi_cpu("/healthz/live", "GET", b"", args.requests)
        door = asgi_cpu("/telephony/vonage/event", "POST", b'{"uuid":"x","status":"ringing"}', args.requests)
        print(f"  the webhook door up to its signature check = {door / bare:.2f} bare requests")
        print("2. Database connection housekeeping per request (signals + a cursor), production pool:")
        borrow = housekeeping_cpu(args.requests, keep=False)
        kept = housekeeping_cpu(args.requests, keep=True)
        print(f"  borrowed and given back every request: {borrow:.0f} us; kept by the thread: {kept:.0f} us")
    finally:
        from django.db import connections

        connections.close_all()
        drop_database(args.postgres, DB_NAME)
    return 0


if __name__ == "__main__":
    sys.exit(main())
