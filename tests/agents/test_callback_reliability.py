"""A promised callback survives a worker killed mid-task, a Redis restart and a web restart, and the
customer is dialled exactly once per attempt.

What a business would notice if this broke: a callback that was promised and never made (lost), or a
customer rung twice for the same attempt (duplicated). Due work lives in the database
(``Callback.due_at``), claimed in one transaction per batch; the dial is keyed by the attempt's
``dial_key``. Vonage is the FakeVoiceClient.

Postgres-only tests (a real SIGKILL of another process holding the row locks; two concurrent
dispatchers) are marked ``postgres``; the broker test is marked ``redis`` (it uses its own Redis db, 14,
and flushes only that one). Both skip without the service and fail under REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import json
import os
import queue as queue_module
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection, connections
from django.utils import timezone

import agents.callbacks as callbacks_module
from agents.callbacks import callback_dial, callbacks_dispatch, on_callback_leg_event
from agents.models import AgentProfile, Escalation, EscalationKind
from agents.services import escalation_accept
from agents.tasks import callback_dial_task, callbacks_dispatch_task
from conversations import hooks
from conversations.callbacks import callback_schedule
from conversations.models import Callback, CallbackAttempt, CallbackPreference, CallbackSource, CallbackState
from flows.models import Queue
from telephony.client import reset_fake_client
from tenants.scoping import tenant_scope, unscoped
from tests.agents.test_routing import make_ready
from tests.factories import make_phone_number

ROOT = Path(__file__).resolve().parents[2]
AGENT_PHONE = "+15555550142"
_phones = itertools.count(1000)


class WorkerKilled(Exception):
    """Stands in for SIGKILL / OOM in the middle of a task (the in-process simulation)."""


# --- helpers ---------------------------------------------------------------------------------------------
@pytest.fixture
def hooks_lost(monkeypatch):
    """The after-commit hook of the request that promised the callback (SMS, dispatch-now message) never
    ran: the web process died right after the commit, or the callback was not yet due then. Only the
    database knows about it."""
    lost: list[Callback] = []
    monkeypatch.setattr(hooks, "callback_scheduled", lost.append)
    return lost


def promise(tenant, *, due: dt.datetime, **extra) -> Callback:
    """A callback promised through the real service, due at ``due`` (no opening hours: due when asked)."""
    with tenant_scope([tenant.id]):
        Queue.objects.get_or_create(tenant=tenant, name="front-desk")
        return callback_schedule(
            tenant_id=tenant.id,
            phone=f"+1555777{next(_phones):04d}",
            source=CallbackSource.STAFF,
            name="Pat Lee",
            now=due,
            **extra,
        )


def escalations_per_callback(callback_ids) -> dict[int, int]:
    with unscoped("test assertions"):
        counts = dict.fromkeys(callback_ids, 0)
        for callback_id in Escalation.objects.filter(callback_id__in=callback_ids).values_list(
            "callback_id", flat=True
        ):
            counts[callback_id] += 1
        return counts


def rows(callback_ids) -> list[Callback]:
    with unscoped("test assertions"):
        return list(Callback.objects.filter(pk__in=callback_ids).order_by("pk"))


def dispatch(tenant, now=None, **kwargs) -> list[int]:
    with tenant_scope([tenant.id]):
        return callbacks_dispatch(now=now or timezone.now(), **kwargs)


def poll(predicate, *, timeout: float, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


# --- 1. worker killed mid-dispatch (in-process) -----------------------------------------------------------
def test_a_worker_killed_mid_batch_commits_nothing_and_the_next_run_dispatches_each_once(
    tenant_a, hooks_lost, monkeypatch, django_capture_on_commit_callbacks
):
    now = timezone.now()
    promised = [promise(tenant_a, due=now - dt.timedelta(minutes=m)) for m in (3, 2, 1)]
    ids = [c.pk for c in promised]
    real_dispatch_one = callbacks_module.dispatch_one
    seen: list[int] = []

    def dies_after_the_first(*, callback, now):
        seen.append(callback.pk)
        if len(seen) > 1:
            raise WorkerKilled("killed after the first callback of the batch")
        return real_dispatch_one(callback=callback, now=now)

    monkeypatch.setattr(callbacks_module, "dispatch_one", dies_after_the_first)
    with django_capture_on_commit_callbacks(execute=False) as after_commit, pytest.raises(WorkerKilled):
        dispatch(tenant_a, now)
    assert seen[:2] == ids[:2], "the first callback was dispatched inside the batch before the kill"

    # The batch rolled back: still scheduled, nothing offered, no attempt, no message for work that is not there.
    assert [(c.state, c.attempts, c.dispatched_at) for c in rows(ids)] == [(CallbackState.SCHEDULED, 0, None)] * 3
    with unscoped("test assertions"):
        assert not Escalation.objects.filter(kind=EscalationKind.CALLBACK).exists()
        assert not CallbackAttempt.objects.exists()
    assert after_commit == []

    # The next run (the next minute's beat) dispatches each exactly once; a run after that finds nothing.
    monkeypatch.setattr(callbacks_module, "dispatch_one", real_dispatch_one)
    made = dispatch(tenant_a, now)
    assert len(made) == 3
    assert dispatch(tenant_a, now + dt.timedelta(minutes=1)) == []
    assert escalations_per_callback(ids) == dict.fromkeys(ids, 1)
    assert [(c.state, c.attempts) for c in rows(ids)] == [(CallbackState.QUEUED, 1)] * 3
    with unscoped("test assertions"):
        assert sorted(CallbackAttempt.objects.values_list("callback_id", "number")) == [(i, 1) for i in ids]


def test_one_business_failing_does_not_stop_the_others_in_the_beat_task(tenant_a, tenant_b, hooks_lost, monkeypatch):
    now = timezone.now()
    ours, theirs = promise(tenant_a, due=now - dt.timedelta(minutes=1)), promise(tenant_b, due=now)
    real_dispatch_one = callbacks_module.dispatch_one

    def broken_for_a(*, callback, now):
        if callback.tenant_id == tenant_a.id:
            raise RuntimeError("tenant A's dispatch is broken")
        return real_dispatch_one(callback=callback, now=now)

    monkeypatch.setattr(callbacks_module, "dispatch_one", broken_for_a)
    assert callbacks_dispatch_task.apply().get() == 1
    assert escalations_per_callback([ours.pk, theirs.pk]) == {ours.pk: 0, theirs.pk: 1}
    monkeypatch.setattr(callbacks_module, "dispatch_one", real_dispatch_one)
    assert callbacks_dispatch_task.apply().get() == 1  # A's is still due and goes on the next run
    assert escalations_per_callback([ours.pk, theirs.pk]) == {ours.pk: 1, theirs.pk: 1}


# --- 2. killed for real, and concurrent dispatchers (PostgreSQL) ---------------------------------------------
#: Runs in a child process against the test database: dispatches this tenant's due callbacks, then hangs
#: inside the batch transaction (row locks held) after the first one, until the test SIGKILLs it.
CHILD = r"""
import os, sys, time
import django

