"""The rollups: every report figure, per tenant and local day, computed in SQL.

``rollup_day(tenant_ids=..., day=..., tz_name=..., now=...)`` recomputes one local day for a set of
tenants that share a time zone (so the day is the same UTC window for all of them): in one
transaction it locks the tenants' rows, deletes their rows of that day from every rollup table and
inserts fresh ones. Running it twice gives the same rows; any past day can be recomputed. Each figure
is one aggregate query (GROUP BY tenant[, queue, ...]) over the day's window, through the ORM except
repeat contacts (one window-function query in raw SQL, see ``_repeat_contacts``); Python only turns the
aggregated rows into model instances. It must run inside a tenant scope holding those tenants.

``rollup_tenants(...)`` is the platform entry (beat tasks, ``manage.py reports_rollup``, the
benchmark): it groups tenants by time zone, chunks them, and enters each chunk's tenant scope.

Definitions (also in README.md, "Reports"):
- containment (AI-resolved): outcome 'resolved' and no other contact from the same caller number
  (same tenant, non-empty number) started within 48 h after it;
- service level: live escalations accepted within their queue's ``service_level_seconds``, over the
  live escalations that arrived while the business was open (its calendar: hours, holidays,
  closures) and are decided (answered, ended, or waiting longer than the threshold);
- average speed of answer: arrival to accept, over answered live escalations;
- abandonment: live escalations in state 'abandoned' (state 'callback' = the caller chose a
  callback: not abandoned);
- average handle time: accept to wrap-up, over wrapped escalations (live and callbacks);
- callbacks on time: first offered to an agent at most 2 minutes after first due, over the
  callbacks first due that day (cancelled before being offered: not counted);
- the funnel and the unmatched questions count the turns of conversations started that day.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from django.db import connection, transaction
from django.db.models import Count, Exists, F, Max, OuterRef, Q, Subquery, Sum, Value
from django.db.models.fields import DateTimeField
from django.db.models.functions import Coalesce, ExtractHour, Lower, Substr, Trim
from django.utils import timezone

from agents.models import UNCLAIMED_STATES, Escalation, EscalationKind, EscalationState
from conversations.models import (
    AppointmentRequest,
    Callback,
    CallbackState,
    Conversation,
    Lead,
    Outcome,
    Turn,
    Voicemail,
)
from flows.definition import BusinessHours as Calendar
from flows.hours import open_intervals, resolve_local
from flows.models import BusinessHours, Closure, Holiday
from reports.models import (
    ROLLUP_MODELS,
    AgencyDaily,
    DailyQueueStats,
    DailyTenantStats,
    EscalationReasonDaily,
    FunnelStepDaily,
    HourlyContacts,
    OpenSpan,
    UnmatchedDaily,
)
from reports.sql import SecondsBetween
from tenants.models import Tenant
from tenants.scoping import current_tenant_ids, tenant_scope

logger = logging.getLogger(__name__)

REPEAT_WINDOW = dt.timedelta(hours=48)
CALLBACK_ON_TIME = dt.timedelta(minutes=2)
#: A turn understood with less confidence than this is shown in the unmatched review.
LOW_CONFIDENCE = 0.5
#: Tenants per rollup transaction (one time zone per chunk).
CHUNK = 500
_BULK = 2000


def day_window(day: dt.date, tz: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """The UTC span of a local day: 23 or 25 hours long on a DST change."""
    start = resolve_local(dt.datetime.combine(day, dt.time(0, 0)), tz)
    end = resolve_local(dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0, 0)), tz)
    return start, end


def local_today(tz_name: str, now: dt.datetime) -> dt.date:
    return now.astimezone(ZoneInfo(tz_name)).date()


# --- calendars -----------------------------------------------------------------------------------------
def _calendars(tenant_ids: Sequence[int], tz_name: str, start: dt.datetime, end: dt.datetime) -> dict[int, Calendar]:
    """Each tenant's calendar around the window, loaded for all of them in three queries."""
    weekly = dict(BusinessHours.objects.filter(tenant_id__in=tenant_ids).values_list("tenant_id", "weekly"))
    holidays: dict[int, list[dict]] = defaultdict(list)
    first, last = start.date() - dt.timedelta(days=2), end.date() + dt.timedelta(days=2)
    for tenant_id, date, name in Holiday.objects.filter(
        tenant_id__in=tenant_ids, date__range=(first, last)
    ).values_list("tenant_id", "date", "name"):
        holidays[tenant_id].append({"date": date.isoformat(), "name": name})
    closures: dict[int, list[dict]] = defaultdict(list)
    margin = dt.timedelta(days=2)
    for tenant_id, c_start, c_end in Closure.objects.filter(
        tenant_id__in=tenant_ids, start__lt=end + margin, end__gt=start - margin
    ).values_list("tenant_id", "start", "end"):
        closures[tenant_id].append({"start": c_start.isoformat(), "end": c_end.isoformat()})
    out: dict[int, Calendar] = {}
    parsed: dict[str, Calendar] = {}  # many tenants share the same hours: validate each shape once
    for tenant_id in tenant_ids:
        data = {
            "timezone": tz_name,
            "weekly": weekly.get(tenant_id) or {},
            "holidays": sorted(holidays.get(tenant_id, []), key=lambda h: h["date"]),
            "closures": sorted(closures.get(tenant_id, []), key=lambda c: c["start"]),
        }
        key = json.dumps(data, sort_keys=True)
        if key not in parsed:
            try:
                parsed[key] = Calendar.model_validate(data)
            except ValueError:
                logger.warning("calendar does not validate; counted as closed", extra={"tenant_id": tenant_id})
                parsed[key] = Calendar(timezone=tz_name)
        out[tenant_id] = parsed[key]
    return out


