"""Recompute the report rollups of any past (or the current) local day.

    python manage.py reports_rollup --day 2030-01-08                     # every business
    python manage.py reports_rollup --day 2030-01-01 --until 2030-01-31  # a range, inclusive
    python manage.py reports_rollup --day 2030-01-08 --tenant bright-smile --tenant northside

Days are each business's local days. Recomputing replaces the day's rows (idempotent).
"""

from __future__ import annotations

import datetime as dt
import time

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from reports.rollup import rollup_tenants
from tenants.models import Tenant

MAX_DAYS = 400


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{value!r} is not a date; write it as YYYY-MM-DD, e.g. 2030-01-08.") from None


class Command(BaseCommand):
    help = "Recompute report rollups for a local day (or a range of days), for every business or some."

    def add_arguments(self, parser):
        parser.add_argument("--day", required=True, help="YYYY-MM-DD, the (first) local day to recompute")
        parser.add_argument("--until", help="YYYY-MM-DD, the last day of a range (inclusive)")
        parser.add_argument("--tenant", action="append", default=[], help="a business's slug (repeatable)")

    def handle(self, *args, **options):
        first = _date(options["day"])
        last = _date(options["until"]) if options["until"] else first
        if last < first:
            raise CommandError("--until must not be before --day.")
        if (last - first).days >= MAX_DAYS:
            raise CommandError(f"At most {MAX_DAYS} days at a time.")
        tenants = Tenant.objects.order_by("id")
        if options["tenant"]:
            tenants = tenants.filter(slug__in=options["tenant"])
            missing = sorted(set(options["tenant"]) - set(tenants.values_list("slug", flat=True)))
            if missing:
                raise CommandError(f"No business with slug: {', '.join(missing)}.")
        tenants = list(tenants)
        days = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
        started = time.perf_counter()
        result = rollup_tenants(tenants=tenants, days_for=lambda _tenant, _now: days, now=timezone.now())
        seconds = time.perf_counter() - started
        rows = ", ".join(f"{name} {count}" for name, count in sorted(result.rows.items()))
        self.stdout.write(
            f"Rolled up {len(days)} day(s) for {len(tenants)} business(es) in {seconds:.1f} s "
            f"({result.days} tenant-day batches): {rows or 'nothing to write'}."
        )