django.setup()
from django.utils import timezone

import agents.callbacks as callbacks
from tenants.scoping import tenant_scope

hold = float(os.environ["SB_TEST_HOLD_LOCKS_SECONDS"])  # read by this test-only patch, never by the product
real_dispatch_one = callbacks.dispatch_one


def dispatch_then_hang(*, callback, now):
    escalation = real_dispatch_one(callback=callback, now=now)
    print(f"HOLDING {callback.pk} {escalation.pk}", flush=True)
    time.sleep(hold)
    return escalation


callbacks.dispatch_one = dispatch_then_hang
with tenant_scope([int(sys.argv[1])]):
    callbacks.callbacks_dispatch(now=timezone.now())
print("COMMITTED", flush=True)
"""


def _test_database_url() -> str:
    s = connection.settings_dict
    auth = quote(s["USER"] or "", safe="") + (f":{quote(s['PASSWORD'], safe='')}" if s.get("PASSWORD") else "")
    netloc = f"{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}"
    return urlunsplit(("postgres", netloc, "/" + s["NAME"], "", ""))


def _lines(proc: subprocess.Popen) -> queue_module.Queue:
    out: queue_module.Queue = queue_module.Queue()

    def read() -> None:
        for line in proc.stdout:
            out.put(line.strip())
        out.put(None)

    threading.Thread(target=read, daemon=True).start()
    return out


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_worker_sigkilled_while_holding_the_claim_loses_nothing_and_doubles_nothing(tenant_a, hooks_lost):
    now = timezone.now()
    ids = [promise(tenant_a, due=now - dt.timedelta(minutes=5 - n)).pk for n in range(5)]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "contactcenter.settings.test",
        "DATABASE_URL": _test_database_url(),
        "SB_TEST_HOLD_LOCKS_SECONDS": "60",
        "PYTHONPATH": str(ROOT),
    }
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tenant_a.id)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = _lines(child)
        try:
            first = lines.get(timeout=20)
        except queue_module.Empty:
            first = None
        if not (first or "").startswith("HOLDING"):
            child.kill()
            pytest.fail(f"the child worker did not start dispatching: {first!r}\n{child.stderr.read()[-2000:]}")
        assert int(first.split()[1]) == ids[0]

        # While the dying worker holds the batch, another worker skips those rows and sees nothing committed.
        assert dispatch(tenant_a) == []
        assert escalations_per_callback(ids) == dict.fromkeys(ids, 0)

        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
        child.stdout.close()
        child.stderr.close()

    # PostgreSQL rolls the killed worker's transaction back and releases its locks: the next run takes them.
    made = poll(lambda: dispatch(tenant_a), timeout=10)
    assert len(made) == 5, "the callbacks held by the killed worker were not dispatched by the next run"
    assert dispatch(tenant_a) == []
    assert escalations_per_callback(ids) == dict.fromkeys(ids, 1)
    assert [(c.state, c.attempts) for c in rows(ids)] == [(CallbackState.QUEUED, 1)] * 5


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_dispatchers_dispatch_each_of_fifty_callbacks_exactly_once(tenant_a, hooks_lost, monkeypatch):
    now = timezone.now()
    ids = [promise(tenant_a, due=now - dt.timedelta(seconds=n)).pk for n in range(50)]
    real_dispatch_one = callbacks_module.dispatch_one

    def slow_dispatch_one(*, callback, now):
        time.sleep(0.005)  # hold each batch's locks a little, so the two workers overlap
        return real_dispatch_one(callback=callback, now=now)

    monkeypatch.setattr(callbacks_module, "dispatch_one", slow_dispatch_one)
    barrier = threading.Barrier(2)
    results: dict[str, list[int]] = {}
    errors: list[str] = []

    def worker(name: str) -> None:
        made: list[int] = []
        try:
            barrier.wait(timeout=30)
            while batch := dispatch(tenant_a, now, limit=5):
                made.extend(batch)
        except Exception as exc:  # anything else is a bug this test must show
            errors.append(f"{name}: {exc!r}")
        finally:
            connections.close_all()
        results[name] = made

    threads = [threading.Thread(target=worker, args=(name,)) for name in ("worker-1", "worker-2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    made = results["worker-1"] + results["worker-2"]
    assert len(made) == len(set(made)) == 50, {k: len(v) for k, v in results.items()}
    assert escalations_per_callback(ids) == dict.fromkeys(ids, 1)
    assert {c.state for c in rows(ids)} == {CallbackState.QUEUED}
    with unscoped("test assertions"):
        assert CallbackAttempt.objects.filter(callback_id__in=ids).count() == 50


# --- 3. dialled exactly once per attempt --------------------------------------------------------------------
@pytest.fixture
def fake():
    return reset_fake_client()


@pytest.fixture
def held(tenant_a, bob, hooks_lost):
    """A due callback, dispatched and accepted by bob, whose phone can be rung; the business has a number."""
    now = timezone.now()
    with tenant_scope([tenant_a.id]):
        make_phone_number(tenant_a)
    make_ready(bob, now=now)
    AgentProfile.objects.filter(user=bob).update(phone_number=AGENT_PHONE)
    callback = promise(tenant_a, due=now - dt.timedelta(minutes=1))
    [escalation_id] = dispatch(tenant_a, now)
    with tenant_scope([tenant_a.id]):
        escalation_accept(escalation_id=escalation_id, agent=bob, now=now)
    return callback, escalation_id


def press_call_back(tenant, escalation_id, agent) -> CallbackAttempt:
    """The agent presses "Call back" (the dial task is captured, not run: the tests deliver it)."""
    with tenant_scope([tenant.id]):
        return callback_dial(escalation_id=escalation_id, agent=agent, now=timezone.now())


def deliver(attempt: CallbackAttempt, ring: int):
    """One delivery of the dial task's message (acks_late: a crash before the ack means another one)."""
    return callback_dial_task.apply(
        kwargs={"tenant_id": attempt.tenant_id, "attempt_id": attempt.pk, "ring": ring}
    ).get()


