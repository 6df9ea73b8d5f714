"""Beat tasks: the hourly and nightly rollups, and the weekly digest (sent once per business and week)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.conf import settings
from django.core import mail

from reports import tasks
from reports.models import DailyTenantStats, DigestSent
from reports.services import digest_send
from tenants.models import Role, TenantStatus
from tenants.scoping import tenant_scope
from tests.factories import MembershipFactory
from tests.reports import builders as b

pytestmark = pytest.mark.django_db

MONDAY_8AM = dt.datetime(2030, 1, 14, 8, 0, tzinfo=b.NY)  # the week of Jan 7 has ended
WEEK = dt.date(2030, 1, 7)


def at_now(monkeypatch, moment):
    monkeypatch.setattr(tasks.timezone, "now", lambda: moment)
    monkeypatch.setattr("reports.services.timezone.now", lambda: moment)


def test_beat_runs_the_report_tasks_every_hour():
    schedule = {entry["task"]: entry["schedule"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    for task in ("reports.tasks.rollup_today", "reports.tasks.rollup_closed_days", "reports.tasks.digests_send"):
        assert schedule[task] == 3600.0


def test_hourly_rollup_covers_each_tenants_local_today(monkeypatch, tenant_a, tenant_b):
    tenant_b.timezone = "Asia/Tokyo"
    tenant_b.save()
    now = dt.datetime(2030, 1, 8, 20, 0, tzinfo=dt.UTC)  # Jan 8 in New York, already Jan 9 in Tokyo
    at_now(monkeypatch, now)
    with tenant_scope([tenant_a.id, tenant_b.id]):
        b.conversation(tenant_a, now - dt.timedelta(hours=1))
        b.conversation(tenant_b, now - dt.timedelta(minutes=30))
    result = tasks.rollup_today_task()
    assert result["tenants"] == 2
    with tenant_scope([tenant_a.id, tenant_b.id]):
        days = set(DailyTenantStats.objects.values_list("tenant_id", "day", "contacts"))
    assert days == {(tenant_a.id, dt.date(2030, 1, 8), 1), (tenant_b.id, dt.date(2030, 1, 9), 1)}


def test_nightly_rollup_finalises_once_per_night(monkeypatch, tenant_a):
    with tenant_scope([tenant_a.id]):
        b.conversation(tenant_a, b.at(23, 30, day=dt.date(2030, 1, 10)))
    at_now(monkeypatch, b.at(23, 0, day=dt.date(2030, 1, 10)))
    tasks.rollup_today_task()  # 23:00: the hourly run has not seen 23:30 yet
    at_now(monkeypatch, b.at(0, 20, day=dt.date(2030, 1, 11)))
    first = tasks.rollup_closed_days_task()
    assert first["days"] == 2  # yesterday (Jan 10) and Jan 8, whose repeat window just closed
    with tenant_scope([tenant_a.id]):
        assert DailyTenantStats.objects.get(day=dt.date(2030, 1, 10)).contacts == 1
    at_now(monkeypatch, b.at(1, 20, day=dt.date(2030, 1, 11)))
    assert tasks.rollup_closed_days_task()["days"] == 0  # nothing left to finalise tonight


def test_tenant_task_recomputes_one_day(tenant_a):
    with tenant_scope([tenant_a.id]):
        b.conversation(tenant_a, b.at(10))
    rows = tasks.rollup_tenant_day_task.apply(kwargs={"tenant_id": tenant_a.id, "day": "2030-01-08"}).get()
    assert rows["daily"] == 1


@pytest.fixture
def owners(tenant_a, alice):
    admin = MembershipFactory(tenant=tenant_a, role=Role.ADMIN, user__email="ada@example.test").user
    return {alice.email, admin.email}


def test_digest_goes_to_owners_and_admins_once_per_week(monkeypatch, tenant_a, tenant_b, agency, nina, sam, owners):
    b.build_day(tenant_a, other_tenant=tenant_b, agency=agency, agent=nina)
    from reports.rollup import rollup_day

    with tenant_scope([tenant_a.id]):
        rollup_day(tenant_ids=[tenant_a.id], day=b.DAY, tz_name=tenant_a.timezone, now=b.AFTER)
    tenant_a.created_at = dt.datetime(2029, 12, 1, tzinfo=dt.UTC)
    tenant_a.save()
    tenant_b.status = TenantStatus.SUSPENDED
    tenant_b.save()
    at_now(monkeypatch, MONDAY_8AM)
    assert tasks.digests_send_task() == 1
    assert {m.to[0] for m in mail.outbox} == owners  # not the supervisor, not the other business
    message = mail.outbox[0]
    assert "Alpha Dental: your week (Week of January 7)" in message.subject
    assert "Contacts: 8 (7 calls, 1 chats)" in message.body
    assert "AI containment: 37.5%" in message.body
    assert '"Do you do teeth whitening?" (asked 3 times, 3 wordings)' in message.body
    assert "/t/alpha-dental/reports/unmatched/?period=30d" in message.body
    html = message.alternatives[0][0]
    assert "Top questions the script could not answer" in html
    assert tasks.digests_send_task() == 0  # sent already
    assert len(mail.outbox) == 2
    with tenant_scope([tenant_a.id]):
        row = DigestSent.objects.get()
    assert (row.week_start, row.recipients) == (WEEK, 2)


def test_digest_waits_for_monday_morning_and_for_a_whole_week(monkeypatch, tenant_a, owners):
    tenant_a.created_at = dt.datetime(2029, 12, 1, tzinfo=dt.UTC)
    tenant_a.save()
    at_now(monkeypatch, MONDAY_8AM.replace(hour=6))
    assert tasks.digests_send_task() == 0
    tenant_a.created_at = dt.datetime(2030, 1, 14, 12, tzinfo=dt.UTC)  # signed up this Monday morning
    tenant_a.save()
    at_now(monkeypatch, MONDAY_8AM)
    assert tasks.digests_send_task() == 0
    assert not mail.outbox


def test_digest_claim_is_atomic_and_a_stale_claim_is_taken_over(tenant_a, owners):
    now = MONDAY_8AM
    with tenant_scope([tenant_a.id]):
        DigestSent.objects.create(tenant=tenant_a, week_start=WEEK, claimed_at=now - dt.timedelta(minutes=5))
        assert digest_send(tenant=tenant_a, week_start=WEEK, now=now) is False  # another worker is on it
        DigestSent.objects.filter(tenant=tenant_a).update(claimed_at=now - dt.timedelta(minutes=30))
        assert digest_send(tenant=tenant_a, week_start=WEEK, now=now) is True  # that worker died
        assert digest_send(tenant=tenant_a, week_start=WEEK, now=now) is False
    assert len(mail.outbox) == 2  # one per owner/admin, once
