"""Celery tasks of the reports: thin, ids in. Beat runs the three platform tasks every hour:

- ``reports.tasks.rollup_today``: every business's local today (the dashboards' "today");
- ``reports.tasks.rollup_closed_days`` (the nightly rollup): per business, right after its local
  midnight, yesterday (so its last hour counts) and the day three days back, whose 48-hour repeat
  window has just closed (its containment is final). It looks at when each day was last computed,
  so it acts once per business per night wherever the business is, and catches up after downtime;
- ``reports.tasks.digests_send``: the weekly digest of every business due one (Monday 07:00 local).

The platform tasks list tenants (an access table, not scoped), then do the work inside
``tenant_scope`` for a chunk of tenants at a time (``reports.rollup.rollup_tenants``) or send a
``TenantTask`` per business.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict

from celery import shared_task
from django.utils import timezone

from tenants.scoping import tenant_scope, unscoped
from tenants.tasks import TenantTask

logger = logging.getLogger(__name__)


def _tenants():
    from tenants.models import Tenant

    return list(Tenant.objects.only("id", "timezone", "name", "slug", "status", "created_at").order_by("id"))


@shared_task(name="reports.tasks.rollup_today", acks_late=True)
def rollup_today_task() -> dict:
    from reports.rollup import days_today, rollup_tenants

    result = rollup_tenants(tenants=_tenants(), days_for=days_today, now=timezone.now())
    return {"tenants": result.tenants, "days": result.days, **result.rows}


@shared_task(name="reports.tasks.rollup_closed_days", acks_late=True)
def rollup_closed_days_task() -> dict:
    from reports.rollup import CHUNK, rollup_tenants, unfinished_days

    now = timezone.now()
    tenants = _tenants()
    by_tz: dict[str, list[int]] = defaultdict(list)
    for tenant in tenants:
        by_tz[tenant.timezone].append(tenant.id)
    due: dict[int, list[dt.date]] = {}
    for tz_name, ids in by_tz.items():
        for i in range(0, len(ids), CHUNK):
            with tenant_scope(ids[i : i + CHUNK]):
                due.update(unfinished_days(ids[i : i + CHUNK], tz_name, now))
    result = rollup_tenants(
        tenants=[t for t in tenants if t.id in due], days_for=lambda tenant, _now: due[tenant.id], now=now
    )
    return {"tenants": result.tenants, "days": result.days, **result.rows}


@shared_task(name="reports.tasks.rollup_tenant_day", base=TenantTask)
def rollup_tenant_day_task(*, tenant_id: int, day: str) -> dict:
    """Recompute one business's day (e.g. after correcting data): ``day`` is an ISO date."""
    from reports.rollup import rollup_day
    from tenants.models import Tenant

    tenant = Tenant.objects.get(pk=tenant_id)
    result = rollup_day(
        tenant_ids=[tenant_id], day=dt.date.fromisoformat(day), tz_name=tenant.timezone, now=timezone.now()
    )
    return dict(result.rows)


@shared_task(name="reports.tasks.digests_send", acks_late=True)
def digests_send_task() -> int:
    """Every hour: send each business's digest of last week once it is due (and not sent yet)."""
    from reports.models import DigestSent
    from reports.services import digest_is_due, digest_week_start
    from tenants.models import TenantStatus

    now = timezone.now()
    candidates = {
        t.id: digest_week_start(t, now)
        for t in _tenants()
        if t.status != TenantStatus.SUSPENDED and digest_is_due(t, now)
    }
    if not candidates:
        return 0
    with unscoped("list the businesses whose weekly digest went out already"):
        sent = set(
            DigestSent.objects.filter(sent_at__isnull=False, week_start__in=set(candidates.values())).values_list(
                "tenant_id", "week_start"
            )
        )
    queued = 0
    for tenant_id, week_start in sorted(candidates.items()):
        if (tenant_id, week_start) in sent:
            continue
        digest_send_task.apply_async(kwargs={"tenant_id": tenant_id, "week_start": week_start.isoformat()})
        queued += 1
    return queued


@shared_task(name="reports.tasks.digest_send", base=TenantTask, bind=True, max_retries=3)
def digest_send_task(self, *, tenant_id: int, week_start: str) -> bool:
    from reports.services import digest_send
    from tenants.models import Tenant

    tenant = Tenant.objects.get(pk=tenant_id)
    try:
        return digest_send(tenant=tenant, week_start=dt.date.fromisoformat(week_start))
    except OSError as exc:  # SMTP down: the claim expires and a retry (or the next hourly run) sends it
        logger.warning("weekly digest not sent", extra={"week_start": week_start, "error": str(exc)})
        if self.request.is_eager:
            return False
        raise self.retry(exc=exc, countdown=60 * 20) from exc