def _open_spans(tenant_ids: Sequence[int], day: dt.date, tz_name: str, start, end) -> list[OpenSpan]:
    spans: list[OpenSpan] = []
    memo: dict[int, list[tuple[dt.datetime, dt.datetime]]] = {}
    for tenant_id, calendar in _calendars(tenant_ids, tz_name, start, end).items():
        if id(calendar) not in memo:
            memo[id(calendar)] = open_intervals(calendar, start, end)
        spans += [OpenSpan(tenant_id=tenant_id, day=day, start=s, end=e) for s, e in memo[id(calendar)]]
    return spans


# --- one day, one time zone, many tenants ----------------------------------------------------------------
@dataclass
class RollupResult:
    tenants: int = 0
    days: int = 0
    rows: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, other: RollupResult) -> None:
        self.tenants += other.tenants
        self.days += other.days
        for key, value in other.rows.items():
            self.rows[key] += value


def _rows(queryset) -> Iterable[dict]:
    return queryset.order_by()


def rollup_day(*, tenant_ids: Sequence[int], day: dt.date, tz_name: str, now: dt.datetime) -> RollupResult:
    """Recompute ``day`` (local, in ``tz_name``) for these tenants. Runs inside their tenant scope."""
    ids = sorted(set(tenant_ids))
    tz = ZoneInfo(tz_name)
    start, end = day_window(day, tz)
    result = RollupResult(tenants=len(ids), days=1)
    with transaction.atomic():
        # Serialise concurrent rollups of the same tenants (an hourly run overlapping a slow one).
        list(Tenant.objects.select_for_update().filter(id__in=ids).order_by("id").values_list("id", flat=True))
        for model in ROLLUP_MODELS:
            model.objects.filter(tenant_id__in=ids, day=day).delete()

        spans = _open_spans(ids, day, tz_name, start, end)
        OpenSpan.objects.bulk_create(spans, batch_size=_BULK)
        result.rows["open_spans"] = len(spans)

        conversations = Conversation.objects.filter(tenant_id__in=ids, started_at__gte=start, started_at__lt=end)
        daily = {tenant_id: DailyTenantStats(tenant_id=tenant_id, day=day, computed_at=now) for tenant_id in ids}
        _contacts(conversations, ids, start, end, daily)
        _callbacks(ids, start, end, now, daily)
        for model, attr, stamp in (
            (Voicemail, "voicemails", "created_at"),
            (Lead, "leads", "created_at"),
            (AppointmentRequest, "appointments", "created_at"),
            (Callback, "callbacks_requested", "created_at"),
        ):
            rows = _rows(
                model.objects.filter(tenant_id__in=ids, **{f"{stamp}__gte": start, f"{stamp}__lt": end})
                .values("tenant_id")
                .annotate(n=Count("id"))
            )
            for row in rows:
                setattr(daily[row["tenant_id"]], attr, row["n"])
        DailyTenantStats.objects.bulk_create(daily.values(), batch_size=_BULK)
        result.rows["daily"] = len(daily)

        hourly = [
            HourlyContacts(
                tenant_id=row["tenant_id"], day=day, hour=row["hour"], channel=row["channel"], contacts=row["n"]
            )
            for row in _rows(
                conversations.annotate(hour=ExtractHour("started_at", tzinfo=tz))
                .values("tenant_id", "hour", "channel")
                .annotate(n=Count("id"))
            )
        ]
        HourlyContacts.objects.bulk_create(hourly, batch_size=_BULK)
        result.rows["hourly"] = len(hourly)

        escalations = Escalation.objects.filter(tenant_id__in=ids, created_at__gte=start, created_at__lt=end)
        for name, rows in (
            ("queues", _queue_stats(escalations, day, now)),
            ("reasons", _reasons(escalations, day)),
            ("agencies", _agencies(escalations, day)),
            ("funnel", _funnel(ids, conversations, start, end, day)),
            ("unmatched", _unmatched(ids, start, end, day)),
        ):
            model = type(rows[0]) if rows else None
            if model is not None:
                model.objects.bulk_create(rows, batch_size=_BULK)
            result.rows[name] = len(rows)
    return result


