"""The Vonage webhooks through the real ASGI application (telephony/asgi.py): their own short door."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
from django.conf import settings
from django.db import DatabaseError

from telephony.asgi import WebhookHandler
from telephony.ncco import validate_ncco
from telephony.signing import sign_request
from tests.telephony.test_webhooks import NUMBER, answer, input_url, line, ncco_of, speech, talk_text  # noqa: F401


def _scope(method: str, path: str, headers: dict, *, host: str = "testserver", scheme: str = "http") -> dict:
    path, _, query = path.partition("?")
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": scheme,
        "path": path, "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
        "headers": [(b"host", host.encode())] + [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 5000), "server": (host, 80),
    }  # fmt: skip


async def _request(app, method: str, path: str, body: bytes, headers: dict, **where) -> dict:
    """One request through ``app`` on the running loop, as daphne sends it. Returns status, headers, body,
    the number of messages sent, when the body left (``after``) and the app's task (still running)."""
    started = time.monotonic()
    out: dict = {"body": b"", "headers": {}, "messages": 0}
    done = asyncio.Event()
    received = False

    async def receive():
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()

    async def send(message):
        out["messages"] += 1
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
            out["headers"] = {k.decode().lower(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            out["body"] += message.get("body", b"")
            if not message.get("more_body"):
                out["after"] = time.monotonic() - started
                done.set()

    task = asyncio.ensure_future(app(_scope(method, path, headers, **where), receive, send))
    await asyncio.wait_for(done.wait(), 8)
    out["task"] = task
    return out


def asgi(method: str, path: str, *, body: bytes = b"", headers: dict | None = None, host: str = "testserver",
         scheme: str = "http", after_send=None, app=None) -> dict:  # fmt: skip
    """One request through contactcenter.asgi.application (or ``app``), to its end; ``after_send`` runs once
    the response has left."""
    from contactcenter.asgi import application

    async def run():
        out = await _request(app or application, method, path, body, headers or {}, host=host, scheme=scheme)
        if after_send:
            after_send()
        await out.pop("task")
        return out

    return asyncio.run(run())


def signed(payload: dict) -> tuple[bytes, dict]:
    body = json.dumps(payload).encode()
    return body, {
        "content-type": "application/json",
        "authorization": sign_request(body=body, secret=settings.VONAGE_SIGNATURE_SECRET),
    }


def _turns_hang(monkeypatch, *, budget: float) -> threading.Event:
    """Every caller turn hangs (as on a hung database) until the returned event is set; the budget shrinks."""
    monkeypatch.setattr(settings, "VONAGE_TURN_BUDGET_SECONDS", budget)
    unstuck = threading.Event()

    def stuck(*args, **kwargs):
        unstuck.wait(10)
        raise DatabaseError("the database came back too late")

    monkeypatch.setattr("telephony.services.run_turn", stuck)
    return unstuck


@pytest.mark.django_db(transaction=True)
def test_a_stuck_turn_is_apologised_for_within_the_budget_not_when_it_ends(client, line, monkeypatch):  # noqa: F811
    """The turn's own thread is still stuck when the budget runs out: the apology must not wait for it
    (the caller would hear silence until the database or the engine came back)."""
    first = ncco_of(answer(client))
    unstuck = _turns_hang(monkeypatch, budget=0.2)
    body, headers = signed(speech("is there parking"))
    try:
        response = asgi("POST", input_url(first), body=body, headers=headers, after_send=unstuck.set)
    finally:
        unstuck.set()
    ncco = json.loads(response["body"])
    validate_ncco(ncco)
    assert "sorry" in talk_text(ncco).lower()
    assert next(a for a in ncco if a["action"] == "connect")["endpoint"][0]["number"] == "15555550199"
    assert response["after"] < 3, f"the apology took {response['after']:.1f} s"


@pytest.mark.django_db(transaction=True)
def test_a_call_through_the_webhook_door_is_answered_and_logged(line, caplog):  # noqa: F811

    query = f"to={NUMBER.lstrip('+')}&from=15555550123&uuid=door-1&conversation_uuid=CON-9"
    auth = sign_request(
        body=b"", secret=settings.VONAGE_SIGNATURE_SECRET, query=[tuple(p.split("=")) for p in query.split("&")]
    )
    with caplog.at_level("INFO", logger="switchboard.request"):
        response = asgi(
            "GET", f"/telephony/vonage/answer?{query}", headers={"authorization": auth, "x-request-id": "req-77"}
        )
    assert response["status"] == 200
    ncco = json.loads(response["body"])
    validate_ncco(ncco)
    assert "Hello, thanks for calling." in talk_text(ncco)
    assert response["headers"]["x-request-id"] == "req-77"
    assert response["headers"]["x-content-type-options"] == "nosniff"
    assert "set-cookie" not in response["headers"]
    logged = [r for r in caplog.records if r.msg == "request" and getattr(r, "path", "") == "/telephony/vonage/answer"]
    assert logged and logged[0].status == 200


@pytest.mark.django_db(transaction=True)
def test_a_webhook_sends_the_request_signals_once_from_the_thread_that_uses_the_database(line):  # noqa: F811
    """request_started / request_finished close a worker thread's database connection when it is too old or
    broken; the door sends them from the view's own hop (the thread the turn's queries run on), once each."""
    from django.core import signals

    seen: list[tuple[str, str]] = []

    def started(**kwargs):
        seen.append(("started", threading.current_thread().name))

    def finished(**kwargs):
        seen.append(("finished", threading.current_thread().name))

    signals.request_started.connect(started)
    signals.request_finished.connect(finished)
    try:
        body, headers = signed({"uuid": "nobody", "status": "ringing"})
        assert asgi("POST", "/telephony/vonage/event", body=body, headers=headers)["status"] == 200
        forged = asgi("POST", "/telephony/vonage/event", body=body, headers={**headers, "authorization": "Bearer x"})
        assert forged["status"] == 401
    finally:
        signals.request_started.disconnect(started)
        signals.request_finished.disconnect(finished)
    assert [kind for kind, _ in seen] == ["started", "finished"] * 2
    assert all(name.startswith("webhook-") for _, name in seen), seen


@pytest.mark.postgres  # SQLite's in-memory test database is never closed
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("kept_for", "connects"), [(60.0, 1), (0.0, 3)])
def test_a_webhook_thread_keeps_its_database_connection_for_the_next_webhook(line, monkeypatch, kept_for, connects):  # noqa: F811
    """Borrowing a connection for every webhook and giving it back cost a few percent of a turn; the long-lived
    webhook threads keep theirs for LANE_CONNECTION_SECONDS, then give it back (the next one borrows anew)."""
    from django.db.backends.signals import connection_created

    from telephony import asgi as door

    monkeypatch.setattr(door, "LANE_CONNECTION_SECONDS", kept_for)
    app = WebhookHandler(lanes=1)
    opened: list[str] = []

    def created(**kwargs):
        opened.append(threading.current_thread().name)

    connection_created.connect(created)
    try:
        for n in range(3):
            body, headers = signed({"uuid": f"nobody-{n}", "status": "ringing"})
            assert asgi("POST", "/telephony/vonage/event", body=body, headers=headers, app=app)["status"] == 200
    finally:
        connection_created.disconnect(created)
    assert len(opened) == connects, opened
    assert all(name.startswith("webhook-") for name in opened)


@pytest.mark.django_db(transaction=True)
def test_the_webhook_door_answers_bad_requests_with_a_clear_4xx(line, settings):  # noqa: F811
    unknown = asgi("POST", "/telephony/vonage/nowhere", body=b"{}", headers={"content-type": "application/json"})
    assert unknown["status"] == 404
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body, headers = signed({"uuid": "x", "status": "ringing", "padding": "x" * 2000})
    too_big = asgi("POST", "/telephony/vonage/event", body=body, headers=headers)
    assert too_big["status"] == 400 and "x-request-id" in too_big["headers"]


@pytest.mark.django_db(transaction=True)
def test_the_webhook_door_refuses_forgeries_unknown_hosts_and_plain_http_when_https_is_required(line, settings):  # noqa: F811
    body, headers = signed({"uuid": "x", "status": "ringing"})
    forged = asgi("POST", "/telephony/vonage/event", body=body, headers={**headers, "authorization": "Bearer nope"})
    assert forged["status"] == 401
    assert json.loads(forged["body"])["error"]["code"] == "unauthorized"
    assert asgi("POST", "/telephony/vonage/event", body=body, headers=headers, host="evil.example")["status"] == 400
    settings.SECURE_SSL_REDIRECT = True  # read when the handler is built, as at a server's start
    door = WebhookHandler()
    redirected = asgi("POST", "/telephony/vonage/event", body=body, headers=headers, app=door)
    assert redirected["status"] == 301 and redirected["headers"]["location"].startswith("https://")
    body, headers = signed({"uuid": "x", "status": "ringing"})
    assert (
        asgi("POST", "/telephony/vonage/event", body=body, headers=headers, scheme="https", app=door)["status"] == 200
    )


@pytest.mark.django_db(transaction=True)
def test_pages_other_than_the_webhooks_keep_the_full_middleware_chain():
    page = asgi("GET", "/accounts/login/")
    assert page["status"] == 200
    assert page["headers"]["x-frame-options"] == "DENY"  # clickjacking middleware: full chain only
    assert "csrftoken" in page["headers"].get("set-cookie", "")


def test_webhook_work_runs_on_long_lived_threads_and_passes_over_a_stuck_one():
    from types import SimpleNamespace

    from telephony.asgi import Lanes, run_in_lane

    lanes = Lanes(2)

    def thread_name():
        return threading.current_thread().name

    async def main():
        release = threading.Event()
        names = []

        async def stuck_turn():
            async with lanes.lane() as lane:
                request = SimpleNamespace(webhook_lane=lane)
                names.append(await run_in_lane(request, thread_name))
                await run_in_lane(request, lambda: release.wait(10))

        stuck = asyncio.ensure_future(stuck_turn())
        await asyncio.sleep(0.05)
        started = time.monotonic()
        for _ in range(3):  # one after another while the other lane is stuck
            async with lanes.lane() as lane:
                names.append(await run_in_lane(SimpleNamespace(webhook_lane=lane), thread_name))
        waited = time.monotonic() - started
        release.set()
        await stuck
        return names, waited

    names, waited = asyncio.run(main())
    assert waited < 2
    assert names[0] not in names[1:], "no request waited behind the stuck turn"
    assert len(set(names[1:])) == 1 and names[1].startswith("webhook-"), "the same worker thread served them all"


@pytest.mark.django_db(transaction=True)
def test_when_every_webhook_thread_is_stuck_the_next_caller_still_hears_the_apology_in_time(
    client,
    line,  # noqa: F811
    monkeypatch,
):
    """A hanging database can hold every webhook thread of a process; the next turn must not wait for one
    (Django's own request_started signal runs on that thread before the view's budget even starts)."""
    from contactcenter.asgi import django_asgi_app
    from telephony.asgi import http_router

    first = ncco_of(answer(client))
    unstuck = _turns_hang(monkeypatch, budget=0.3)
    app = http_router(django_asgi_app)  # its own webhook threads
    url = input_url(first)

    async def main():
        holding = [
            asyncio.ensure_future(_request(app, "POST", url, *signed(speech(f"is there parking {n}"))))
            for n in range(settings.WEBHOOK_THREADS)
        ]
        await asyncio.sleep(0.1)  # every thread is now inside a stuck turn
        late = await _request(app, "POST", url, *signed(speech("hello?")))
        unforged = await _request(app, "POST", url, b"{}", {"content-type": "application/json"})
        unstuck.set()
        held = await asyncio.gather(*holding)
        for response in [*held, late, unforged]:
            await response["task"]
        return held, late, unforged

    try:
        held, late, unforged = asyncio.run(main())
    finally:
        unstuck.set()
    for response in [*held, late]:
        ncco = json.loads(response["body"])
        validate_ncco(ncco)
        assert "sorry" in talk_text(ncco).lower()
        assert next(a for a in ncco if a["action"] == "connect")["endpoint"][0]["number"] == "15555550199"
    assert late["after"] < 2, f"the caller waited {late['after']:.1f} s in silence"
    assert late["messages"] == 2, "one response, not a second one when the stuck turn ends"
    assert unforged["status"] == 401, "an unsigned request is refused, also while the threads are stuck"


@pytest.mark.parametrize(
    ("method", "path", "payload", "expected"),
    [
        ("POST", "/telephony/vonage/event", {"uuid": "u", "status": "completed"}, {"ok": True}),
        ("POST", "/telephony/vonage/recording/7/", {"recording_url": "https://x/r"}, []),
        ("POST", "/telephony/vonage/transcription/7/", {"status": "ok"}, []),
        ("POST", "/telephony/vonage/input/7/?fb=%2B15555550199", {"speech": {}}, "apology+fallback"),
        ("GET", "/telephony/vonage/answer?to=15555550100&from=15555550123&uuid=u", None, "apology"),
        ("POST", "/telephony/vonage/fallback", {"reason": "timeout"}, "apology"),
    ],
)
def test_the_doors_backstop_answers_each_webhook_as_its_view_would_on_failure(method, path, payload, expected):
    from urllib.parse import urlsplit

    from telephony.views import door_backstop

    parts = urlsplit(path)
    if payload is None:
        body = b""
        query = dict(p.split("=", 1) for p in parts.query.split("&"))
        authorization = sign_request(body=b"", secret=settings.VONAGE_SIGNATURE_SECRET, query=query)
    else:
        body = json.dumps(payload).encode()
        authorization = sign_request(body=body, secret=settings.VONAGE_SIGNATURE_SECRET)
    scope = _scope(method, path, {"authorization": authorization})
    status, answer_ = door_backstop(scope, body)
    assert status == 200
    if isinstance(expected, str):
        validate_ncco(answer_)
        assert "sorry" in talk_text(answer_).lower()
        connect = [a for a in answer_ if a["action"] == "connect"]
        if expected == "apology+fallback":
            assert connect[0]["endpoint"][0]["number"] == "15555550199"
        else:
            assert not connect
    else:
        assert answer_ == expected
    forged = _scope(method, path, {"authorization": "Bearer not-a-jwt"})
    assert door_backstop(forged, body)[0] == 401