def agent_calls(fake) -> list[dict]:
    return [c for c in fake.calls if c["method"] == "call_agent_then_customer"]


def attempt_row(attempt) -> CallbackAttempt:
    with unscoped("test assertions"):
        return CallbackAttempt.objects.get(pk=attempt.pk)


def leg_event(url: str, status: str) -> None:
    """Vonage posts a leg's status to its event URL; the marker in the query names attempt, ring and leg."""
    on_callback_leg_event(dict(parse_qsl(urlsplit(url).query)), {"status": status, "uuid": uuid.uuid4().hex})


def test_a_redelivered_dial_task_places_one_call(tenant_a, bob, held, fake):
    callback, escalation_id = held
    attempt = press_call_back(tenant_a, escalation_id, bob)
    first = deliver(attempt, ring=1)
    again = deliver(attempt, ring=1)  # the worker died before the ack: the message is delivered again

    [call] = agent_calls(fake)
    assert first == again == call["result"].uuid
    row = attempt_row(attempt)
    assert call["idempotency_key"] == row.dial_key == f"callback-{callback.pk}-attempt-1-ring-1"
    assert row.agent_leg_uuid == first and row.agent_rings == 1
    assert call["customer_number"] == callback.phone.lstrip("+")


def test_a_crash_after_the_call_before_its_uuid_is_saved_does_not_call_again(tenant_a, bob, held, fake, monkeypatch):
    callback, escalation_id = held
    attempt = press_call_back(tenant_a, escalation_id, bob)
    real_call = fake.call_agent_then_customer

    def call_then_die(**kwargs):
        real_call(**kwargs)  # Vonage placed the call ...
        raise WorkerKilled("... and the worker died before saving the leg's uuid")

    monkeypatch.setattr(fake, "call_agent_then_customer", call_then_die)
    with pytest.raises(WorkerKilled):
        deliver(attempt, ring=1)
    assert attempt_row(attempt).agent_leg_uuid == ""
    monkeypatch.setattr(fake, "call_agent_then_customer", real_call)

    # The redelivery sees the ring already claimed: it does not call again (Vonage may have created the call;
    # with the real API an idempotency key of ours cannot tell).
    assert deliver(attempt, ring=1) is None
    [call] = agent_calls(fake)
    assert fake.deduplicated == 0
    row = attempt_row(attempt)
    assert call["idempotency_key"] == row.dial_key and row.agent_leg_status == "placing"
    # Vonage's events for the call it did create bring the leg's uuid, and the call goes on.
    leg_uuid = call["result"].uuid
    on_callback_leg_event(dict(parse_qsl(urlsplit(call["event_url"]).query)), {"status": "answered", "uuid": leg_uuid})
    row = attempt_row(attempt)
    assert row.agent_leg_uuid == leg_uuid and row.agent_leg_status == "answered"