def _contacts(conversations, ids, start, end, daily: dict[int, DailyTenantStats]) -> None:
    resolved = Q(outcome=Outcome.RESOLVED)
    rows = _rows(
        conversations.values("tenant_id").annotate(
            contacts=Count("id"),
            voice=Count("id", filter=Q(channel="voice")),
            chat=Count("id", filter=Q(channel="chat")),
            resolved=Count("id", filter=resolved),
            escalated=Count("id", filter=Q(outcome=Outcome.ESCALATED)),
        )
    )
    for row in rows:
        stats = daily[row.pop("tenant_id")]
        for key, value in row.items():
            setattr(stats, key, value)
    for tenant_id, repeats in _repeat_contacts(ids, start, end).items():
        daily[tenant_id].repeat_contacts = repeats
    for stats in daily.values():
        stats.ai_resolved = stats.resolved - stats.repeat_contacts


def _seconds_sql(end: str, start: str) -> str:
    if connection.vendor == "postgresql":
        return f"ROUND(EXTRACT(EPOCH FROM ({end} - {start}))::numeric, 3)"
    return f"ROUND((julianday({end}) - julianday({start})) * 86400.0, 3)"


def _repeat_contacts(ids: Sequence[int], start: dt.datetime, end: dt.datetime) -> dict[int, int]:
    """Per tenant: resolved conversations of the window whose caller came back within 48 hours.

    One pass with a window function (each contact's next contact from the same number) over the window
    plus 48 hours, instead of a correlated EXISTS per conversation: on PostgreSQL the planner answered
    that EXISTS with a scan of two days of every tenant's calls per row (27 s of a 29 s rollup in
    bench/rollup.py). Raw SQL, written for SQLite and PostgreSQL; it is limited to ``ids``, which must
    be in the current tenant scope (checked).
    """
    scope = current_tenant_ids()
    if scope is not None and not set(ids) <= set(scope):
        raise RuntimeError("repeat contacts asked for tenants outside the current scope")
    if not ids:
        return {}
    table = Conversation._meta.db_table
    adapt = connection.ops.adapt_datetimefield_value
    marks = ", ".join(["%s"] * len(ids))
    sql = f"""
        SELECT tenant_id, COUNT(*) FROM (
            SELECT tenant_id, started_at, outcome,
                   LEAD(started_at) OVER (PARTITION BY tenant_id, caller_number ORDER BY started_at, id) AS next_at
            FROM {table}
            WHERE tenant_id IN ({marks}) AND started_at >= %s AND started_at < %s AND caller_number <> ''
        ) contacts
        WHERE started_at < %s AND outcome = %s AND next_at IS NOT NULL
          AND {_seconds_sql("next_at", "started_at")} <= %s
        GROUP BY tenant_id
    """  # noqa: S608 - only placeholders and our own table name are interpolated
    params = [*ids, adapt(start), adapt(end + REPEAT_WINDOW), adapt(end), Outcome.RESOLVED.value]
    params.append(REPEAT_WINDOW.total_seconds())
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {int(tenant_id): int(n) for tenant_id, n in cursor.fetchall()}


