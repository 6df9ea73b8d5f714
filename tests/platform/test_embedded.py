"""`make run` runs Celery in-process: an after-commit task reaches the worker, and beat fires.

With REDIS_URL set (CI) the same code runs against a real Redis broker.
"""

import threading
import time
import uuid

import pytest
from django.db import transaction

from contactcenter.celery import app
from contactcenter.embedded import start_embedded_celery
from tenants.models import AuditEvent
from tenants.scoping import unscoped
from tenants.tasks import TenantTask, enqueue_on_commit

ran = threading.Event()
beat_fired = threading.Event()


@app.task(base=TenantTask, name="tests.embedded.record_event")
def record_event(*, tenant_id, marker):
    AuditEvent.objects.create(tenant_id=tenant_id, action="test.worker", detail=marker)
    ran.set()


@app.task(name="tests.embedded.beat_probe")
def beat_probe():
    beat_fired.set()


@pytest.fixture
def live_worker(settings):
    queue = f"switchboard-test-{uuid.uuid4().hex[:8]}"
    old = {k: app.conf[k] for k in ("task_always_eager", "task_default_queue", "beat_schedule")}
    app.conf.task_always_eager = False
    app.conf.task_default_queue = queue
    app.amqp.queues = app.amqp.Queues(app.conf.task_queues, app.conf.task_create_missing_queues)
    app.amqp.queues.select_add(queue)
    app.conf.beat_schedule = {"probe": {"task": "tests.embedded.beat_probe", "schedule": 0.5}}
    ran.clear()
    beat_fired.clear()
    embedded = start_embedded_celery(app)
    try:
        yield embedded
    finally:
        embedded.stop()
        app.conf.update(old)


@pytest.mark.django_db(transaction=True)
def test_task_enqueued_after_commit_runs_in_the_embedded_worker(live_worker, tenant_a):
    marker = uuid.uuid4().hex
    with transaction.atomic():
        enqueue_on_commit(record_event, tenant_id=tenant_a.id, marker=marker)
        assert not ran.wait(0.3), "the task must not run before the transaction commits"
    assert ran.wait(15), "the in-process worker did not run the task"
    with unscoped("test assertion"):
        assert AuditEvent.objects.filter(tenant=tenant_a, detail=marker).exists()


@pytest.mark.django_db(transaction=True)
def test_task_is_not_sent_when_the_transaction_rolls_back(live_worker, tenant_a):
    with pytest.raises(RuntimeError), transaction.atomic():
        enqueue_on_commit(record_event, tenant_id=tenant_a.id, marker="rolled-back")
        raise RuntimeError("boom")
    assert not ran.wait(1.5)


@pytest.mark.django_db(transaction=True)
def test_beat_entry_fires_in_the_embedded_beat(live_worker):
    start = time.monotonic()
    assert beat_fired.wait(15), "the in-process beat did not fire the scheduled entry"
    assert time.monotonic() - start < 15
