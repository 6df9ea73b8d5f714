"""CSV export of every report table and of the conversations with their transcripts.

Responses are streamed (``StreamingHttpResponse``). The tenant scope of the request ends when the
view returns, before the body is sent, so rows are read in batches that each enter the scope again
(``tenant_scope([tenant_id])``) and keyset-paginate by id: no long-lived cursor, bounded memory.
Under ASGI the body is an async iterator that reads each batch in the sync thread, so it really
streams instead of being collected first.
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import re
from collections.abc import Callable, Iterable, Iterator
from zoneinfo import ZoneInfo

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.db.models import Prefetch
from django.http import StreamingHttpResponse

from conversations.models import Conversation, Turn
from flows.models import Queue
from reports.models import (
    AgencyDaily,
    DailyQueueStats,
    EscalationReasonDaily,
    FunnelStepDaily,
    HourlyContacts,
    UnmatchedDaily,
)
from reports.rollup import day_window
from reports.selectors import CONTACT_FIELDS, QUEUE_FIELDS, Period, derived_figures, report_summary
from tenants.models import Agency, Tenant
from tenants.scoping import tenant_scope

BATCH = 500
_PHONE = re.compile(r"^\+?[0-9]{3,20}$")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def cell(value) -> object:
    """A value safe to open in a spreadsheet: text starting like a formula gets a leading quote
    (a caller's words end up in these files); phone numbers stay as they are."""
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _PHONE.match(value):
        return "'" + value
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


class _Line:
    def write(self, value: str) -> str:
        return value


def _lines(header: list[str], rows: Iterable[Iterable]) -> Iterator[str]:
    writer = csv.writer(_Line())
    yield writer.writerow(header)
    for row in rows:
        yield writer.writerow([cell(v) for v in row])


def csv_response(request, filename: str, header: list[str], rows: Iterable[Iterable]) -> StreamingHttpResponse:
    lines = _lines(header, rows)
    if isinstance(request, ASGIRequest):

        def take() -> str:
            return "".join(itertools.islice(lines, 200))

        async def body():
            while chunk := await sync_to_async(take, thread_sensitive=True)():
                yield chunk

        content = body()
    else:
        content = lines
    response = StreamingHttpResponse(content, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response


def _batched(tenant_id: int, fetch: Callable[[int], list], render: Callable) -> Iterator[list]:
    """Rows of ``fetch(after_id)`` batches, each read inside the tenant's scope, until one is empty."""
    after = 0
    while True:
        with tenant_scope([tenant_id]):
            batch = fetch(after)
            rendered = [render(item) for item in batch]
        if not batch:
            return
        yield from rendered
        after = batch[-1].pk


def _days(tenant: Tenant, period: Period) -> dict:
    return {"tenant_id": tenant.id, "day__gte": period.start, "day__lte": period.end}


# --- one function per table: (header, rows); all run inside the request's scope except the batches ---
def table_daily(tenant: Tenant, period: Period, queue_id: int | None):
    derived = ("containment_pct", "callbacks_on_time_pct", "service_level_pct", "asa_seconds")
    derived += ("abandonment_pct", "aht_seconds")
    header = ["day", *CONTACT_FIELDS, *QUEUE_FIELDS, *derived]
    summary = report_summary(tenant=tenant, period=period, queue_id=queue_id)
    return header, [[row[f] for f in header] for row in summary["days"]]


def table_queues(tenant: Tenant, period: Period, queue_id: int | None):
    names = dict(Queue.objects.filter(tenant_id=tenant.id).values_list("id", "name"))
    derived = ("service_level_pct", "asa_seconds", "abandonment_pct", "aht_seconds")
    header = ["day", "queue", *QUEUE_FIELDS, *derived]
    rows = DailyQueueStats.objects.filter(**_days(tenant, period)).order_by("day", "queue_id")
    if queue_id is not None:
        rows = rows.filter(queue_id=queue_id)
    out = []
    for row in rows.values("day", "queue_id", *QUEUE_FIELDS):
        full = derived_figures({f: row[f] for f in QUEUE_FIELDS})
        out.append([row["day"], names.get(row["queue_id"], ""), *(full[f] for f in (*QUEUE_FIELDS, *derived))])
    return header, out


def table_hourly(tenant: Tenant, period: Period, queue_id: int | None):
    rows = HourlyContacts.objects.filter(**_days(tenant, period)).order_by("day", "hour", "channel")
    return ["day", "hour", "channel", "contacts"], list(rows.values_list("day", "hour", "channel", "contacts"))


def table_reasons(tenant: Tenant, period: Period, queue_id: int | None):
    rows = EscalationReasonDaily.objects.filter(**_days(tenant, period)).order_by("day", "queue__name", "reason_code")
    if queue_id is not None:
        rows = rows.filter(queue_id=queue_id)
    return ["day", "queue", "reason_code", "escalations"], list(
        rows.values_list("day", "queue__name", "reason_code", "escalations")
    )


def table_funnel(tenant: Tenant, period: Period, queue_id: int | None):
    rows = FunnelStepDaily.objects.filter(**_days(tenant, period)).order_by("day", "flow_version_id", "step")
    return ["day", "flow", "version", "step", "reached", "ended", "escalated"], list(
        rows.values_list(
            "day", "flow_version__flow__name", "flow_version__number", "step", "reached", "ended", "escalated"
        )
    )


def table_unmatched(tenant: Tenant, period: Period, queue_id: int | None):
    rows = UnmatchedDaily.objects.filter(**_days(tenant, period)).order_by("day", "-turns", "text")
    return ["day", "flow", "text", "example", "turns", "out_of_scope", "low_confidence"], list(
        rows.values_list("day", "flow__name", "text", "example", "turns", "out_of_scope", "low_confidence")
    )


def table_agencies(tenant: Tenant, period: Period, queue_id: int | None):
    rows = AgencyDaily.objects.filter(**_days(tenant, period)).order_by("day", "agency_id")
    names = dict(Agency.objects.filter(pk__in=rows.values("agency_id")).values_list("id", "name"))
    header = ["day", "agency", "handled", "answered_within_sl", "wait_seconds", "talk_seconds"]
    return header, [
        [day, names.get(agency_id, ""), handled, within, round(wait, 1), round(talk, 1)]
        for day, agency_id, handled, within, wait, talk in rows.values_list(
            "day", "agency_id", "handled", "answered_within_sl", "wait_seconds", "talk_seconds"
        )
    ]


TABLES: dict[str, tuple[str, Callable]] = {
    "daily": ("Figures per day", table_daily),
    "queues": ("Queues per day", table_queues),
    "hourly": ("Contacts per hour", table_hourly),
    "reasons": ("Escalation reasons", table_reasons),
    "funnel": ("Flow funnel", table_funnel),
    "unmatched": ("Unmatched questions", table_unmatched),
    "agencies": ("Answering services", table_agencies),
}

CONVERSATION_HEADER = [
    "id",
    "started_at",
    "channel",
    "caller_number",
    "status",
    "outcome",
    "escalation_reason",
    "duration_seconds",
    "flow",
    "version",
    "turns",
    "transcript",
]


def transcript(turns: Iterable[Turn]) -> str:
    lines = []
    for turn in turns:
        if turn.utterance:
            lines.append(f"Caller: {turn.utterance}")
        elif turn.dtmf:
            lines.append(f"Caller pressed: {turn.dtmf}")
        if turn.event == "agent":
            lines.append(
                f"Agent{' ' + turn.reason if turn.reason_code == 'agent_reply' and turn.reason else ''}: {turn.reply}"
            )
        elif turn.reply:
            lines.append(f"AI: {turn.reply}")
    return "\n".join(lines)


def conversation_rows(tenant: Tenant, period: Period) -> Iterator[list]:
    """Every conversation started in the period (local days), oldest first, with its transcript."""
    tz = ZoneInfo(tenant.timezone)
    start = day_window(period.start, tz)[0]
    end = day_window(period.end, tz)[1]
    turns = Turn.objects.order_by("seq").only(
        "conversation_id", "seq", "event", "utterance", "dtmf", "reply", "reason", "reason_code"
    )

    def fetch(after: int) -> list[Conversation]:
        return list(
            Conversation.objects.filter(tenant_id=tenant.id, started_at__gte=start, started_at__lt=end, pk__gt=after)
            .select_related("flow_version__flow")
            .prefetch_related(Prefetch("turns", queryset=turns))
            .order_by("pk")[:BATCH]
        )

    def render(c: Conversation) -> list:
        version = c.flow_version
        return [
            c.pk,
            c.started_at.astimezone(tz).isoformat(),
            c.channel,
            c.caller_number,
            c.status,
            c.outcome,
            c.escalation_reason,
            c.duration_seconds,
            version.flow.name if version else "",
            version.number if version else "",
            c.turn_count,
            transcript(c.turns.all()),
        ]

    return _batched(tenant.id, fetch, render)