def _callbacks(ids, start, end, now, daily: dict[int, DailyTenantStats]) -> None:
    rows = _rows(
        Callback.objects.filter(tenant_id__in=ids, first_due_at__gte=start, first_due_at__lt=end)
        .exclude(state=CallbackState.CANCELLED, first_offered_at__isnull=True)
        .annotate(late=SecondsBetween("first_offered_at", "first_due_at"))
        .values("tenant_id")
        .annotate(
            # Decided: offered already, or past due by more than the grace (still waiting = late).
            due=Count("id", filter=Q(first_offered_at__isnull=False) | Q(first_due_at__lt=now - CALLBACK_ON_TIME)),
            on_time=Count("id", filter=Q(first_offered_at__isnull=False, late__lte=CALLBACK_ON_TIME.total_seconds())),
        )
    )
    for row in rows:
        daily[row["tenant_id"]].callbacks_due = row["due"]
        daily[row["tenant_id"]].callbacks_on_time = row["on_time"]


def _queue_stats(escalations, day: dt.date, now: dt.datetime) -> list[DailyQueueStats]:
    live = Q(kind=EscalationKind.LIVE)
    answered = Q(accepted_at__isnull=False)
    threshold = F("queue__service_level_seconds")
    # Still waiting and not yet past the threshold: it may still make it, so it is not counted yet.
    undecided = Q(state__in=UNCLAIMED_STATES, age__lt=threshold)
    wrapped = Q(wrapped_at__isnull=False, accepted_at__isnull=False)
    in_hours = OpenSpan.objects.filter(
        tenant_id=OuterRef("tenant_id"), day=day, start__lte=OuterRef("created_at"), end__gt=OuterRef("created_at")
    )
    rows = _rows(
        escalations.annotate(
            wait=SecondsBetween("accepted_at", "created_at"),
            age=SecondsBetween(Value(now, output_field=DateTimeField()), "created_at"),
            handle=SecondsBetween("wrapped_at", "accepted_at"),
            in_hours=Exists(in_hours),
        )
        .values("tenant_id", "queue_id")
        .annotate(
            escalations=Count("id", filter=live),
            answered=Count("id", filter=live & answered),
            wait_seconds=Sum("wait", filter=live & answered, default=0.0),
            sl_counted=Count("id", filter=live & Q(in_hours=True) & ~undecided),
            sl_met=Count("id", filter=live & Q(in_hours=True) & answered & Q(wait__lte=threshold)),
            out_of_hours=Count("id", filter=live & Q(in_hours=False)),
            abandoned=Count("id", filter=live & Q(state=EscalationState.ABANDONED)),
            chose_callback=Count("id", filter=live & Q(state=EscalationState.CALLBACK)),
            expired=Count("id", filter=live & Q(state=EscalationState.EXPIRED)),
            callback_escalations=Count("id", filter=Q(kind=EscalationKind.CALLBACK)),
            handled=Count("id", filter=wrapped),
            handle_seconds=Sum("handle", filter=wrapped, default=0.0),
        )
    )
    return [DailyQueueStats(day=day, **row) for row in rows]