def test_an_unanswered_ring_may_ring_again_with_a_new_key_but_the_customer_is_dialled_once(tenant_a, bob, held, fake):
    callback, escalation_id = held
    attempt = press_call_back(tenant_a, escalation_id, bob)
    deliver(attempt, ring=1)
    with pytest.raises(PermissionDenied):  # a ring is live: pressing again does nothing
        press_call_back(tenant_a, escalation_id, bob)
    [ring_1] = agent_calls(fake)

    leg_event(ring_1["event_url"], "unanswered")  # the agent did not pick up: the customer was never dialled
    attempt = press_call_back(tenant_a, escalation_id, bob)
    deliver(attempt, ring=2)
    deliver(attempt, ring=2)  # redelivered
    deliver(attempt, ring=1)  # a stale redelivery of the first ring: superseded, no call
    ring_1_again, ring_2 = agent_calls(fake)
    assert ring_1_again is ring_1
    assert ring_1["idempotency_key"] == f"callback-{callback.pk}-attempt-1-ring-1"
    assert ring_2["idempotency_key"] == f"callback-{callback.pk}-attempt-1-ring-2" == attempt_row(attempt).dial_key

    # The customer is dialled by the agent leg's own NCCO, only once that leg is answered: one connect each.
    for call in (ring_1, ring_2):
        connects = [a for a in call["ncco"] if a["action"] == "connect"]
        assert [e["number"] for a in connects for e in a["endpoint"]] == [callback.phone.lstrip("+")]
    customer_url = next(a for a in ring_2["ncco"] if a["action"] == "connect")["eventUrl"][0]

    leg_event(ring_2["event_url"], "answered")
    leg_event(customer_url, "answered")
    leg_event(ring_1["event_url"], "answered")  # a late event of the dead ring changes nothing
    with pytest.raises(PermissionDenied):  # the customer was dialled: no more rings for this attempt
        press_call_back(tenant_a, escalation_id, bob)
    deliver(attempt, ring=2)
    assert len(agent_calls(fake)) == 2
    row = attempt_row(attempt)
    assert (row.agent_rings, row.agent_leg_status, row.customer_status) == (2, "answered", "answered")
    assert row.bridged_at is not None


