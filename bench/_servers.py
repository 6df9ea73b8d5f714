"""Helpers shared by the benchmarks: free ports, local daphne servers (loopback only), a scratch Postgres
database, percentiles and a line about the machine."""

from __future__ import annotations

import os
import platform
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_servers(env: dict[str, str], ports: list[int], tmp: Path) -> list[subprocess.Popen]:
    procs = []
    for port in ports:
        log = open(tmp / f"daphne-{port}.log", "wb")  # noqa: SIM115 - closed with the process
        cmd = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "contactcenter.asgi:application"]
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT))
    return procs


def wait_healthy(ports: list[int], procs: list[subprocess.Popen], timeout: float = 60) -> None:
    import http.client

    deadline = time.monotonic() + timeout
    for port, proc in zip(ports, procs, strict=True):
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"daphne on port {port} exited with {proc.returncode}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    conn.close()
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"daphne on port {port} did not become healthy in {timeout:.0f} s")
            time.sleep(0.25)


def prod_env(
    *, settings_module: str, tmp: Path, port: int, database_url: str, redis_url: str, prefix: str
) -> dict[str, str]:
    """Production settings with local, throwaway values for every required secret (loopback only)."""
    return {
        "DJANGO_SETTINGS_MODULE": settings_module,
        "PYTHONPATH": os.pathsep.join([str(tmp), str(ROOT)]),
        "SECRET_KEY": secrets.token_urlsafe(40),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SITE_URL": f"http://127.0.0.1:{port}",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CACHE_PREFIX": prefix,
        "CHANNELS_PREFIX": prefix,
        "EMAIL_HOST": "localhost",
        "DEFAULT_FROM_EMAIL": "bench@localhost",
        "VONAGE_SIGNATURE_SECRET": secrets.token_hex(32),
        "VONAGE_APPLICATION_ID": "bench-application",
        "VONAGE_PRIVATE_KEY": "bench-not-a-key",
        "VONAGE_CLIENT": "fake",
        "STRIPE_SECRET_KEY": "sk_test_bench",
        "STRIPE_WEBHOOK_SECRET": "whsec_bench",
        "SECURE_SSL_REDIRECT": "False",
        "PYTHONUNBUFFERED": "1",
    }


def percentiles(values: list[float]) -> dict:
    """n, p50, p90, p99 and max (nearest rank), rounded to 0.1; {"n": 0} for no values."""
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, max(0, int(round(q * len(ordered) + 0.5)) - 1))], 1)

    return {"n": len(ordered), "p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99), "max": round(ordered[-1], 1)}


def cpu_seconds(groups: dict[str, list[int]] | None = None) -> dict[str, float]:
    """CPU seconds (user + system) used so far, per group: the given pids (e.g. "servers"), this process
    ("client"), and every running process named postgres / redis-server (Linux /proc; 0 elsewhere)."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    out: dict[str, float] = {"client": sum(os.times()[:2])}
    wanted = {pid: name for name, pids in (groups or {}).items() for pid in pids}
    for name in ("postgres", "redis", *(groups or {})):
        out.setdefault(name, 0.0)
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        used = (int(fields[11]) + int(fields[12])) / tick
        pid = int(entry.name)
        if pid in wanted:
            out[wanted[pid]] += used
        elif comm == "postgres":
            out["postgres"] += used
        elif comm.startswith("redis-server"):
            out["redis"] += used
    return out


def cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: round(after.get(k, 0.0) - v, 2) for k, v in before.items()}


def machine() -> str:
    """E.g. "2 cores (AMD EPYC ...), 23.5 GiB RAM, Python 3.11.7, Linux"."""
    cpu = platform.processor() or platform.machine()
    mem = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        kb = int(next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal")).split()[1])
        mem = f", {kb / 1024 / 1024:.1f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    return f"{os.cpu_count()} cores ({cpu}){mem}, Python {platform.python_version()}, {platform.system()}"


def admin_connect(postgres_url: str):
    """An autocommit connection to the server's maintenance database (to create and drop bench databases)."""
    import psycopg

    return psycopg.connect(f"{postgres_url.rstrip('/')}/postgres", autocommit=True, connect_timeout=5)


def create_database(postgres_url: str, name: str) -> None:
    with admin_connect(postgres_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(postgres_url: str, name: str) -> None:
    with admin_connect(postgres_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def stop(procs: list[subprocess.Popen], timeout: float = 10, *, kill_group: bool = False) -> None:
    """SIGTERM every process, wait, then SIGKILL what is left (its whole process group with kill_group)."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            if kill_group:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
            proc.wait(timeout=5)


def clear_redis(url: str, prefix: str) -> None:
    """Delete the bench's keys (``<prefix>:*``); best effort, and says so when it cannot."""
    try:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        keys = list(client.scan_iter(f"{prefix}:*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
        client.close()
    except Exception as exc:
        print(f"(could not clear the bench's Redis keys: {exc})", file=sys.stderr)


class InProcessASGI:
    """Requests straight into an ASGI application on an event loop of its own, one at a time, as daphne
    sends them (each from a fresh context, the client never disconnecting): for CPU per request without
    daphne, the network or contention. ``request`` returns (status, body)."""

    def __init__(self, application, *, host: str = "127.0.0.1", scheme: str = "http", port: int = 80):
        import asyncio

        self.application, self.host, self.scheme, self.port = application, host, scheme, port
        self.loop = asyncio.new_event_loop()

    async def _request(self, method: str, path: str, query: str, headers: dict[str, str], body: bytes):
        import asyncio

        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method.upper(),
            "scheme": self.scheme, "path": path, "raw_path": path.encode(), "query_string": query.encode(),
            "root_path": "", "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", self.port),
            "headers": [(b"host", self.host.encode())] + [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        }  # fmt: skip
        messages: list[dict] = []
        received = False

        async def receive() -> dict:
            nonlocal received
            if received:
                await asyncio.Event().wait()  # the client never disconnects
            received = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict) -> None:
            messages.append(message)

        await self.application(scope, receive, send)
        status = next(m["status"] for m in messages if m["type"] == "http.response.start")
        return status, b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")

    def request(
        self, method: str, path: str, *, query: str = "", headers: dict[str, str] | None = None, body: bytes = b""
    ) -> tuple[int, bytes]:
        import contextvars

        coro = self._request(method, path, query, headers or {}, body)
        return self.loop.run_until_complete(self.loop.create_task(coro, context=contextvars.Context()))

    def close(self) -> None:
        self.loop.close()