def _reasons(escalations, day: dt.date) -> list[EscalationReasonDaily]:
    rows = _rows(
        escalations.filter(kind=EscalationKind.LIVE)
        .values("tenant_id", "queue_id", "reason_code")
        .annotate(escalations=Count("id"))
    )
    return [EscalationReasonDaily(day=day, **row) for row in rows]


def _agencies(escalations, day: dt.date) -> list[AgencyDaily]:
    wrapped = Q(wrapped_at__isnull=False)
    rows = _rows(
        escalations.filter(via_agency__isnull=False, accepted_at__isnull=False)
        .annotate(
            wait=SecondsBetween("accepted_at", "created_at"),
            talk=SecondsBetween(Coalesce("wrapped_at", "ended_at"), Coalesce("connected_at", "accepted_at")),
        )
        .values("tenant_id", "via_agency_id")
        .annotate(
            handled=Count("id"),
            answered_within_sl=Count("id", filter=Q(wait__lte=F("queue__service_level_seconds"))),
            wait_seconds=Sum("wait", default=0.0),
            talk_seconds=Sum("talk", filter=wrapped, default=0.0),
        )
    )
    return [AgencyDaily(day=day, agency_id=row.pop("via_agency_id"), **row) for row in rows]


def _funnel(ids, conversations, start, end, day: dt.date) -> list[FunnelStepDaily]:
    steps = (
        Turn.objects.filter(
            tenant_id__in=ids,
            conversation__started_at__gte=start,
            conversation__started_at__lt=end,
            conversation__flow_version__isnull=False,
        )
        .exclude(step="")
        .values("tenant_id", "conversation__flow_version_id", "step")
        .annotate(reached=Count("conversation_id", distinct=True))
    )
    funnel: dict[tuple[int, int, str], FunnelStepDaily] = {}
    for row in _rows(steps):
        key = (row["tenant_id"], row["conversation__flow_version_id"], row["step"])
        funnel[key] = FunnelStepDaily(
            tenant_id=key[0], day=day, flow_version_id=key[1], step=key[2], reached=row["reached"]
        )
    last_step = Subquery(
        Turn.objects.filter(conversation_id=OuterRef("pk")).exclude(step="").order_by("-seq").values("step")[:1]
    )
    ends = (
        conversations.filter(flow_version__isnull=False)
        .annotate(last_step=last_step)
        .values("tenant_id", "flow_version_id", "last_step")
        .annotate(ended=Count("id"), escalated=Count("id", filter=Q(outcome=Outcome.ESCALATED)))
    )
    for row in _rows(ends):
        if row["last_step"] is None:  # no turn with a step yet
            continue
        key = (row["tenant_id"], row["flow_version_id"], row["last_step"])
        item = funnel.get(key)
        if item is None:  # cannot happen (the last step was reached), but never lose a count
            item = funnel[key] = FunnelStepDaily(
                tenant_id=key[0], day=day, flow_version_id=key[1], step=key[2], reached=row["ended"]
            )
        item.ended, item.escalated = row["ended"], row["escalated"]
    return list(funnel.values())


def unmatched_turns_filter() -> Q:
    """Turns the script could not answer: out of scope (the model's or the menu's), or low confidence."""
    return Q(out_of_scope=True) | Q(reason_code="out_of_scope") | Q(confidence__lt=LOW_CONFIDENCE)