# --- 4. Redis restart ---------------------------------------------------------------------------------------
def _redis_db_url(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


@pytest.fixture
def broker_14(settings):
    """A Celery app like production's (not eager) whose broker is Redis db 14, current for the test: every
    task the product sends lands there. Only db 14 is ever flushed."""
    import redis
    from celery import Celery
    from celery._state import get_current_app

    url = _redis_db_url(settings.REDIS_URL, 14)
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    client.flushdb()
    app = Celery("switchboard-test-redis-restart", set_as_current=False)
    app.config_from_object("django.conf:settings", namespace="CELERY")
    queue = f"switchboard-test-{uuid.uuid4().hex[:8]}"
    app.conf.update(broker_url=url, task_always_eager=False, task_default_queue=queue)
    previous = get_current_app()
    app.set_current()
    try:
        yield client, queue
    finally:
        previous.set_current()
        app.close()
        client.flushdb()
        client.close()


def queued(client, queue: str) -> list[dict]:
    """The messages waiting in the broker: task name, ETA and kwargs."""
    messages = []
    for raw in client.lrange(queue, 0, -1):
        envelope = json.loads(raw)
        body = envelope["body"]
        if envelope["properties"].get("body_encoding") == "base64":
            body = base64.b64decode(body)
        _args, kwargs, _embed = json.loads(body)
        headers = envelope["headers"]
        messages.append({"task": headers["task"], "eta": headers.get("eta"), "kwargs": kwargs})
    return messages


@pytest.mark.redis
def test_a_redis_restart_that_loses_the_queued_messages_loses_no_callback(
    tenant_a, broker_14, django_capture_on_commit_callbacks
):
    client, queue = broker_14
    now = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):  # the hooks run and send their messages
        due = promise(tenant_a, due=now)
        later = promise(
            tenant_a,
            due=now,
            preference=CallbackPreference.AT,
            requested_for=now + dt.timedelta(days=3),
        )
    assert later.due_at == now + dt.timedelta(days=3)

    messages = queued(client, queue)
    assert sorted((m["task"], m["kwargs"].get("callback_id")) for m in messages) == sorted(
        [
            ("agents.tasks.callback_sms", due.pk),
            ("agents.tasks.callback_sms", later.pk),
            ("agents.tasks.callbacks_dispatch_tenant", None),  # "due now": dispatch at once, not next minute
        ]
    )
    # The callback due in three days is no Celery ETA: no message anywhere carries one, and nothing but
    # its SMS confirmation (sent now) names it. Besides the queue, the db holds only kombu's bindings.
    assert [m for m in messages if m["eta"] is not None] == []
    keys = {k.decode() for k in client.keys("*")} - {queue}
    assert keys and all(k.startswith("_kombu.binding") for k in keys), keys

    client.flushdb()  # Redis restarts without persistence: every queued message is gone
    assert client.dbsize() == 0

    # The next beat tick runs the dispatch task: the due callback is offered, the later one waits.
    assert callbacks_dispatch_task.apply().get() == 1
    assert escalations_per_callback([due.pk, later.pk]) == {due.pk: 1, later.pk: 0}
    assert [c.state for c in rows([due.pk, later.pk])] == [CallbackState.QUEUED, CallbackState.SCHEDULED]


