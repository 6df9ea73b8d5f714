"""A real Switchboard for browser tests: `manage.py serve` in a subprocess, on its own database.

The server runs exactly like `make run` (daphne for HTTP and websockets, the in-process Celery worker
and beat) with dev settings, against a database only it uses: a temporary SQLite file, or, when the
test run is on PostgreSQL, a fresh database on the same server (created here, dropped afterwards).
Redis is used as the channel layer and broker when REDIS_URL is set, with prefixes of its own.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

SIGNATURE_SECRET = "browser-e2e-vonage-signature-secret-0123456789"
TENANT_NAME = "Bright Smile Dental"
DENTAL_NUMBER = "+15555550100"
AGENT_EMAIL = "night.agent@e2e.test"
AGENT_PASSWORD = "e2e-Console-pass-42"


def seed_console_e2e() -> None:
    """Runs inside the server's environment (`manage.py shell -c`): one dental office on
    +15555550100 and an agency that covers it *always*, with one verified agency agent."""
    from allauth.account.models import EmailAddress

    from agents.models import AgentProfile
    from flows.demo import load_example
    from telephony.models import PhoneNumber
    from tenants.models import Agency, AgencyMembership, AgencyRole, Coverage, CoverageMode, Tenant, User
    from tenants.scoping import tenant_scope

    dental = Tenant.objects.create(
        name=TENANT_NAME,
        slug="bright-smile-dental",
        timezone="America/New_York",
        status="active",
        greeting="Bright Smile Dental, this is {agent}. How can I help?",
        agent_notes="Dental emergencies go to Dr. Patel's cell.",
    )
    flow = load_example(dental, "dental.yaml")
    with tenant_scope([dental.id]):
        PhoneNumber.objects.create(tenant=dental, number=DENTAL_NUMBER, label="Main line", flow=flow)
    agent = User.objects.create_user(email=AGENT_EMAIL, password=AGENT_PASSWORD, full_name="Nora Night")
    EmailAddress.objects.create(user=agent, email=AGENT_EMAIL, primary=True, verified=True)
    agency = Agency.objects.create(name="Nightline Answering", slug="nightline-answering")
    AgencyMembership.objects.create(user=agent, agency=agency, role=AgencyRole.AGENT)
    Coverage.objects.create(agency=agency, tenant=dental, mode=CoverageMode.ALWAYS)
    AgentProfile.objects.create(
        user=agent, phone_number="+15555550160", skills=["scheduling", "dental_emergency"], capacity=2
    )
    print("seeded")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_admin():
    import psycopg

    db = settings.DATABASES["default"]
    return psycopg.connect(
        dbname="postgres",
        user=db.get("USER") or None,
        password=db.get("PASSWORD") or None,
        host=db.get("HOST") or None,
        port=db.get("PORT") or None,
        autocommit=True,
    )


def _pg_url(name: str) -> str:
    db = settings.DATABASES["default"]
    auth = db.get("USER") or ""
    if db.get("PASSWORD"):
        auth += ":" + db["PASSWORD"]
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{auth}@{host}:{port}/{name}"


def _clear_redis(url: str, prefix: str) -> None:
    """The server's channel-layer and cache keys (they would otherwise linger for a day)."""
    if not url:
        return
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        keys = list(client.scan_iter(f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@dataclass
class LiveServer:
    base_url: str
    env: dict[str, str]
    process: subprocess.Popen | None = None
    log: Path | None = None
    cleanups: list = field(default_factory=list)

    def manage(self, *args: str, timeout: float = 60) -> str:
        """`manage.py <args>` with the server's environment (its database); returns stdout."""
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def shell(self, code: str) -> str:
        out = self.manage("shell", "-c", code).strip()
        return out.splitlines()[-1] if out else ""  # Django 5.2 may first say what it auto-imported

    def server_log(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log and self.log.exists() else ""


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def switchboard_server():
    """The seeded server; yields a LiveServer. Torn down (process group, database) afterwards."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "DJANGO_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="contactcenter.settings.dev",
        DEBUG="False",
        LOG_LEVEL="WARNING",
        SITE_URL=f"http://127.0.0.1:{port}",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        VONAGE_SIGNATURE_SECRET=SIGNATURE_SECRET,
        VONAGE_APPLICATION_ID="",  # the fake telephony client
        CHANNELS_PREFIX=f"sb-browser-{os.getpid()}",
        CACHE_PREFIX=f"sb-browser-{os.getpid()}",
        PYTHONUNBUFFERED="1",
    )
    server = LiveServer(base_url=f"http://127.0.0.1:{port}", env=env)
    tmp = Path(tempfile.mkdtemp(prefix="sb-browser-"))
    postgres = settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
    if postgres:
        name = f"switchboard_browser_{os.getpid()}"
        with _pg_admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')

        def drop():
            with _pg_admin() as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        env["DATABASE_URL"] = _pg_url(name)
    else:
        env["DATABASE_URL"] = f"sqlite:///{tmp / 'browser.sqlite3'}"

        def drop():
            pass

    try:
        server.manage("migrate", "--noinput", timeout=120)
        assert server.shell("from tests.browser.conftest import seed_console_e2e; seed_console_e2e()") == "seeded"
        server.log = tmp / "server.log"
        with server.log.open("w") as log:
            server.process = subprocess.Popen(
                [sys.executable, "manage.py", "serve", "--port", str(port)],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killed as one
            )
        deadline = time.monotonic() + 30
        while True:
            if server.process.poll() is not None:
                raise RuntimeError("the server exited:\n" + server.server_log())
            try:
                with urllib.request.urlopen(server.base_url + "/healthz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not answer /healthz within 30 s:\n" + server.server_log())
            time.sleep(0.2)
        yield server
    finally:
        if server.process is not None:
            _stop(server.process)
        drop()
        _clear_redis(env.get("REDIS_URL", ""), env["CHANNELS_PREFIX"])
        for path in sorted(tmp.glob("*")):
            path.unlink()
        tmp.rmdir()


@pytest.fixture
def browser_page():
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 1000})
            page = context.new_page()
            page.set_default_timeout(15_000)
            yield page
        finally:
            browser.close()


PRESENCE_STATE = (
    "from agents.models import Presence; "
    "p = Presence.objects.filter(user__email='{email}').first(); print(p.state if p else 'none')"
)


def open_console(page, base_url: str) -> None:
    """Sign in as the agency agent and wait for the console's socket."""
    import re

    from playwright.sync_api import expect

    page.goto(base_url + "/accounts/login/?next=/console/")
    page.fill("input[name=login]", AGENT_EMAIL)
    page.fill("input[name=password]", AGENT_PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_url(re.compile(r"/console/$"))
    expect(page.locator("#conn-status")).to_have_text("Connected")


def choose_presence(page, server, state: str) -> None:
    """Pick a presence with the console's switch and wait until the server has it."""
    from playwright.sync_api import expect

    page.locator(f"#presence-form input[value={state}]").check()
    expect(page.locator(f"#presence-form input[value={state}]")).to_be_checked()
    deadline = time.monotonic() + 10
    while server.shell(PRESENCE_STATE.format(email=AGENT_EMAIL)) != state:
        assert time.monotonic() < deadline, f"the console did not set the agent {state}"
        time.sleep(0.3)