def _unmatched(ids, start, end, day: dt.date) -> list[UnmatchedDaily]:
    said = Substr(Trim("utterance"), 1, 300)
    oos = Q(out_of_scope=True) | Q(reason_code="out_of_scope")
    rows = _rows(
        Turn.objects.filter(
            unmatched_turns_filter(),
            tenant_id__in=ids,
            conversation__started_at__gte=start,
            conversation__started_at__lt=end,
        )
        .exclude(utterance="")
        .annotate(text=Lower(said), flow_id=F("conversation__flow_version__flow_id"))
        .values("tenant_id", "flow_id", "text")
        .annotate(
            n_turns=Count("id"),
            n_out_of_scope=Count("id", filter=oos),
            n_low_confidence=Count("id", filter=~oos),
            example=Max(said),
        )
    )
    return [
        UnmatchedDaily(
            tenant_id=row["tenant_id"],
            day=day,
            flow_id=row["flow_id"],
            text=row["text"],
            example=row["example"],
            turns=row["n_turns"],
            out_of_scope=row["n_out_of_scope"],
            low_confidence=row["n_low_confidence"],
        )
        for row in rows
        if row["text"]
    ]


# --- the platform entry ------------------------------------------------------------------------------------
def rollup_tenants(
    *,
    tenants: Iterable[Tenant],
    days_for: Callable[[Tenant, dt.datetime], Iterable[dt.date]],
    now: dt.datetime | None = None,
    chunk: int = CHUNK,
) -> RollupResult:
    """Recompute, for every tenant, the local days ``days_for(tenant, now)`` returns.

    Tenants are grouped by (time zone, day) and rolled up ``chunk`` at a time, each chunk in its own
    tenant scope and transaction; one chunk failing is logged and does not stop the others.
    """
    now = now or timezone.now()
    groups: dict[tuple[str, dt.date], list[int]] = defaultdict(list)
    for tenant in tenants:
        for day in days_for(tenant, now):
            groups[(tenant.timezone, day)].append(tenant.id)
    total = RollupResult()
    for (tz_name, day), ids in sorted(groups.items()):
        for i in range(0, len(ids), chunk):
            part = ids[i : i + chunk]
            try:
                with tenant_scope(part):
                    total.add(rollup_day(tenant_ids=part, day=day, tz_name=tz_name, now=now))
            except Exception:
                logger.exception("rollup failed", extra={"day": day.isoformat(), "tenants": len(part), "tz": tz_name})
    return total


def days_today(tenant: Tenant, now: dt.datetime) -> list[dt.date]:
    """Each tenant's local today (the hourly rollup)."""
    return [local_today(tenant.timezone, now)]


def unfinished_days(tenant_ids: Sequence[int], tz_name: str, now: dt.datetime) -> dict[int, list[dt.date]]:
    """Per tenant: yesterday if it was last computed before it ended, and the day before yesterday's
    predecessor (three days ago) if it was last computed before its 48-hour repeat window closed.

    Run every hour, this finalises each local day twice at most (just after midnight, then once its
    containment can no longer change) and catches up after downtime, without a fixed clock time.
    """
    tz = ZoneInfo(tz_name)
    today = local_today(tz_name, now)
    checks = {today - dt.timedelta(days=1): dt.timedelta(0), today - dt.timedelta(days=3): REPEAT_WINDOW}
    final_after = {day: day_window(day, tz)[1] + extra for day, extra in checks.items()}
    computed = {
        (tenant_id, day): at
        for tenant_id, day, at in DailyTenantStats.objects.filter(
            tenant_id__in=tenant_ids, day__in=list(checks)
        ).values_list("tenant_id", "day", "computed_at")
    }
    due: dict[int, list[dt.date]] = {}
    for tenant_id in tenant_ids:
        days = [
            day
            for day, after in final_after.items()
            if now >= after and (computed.get((tenant_id, day)) is None or computed[(tenant_id, day)] < after)
        ]
        if days:
            due[tenant_id] = sorted(days)
    return due