# --- 5. web/worker restart with the embedded runtime (`make run`) -------------------------------------------
@pytest.fixture
def restarted_runtime(settings, transactional_db):
    """Starts `make run`'s in-process worker + beat on demand (as tests/platform/test_embedded.py does),
    with the production callback dispatch entry firing every 0.5 s instead of every minute."""
    from contactcenter.celery import app
    from contactcenter.embedded import start_embedded_celery

    queue = f"switchboard-test-{uuid.uuid4().hex[:8]}"
    old = {k: app.conf[k] for k in ("task_always_eager", "task_default_queue", "beat_schedule")}
    entry = {**settings.CELERY_BEAT_SCHEDULE["agents-callbacks-dispatch"], "schedule": 0.5}
    started = []

    def start():
        app.conf.task_always_eager = False
        app.conf.task_default_queue = queue
        app.amqp.queues = app.amqp.Queues(app.conf.task_queues, app.conf.task_create_missing_queues)
        app.amqp.queues.select_add(queue)
        app.conf.beat_schedule = {"agents-callbacks-dispatch": entry}
        started.append(start_embedded_celery(app))

    try:
        yield start
    finally:
        for embedded in started:
            embedded.stop()
        app.conf.update(old)


@pytest.mark.django_db(transaction=True)
def test_a_callback_that_fell_due_while_the_server_was_down_is_dispatched_when_it_starts(
    tenant_a, bob, hooks_lost, restarted_runtime
):
    now = timezone.now()
    make_ready(bob, now=now)
    # Promised two hours ago for an hour ago; nothing was running when it fell due.
    callback = promise(
        tenant_a,
        due=now - dt.timedelta(hours=2),
        preference=CallbackPreference.AT,
        requested_for=now - dt.timedelta(hours=1),
    )
    assert [(c.state, c.due_at) for c in rows([callback.pk])] == [(CallbackState.SCHEDULED, callback.due_at)]
    assert escalations_per_callback([callback.pk]) == {callback.pk: 0}

    restarted_runtime()  # `make run` starts again: worker and beat in-process

    def offered():
        [row] = rows([callback.pk])
        return row.state == CallbackState.QUEUED and row.first_offered_at is not None and row

    row = poll(offered, timeout=10)
    assert row, f"not dispatched and offered within 10 s: {rows([callback.pk])[0].__dict__}"
    assert escalations_per_callback([callback.pk]) == {callback.pk: 1}
    with unscoped("test assertions"):
        escalation = Escalation.objects.get(callback_id=callback.pk)
        assert escalation.kind == EscalationKind.CALLBACK
        assert escalation.offers.filter(agent=bob).exists()
    assert row.attempts == 1 and row.dispatched_at is not None
