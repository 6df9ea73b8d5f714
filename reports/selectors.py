"""Reads for the reports: the figures of a period, the funnel, the unmatched review, the agency view.

One function per report, used by the page, the API and the CSV export alike, so they cannot
disagree. They read the rollup tables only (sums and counts per day; averages and percentages are
computed here from the summed parts) and run inside a tenant scope entered by a door.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from django.db.models import Max, Q, Sum

from flows.models import Flow, FlowVersion, Intent, Queue
from flows.nlu_text import normalize
from reports.models import (
    AgencyDaily,
    DailyQueueStats,
    DailyTenantStats,
    EscalationReasonDaily,
    FunnelStepDaily,
    HourlyContacts,
    UnmatchedDaily,
    UnmatchedHandled,
)
from reports.similarity import group_by_similarity
from tenants.models import Tenant

PERIODS = {"today": ("Today", 1), "7d": ("Last 7 days", 7), "30d": ("Last 30 days", 30)}
DEFAULT_PERIOD = "7d"
#: Distinct unmatched texts considered for grouping (the most frequent ones).
UNMATCHED_TEXTS_LIMIT = 2000


class UnknownPeriod(ValueError):
    pass


@dataclass(frozen=True)
class Period:
    key: str
    label: str
    start: dt.date
    end: dt.date  # inclusive

    @property
    def days(self) -> list[dt.date]:
        return [self.start + dt.timedelta(days=n) for n in range((self.end - self.start).days + 1)]

    def as_dict(self) -> dict:
        return {"key": self.key, "label": self.label, "start": self.start, "end": self.end}


def period_for(key: str | None, *, tz_name: str, now: dt.datetime) -> Period:
    """``today``, ``7d`` or ``30d``: local days ending today (in the tenant's time zone)."""
    key = key or DEFAULT_PERIOD
    if key not in PERIODS:
        raise UnknownPeriod(f"{key!r} is not a period; use one of: {', '.join(PERIODS)}.")
    label, length = PERIODS[key]
    today = now.astimezone(ZoneInfo(tz_name)).date()
    return Period(key=key, label=label, start=today - dt.timedelta(days=length - 1), end=today)


MAX_CUSTOM_DAYS = 366


def period_from_params(params, *, tz_name: str, now: dt.datetime) -> Period:
    """The period a request asks for: ``period=today|7d|30d`` (default 7d), or ``start`` and ``end``
    (local dates, inclusive, at most 366 days). Raises UnknownPeriod with a message for people."""
    start, end = (params.get("start") or "").strip(), (params.get("end") or "").strip()
    if not (start or end):
        return period_for(params.get("period"), tz_name=tz_name, now=now)
    try:
        first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    except ValueError:
        raise UnknownPeriod("Give both start and end as dates (YYYY-MM-DD), e.g. start=2030-01-01&end=2030-01-31.")
    if last < first:
        raise UnknownPeriod("end must not be before start.")
    if (last - first).days >= MAX_CUSTOM_DAYS:
        raise UnknownPeriod(f"A period is at most {MAX_CUSTOM_DAYS} days long.")
    return Period(
        key="custom",
        label=f"{first:%b} {first.day}, {first.year} to {last:%b} {last.day}, {last.year}",
        start=first,
        end=last,
    )


def pct(part: float, whole: float) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def avg(total: float, count: float) -> float | None:
    return round(total / count, 1) if count else None


def reason_label(code: str) -> str:
    return (code or "unknown").replace("_", " ").capitalize()


CONTACT_FIELDS = (
    "contacts",
    "voice",
    "chat",
    "resolved",
    "ai_resolved",
    "repeat_contacts",
    "escalated",
    "voicemails",
    "callbacks_requested",
    "callbacks_due",
    "callbacks_on_time",
    "leads",
    "appointments",
)
QUEUE_FIELDS = (
    "escalations",
    "answered",
    "wait_seconds",
    "sl_counted",
    "sl_met",
    "out_of_hours",
    "abandoned",
    "chose_callback",
    "expired",
    "callback_escalations",
    "handled",
    "handle_seconds",
)


def derived_figures(row: dict) -> dict:
    """Percentages and averages from summed parts (the same rules for a day, a queue and a period)."""
    out = dict(row)
    if "contacts" in row:
        out["containment_pct"] = pct(row["ai_resolved"], row["contacts"])
        out["callbacks_on_time_pct"] = pct(row["callbacks_on_time"], row["callbacks_due"])
    if "escalations" in row:
        out["service_level_pct"] = pct(row["sl_met"], row["sl_counted"])
        out["asa_seconds"] = avg(row["wait_seconds"], row["answered"])
        out["abandonment_pct"] = pct(row["abandoned"], row["escalations"])
        out["aht_seconds"] = avg(row["handle_seconds"], row["handled"])
        out["wait_seconds"] = round(row["wait_seconds"], 1)
        out["handle_seconds"] = round(row["handle_seconds"], 1)
    return out


def summed(queryset, fields: tuple[str, ...], *group: str, order_by: tuple[str, ...] = ()) -> list[dict]:
    """``SELECT group..., SUM(field)... GROUP BY group...`` as dicts keyed by the plain field names
    (an annotation may not reuse a field's name, hence the ``sum_`` aliases)."""
    rows = queryset.order_by().values(*group).annotate(**{f"sum_{f}": Sum(f) for f in fields})
    if order_by:
        rows = rows.order_by(*order_by)
    out = []
    for row in rows:
        item = {g: row[g] for g in group}
        item.update({f: row[f"sum_{f}"] or 0 for f in fields})
        out.append(item)
    return out


def report_summary(*, tenant: Tenant, period: Period, queue_id: int | None = None) -> dict:
    """Every dashboard figure of a period: totals, one row per day, per queue, per hour and per reason.

    ``queue_id`` narrows the escalation figures (service level, speed of answer, abandonment, handle
    time, reasons) to one queue; contact figures (containment, callbacks, leads...) are the business's.
    """
    days = {"tenant_id": tenant.id, "day__gte": period.start, "day__lte": period.end}
    queues = list(
        Queue.objects.filter(tenant_id=tenant.id).order_by("name").values("id", "name", "service_level_seconds")
    )
    queue_filter = Q(queue_id=queue_id) if queue_id is not None else Q()

    contact_days = {row["day"]: row for row in summed(DailyTenantStats.objects.filter(**days), CONTACT_FIELDS, "day")}
    queue_days = {
        row["day"]: row for row in summed(DailyQueueStats.objects.filter(queue_filter, **days), QUEUE_FIELDS, "day")
    }
    zero_contacts = dict.fromkeys(CONTACT_FIELDS, 0)
    zero_queue = {f: (0.0 if f.endswith("_seconds") else 0) for f in QUEUE_FIELDS}
    series = []
    for day in period.days:
        row = {"day": day, **zero_contacts, **zero_queue}
        row.update({k: v for k, v in contact_days.get(day, {}).items() if k != "day"})
        row.update({k: v for k, v in queue_days.get(day, {}).items() if k != "day"})
        series.append(derived_figures(row))
    totals = {f: sum(r[f] for r in series) for f in (*CONTACT_FIELDS, *QUEUE_FIELDS)}

    per_queue = {
        row["queue_id"]: row for row in summed(DailyQueueStats.objects.filter(**days), QUEUE_FIELDS, "queue_id")
    }
    queue_rows = []
    for q in queues:
        row = {**zero_queue, **per_queue.get(q["id"], {})}
        row.update(queue_id=q["id"], name=q["name"], service_level_seconds=q["service_level_seconds"])
        queue_rows.append(derived_figures(row))

    hours = {h: {"hour": h, "voice": 0, "chat": 0, "total": 0} for h in range(24)}
    for row in summed(HourlyContacts.objects.filter(**days), ("contacts",), "hour", "channel"):
        bucket = hours[row["hour"]]
        bucket[row["channel"]] = bucket.get(row["channel"], 0) + row["contacts"]
        bucket["total"] += row["contacts"]

    reasons = [
        {**row, "label": reason_label(row["reason_code"])}
        for row in summed(
            EscalationReasonDaily.objects.filter(queue_filter, **days),
            ("escalations",),
            "reason_code",
            order_by=("-sum_escalations", "reason_code"),
        )
    ]
    computed_at = DailyTenantStats.objects.filter(**days).aggregate(at=Max("computed_at"))["at"]
    return {
        "tenant": tenant.slug,
        "period": period.as_dict(),
        "queue_id": queue_id,
        "computed_at": computed_at,
        "totals": derived_figures(totals),
        "days": series,
        "queues": queue_rows,
        "hours": list(hours.values()),
        "reasons": reasons,
    }


# --- the flow funnel ------------------------------------------------------------------------------------
def report_funnel(*, tenant: Tenant, period: Period) -> list[dict]:
    """Per published version (newest first): conversations, and per step (in the script's order) how
    many reached it, ended there and were handed to a person there."""
    rows = summed(
        FunnelStepDaily.objects.filter(tenant_id=tenant.id, day__gte=period.start, day__lte=period.end),
        ("reached", "ended", "escalated"),
        "flow_version_id",
        "step",
    )
    by_version: dict[int, dict[str, dict]] = defaultdict(dict)
    for row in rows:
        by_version[row["flow_version_id"]][row["step"]] = row
    versions = (
        FlowVersion.objects.filter(tenant_id=tenant.id, pk__in=list(by_version))
        .select_related("flow")
        .only("id", "number", "definition", "created_at", "flow__name", "flow__published_version_id")
        .order_by("flow__name", "-number")
    )
    out = []
    for version in versions:
        counts = by_version[version.pk]
        conversations = sum(r["ended"] for r in counts.values())
        defined = [(s.get("id"), s.get("kind", "")) for s in (version.definition or {}).get("steps", [])]
        known = {step for step, _ in defined}
        ordered = [(step, kind) for step, kind in defined if step in counts] + [
            (step, "") for step in sorted(counts) if step not in known
        ]
        steps = []
        for step, kind in ordered:
            r = counts[step]
            steps.append(
                {
                    "step": step,
                    "kind": kind,
                    "reached": r["reached"],
                    "reached_pct": pct(r["reached"], conversations),
                    "ended": r["ended"],
                    "escalated": r["escalated"],
                    "ended_other": r["ended"] - r["escalated"],
                    "continued": r["reached"] - r["ended"],
                }
            )
        out.append(
            {
                "flow_version_id": version.pk,
                "flow": version.flow.name,
                "version": version.number,
                "live": version.flow.published_version_id == version.pk,
                "published_at": version.created_at,
                "conversations": conversations,
                "steps": steps,
            }
        )
    return out


# --- the unmatched review -------------------------------------------------------------------------------
def report_unmatched(*, tenant: Tenant, period: Period, limit: int = 50, examples: int = 8) -> list[dict]:
    """Questions the script could not answer, grouped by similarity (per flow), most asked first.

    Texts somebody already handled (``UnmatchedHandled``) are left out. Each group carries the
    lower-cased texts (``keys``) the one-click actions post back, and the flow's draft intents.
    """
    rows = (
        UnmatchedDaily.objects.filter(tenant_id=tenant.id, day__gte=period.start, day__lte=period.end)
        .order_by()
        .values("flow_id", "text")
        .annotate(
            n_turns=Sum("turns"),
            n_out_of_scope=Sum("out_of_scope"),
            n_low_confidence=Sum("low_confidence"),
            said=Max("example"),
        )
        .order_by("-n_turns", "text")[:UNMATCHED_TEXTS_LIMIT]
    )
    handled = set(UnmatchedHandled.objects.filter(tenant_id=tenant.id).values_list("flow_id", "text"))
    per_flow: dict[int | None, dict[str, dict]] = defaultdict(dict)
    for row in rows:
        row = {
            "flow_id": row["flow_id"],
            "text": row["text"],
            "example": row["said"],
            "turns": row["n_turns"],
            "out_of_scope": row["n_out_of_scope"],
            "low_confidence": row["n_low_confidence"],
        }
        norm = normalize(row["text"])[:300] or row["text"]
        if (row["flow_id"], norm) in handled:
            continue
        item = per_flow[row["flow_id"]].get(norm)
        if item is None:
            per_flow[row["flow_id"]][norm] = {
                "norm": norm,
                "keys": [row["text"]],
                "examples": [(row["example"], row["turns"])],
                "turns": row["turns"],
                "out_of_scope": row["out_of_scope"],
                "low_confidence": row["low_confidence"],
            }
        else:
            item["keys"].append(row["text"])
            item["examples"].append((row["example"], row["turns"]))
            for f in ("turns", "out_of_scope", "low_confidence"):
                item[f] += row[f]

    flows = {f.pk: f for f in Flow.objects.filter(tenant_id=tenant.id, pk__in=[k for k in per_flow if k is not None])}
    intents: dict[int, list[dict]] = defaultdict(list)
    for intent in Intent.objects.filter(tenant_id=tenant.id, flow_id__in=list(flows)).order_by("name"):
        intents[intent.flow_id].append({"id": intent.pk, "name": intent.name})

    groups = []
    for flow_id, items in per_flow.items():
        entries = list(items.values())
        for members in group_by_similarity([e["norm"] for e in entries], [e["turns"] for e in entries]):
            chosen = [entries[i] for i in members]
            said = sorted((ex for e in chosen for ex in e["examples"]), key=lambda x: (-x[1], x[0]))
            flow = flows.get(flow_id)
            groups.append(
                {
                    "id": f"{flow_id or 0}-{chosen[0]['norm']}",
                    "flow_id": flow_id,
                    "flow": flow.name if flow else None,
                    "label": said[0][0],
                    "turns": sum(e["turns"] for e in chosen),
                    "out_of_scope": sum(e["out_of_scope"] for e in chosen),
                    "low_confidence": sum(e["low_confidence"] for e in chosen),
                    "questions": sum(len(e["keys"]) for e in chosen),
                    "examples": [{"text": text, "turns": n} for text, n in said[:examples]],
                    "keys": [k for e in chosen for k in e["keys"]],
                    "intents": intents.get(flow_id, []),
                }
            )
    groups.sort(key=lambda g: (-g["turns"], g["label"]))
    return groups[:limit]


# --- agencies ---------------------------------------------------------------------------------------------
def report_agency(*, agency_id: int, tenants: list[Tenant], period_key: str, now: dt.datetime) -> dict:
    """An agency's work per client business over a period (each business's own local days): contacts
    its agents handled, talk minutes, how many of them within the queue's service level, and the
    business's overall service level for comparison."""
    periods = {t.id: period_for(period_key, tz_name=t.timezone, now=now) for t in tenants}
    if not tenants:
        return {"period": PERIODS[period_key or DEFAULT_PERIOD][0], "rows": [], "totals": {}}
    spans = Q(pk__in=[])
    for t in tenants:
        spans |= Q(tenant_id=t.id, day__gte=periods[t.id].start, day__lte=periods[t.id].end)
    work = {
        row["tenant_id"]: row
        for row in summed(
            AgencyDaily.objects.filter(spans, agency_id=agency_id),
            ("handled", "answered_within_sl", "wait_seconds", "talk_seconds"),
            "tenant_id",
        )
    }
    overall = {
        row["tenant_id"]: row
        for row in summed(DailyQueueStats.objects.filter(spans), ("sl_met", "sl_counted"), "tenant_id")
    }
    rows = []
    for t in sorted(tenants, key=lambda t: t.name.lower()):
        w = work.get(t.id, {})
        o = overall.get(t.id, {})
        handled = w.get("handled") or 0
        rows.append(
            {
                "tenant": t.slug,
                "name": t.name,
                "start": periods[t.id].start,
                "end": periods[t.id].end,
                "handled": handled,
                "talk_minutes": round((w.get("talk_seconds") or 0) / 60.0, 1),
                "answered_within_sl": w.get("answered_within_sl") or 0,
                "within_sl_pct": pct(w.get("answered_within_sl") or 0, handled),
                "asa_seconds": avg(w.get("wait_seconds") or 0, handled),
                "business_service_level_pct": pct(o.get("sl_met") or 0, o.get("sl_counted") or 0),
            }
        )
    handled = sum(r["handled"] for r in rows)
    within = sum(r["answered_within_sl"] for r in rows)
    return {
        "period": PERIODS[period_key or DEFAULT_PERIOD][0],
        "rows": rows,
        "totals": {
            "handled": handled,
            "talk_minutes": round(sum(r["talk_minutes"] for r in rows), 1),
            "answered_within_sl": within,
            "within_sl_pct": pct(within, handled),
        },
    }
