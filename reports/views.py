"""Report pages: a business's dashboard, flow funnel and unmatched-question review, their CSV exports,
and an answering agency's view of its work per client business.

Tenant pages use ``@tenant_view(Role.SUPERVISOR)`` (owners, admins and supervisors read; acting on
the review needs ``Role.ADMIN``); agency pages ``@agency_view(AgencyRole.SUPERVISOR)``. Every figure
comes from ``reports.selectors`` so a page, its CSV and the API agree.
"""

from __future__ import annotations

import datetime as dt

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_POST

from flows.models import Flow, Intent, Queue
from reports import exports, services
from reports.models import DailyTenantStats
from reports.rollup import local_today, rollup_day
from reports.selectors import (
    PERIODS,
    UnknownPeriod,
    period_for,
    period_from_params,
    report_agency,
    report_funnel,
    report_summary,
    report_unmatched,
)
from tenants.agency_access import agency_view
from tenants.decorators import tenant_view
from tenants.models import AgencyRole, Coverage, Role, Tenant


def _period(request, tenant):
    try:
        return period_from_params(request.GET, tz_name=tenant.timezone, now=timezone.now())
    except UnknownPeriod as exc:
        messages.error(request, str(exc))
        return period_for(None, tz_name=tenant.timezone, now=timezone.now())


def _queue_id(request, tenant_id: int) -> int | None:
    raw = request.GET.get("queue") or ""
    if not raw:
        return None
    if not raw.isdigit() or not Queue.objects.filter(tenant_id=tenant_id, pk=int(raw)).exists():
        raise Http404("No such queue.")
    return int(raw)


def _common(request, period, queue_id=None) -> dict:
    query = {"period": period.key} if period.key != "custom" else {"start": period.start, "end": period.end}
    if queue_id is not None:
        query["queue"] = queue_id
    return {
        "tenant": request.tenant,
        "access": request.tenant_access,
        "period": period,
        "periods": [(key, label) for key, (label, _) in PERIODS.items()],
        "query": urlencode(query),
        "can_act": request.tenant_access.allows(Role.ADMIN),
    }


@tenant_view(Role.SUPERVISOR)
@require_GET
def dashboard(request, tenant_slug: str):
    tenant = request.tenant
    period = _period(request, tenant)
    queue_id = _queue_id(request, tenant.id)
    summary = report_summary(tenant=tenant, period=period, queue_id=queue_id)
    chart_data = {
        "days": [
            {
                "day": row["day"].isoformat(),
                "voice": row["voice"],
                "chat": row["chat"],
                "containment": row["containment_pct"],
                "service_level": row["service_level_pct"],
                "escalations": row["escalations"],
            }
            for row in summary["days"]
        ],
        "hours": summary["hours"],
    }
    return render(
        request,
        "reports/dashboard.html",
        {
            **_common(request, period, queue_id),
            "summary": summary,
            "totals": summary["totals"],
            "queues": Queue.objects.filter(tenant_id=tenant.id).order_by("name"),
            "queue_id": queue_id,
            "chart_data": chart_data,
            "max_reason": max((r["escalations"] for r in summary["reasons"]), default=0),
            "tables": [(name, label) for name, (label, _) in exports.TABLES.items()],
        },
    )


REFRESH_AT_MOST_EVERY = dt.timedelta(minutes=1)


@tenant_view(Role.SUPERVISOR)
@require_POST
def refresh_today(request, tenant_slug: str):
    """Recompute this business's today now instead of waiting for the hourly rollup (cheap: one business)."""
    tenant = request.tenant
    now = timezone.now()
    today = local_today(tenant.timezone, now)
    fresh = DailyTenantStats.objects.filter(
        tenant_id=tenant.id, day=today, computed_at__gt=now - REFRESH_AT_MOST_EVERY
    ).exists()
    if not fresh:
        rollup_day(tenant_ids=[tenant.id], day=today, tz_name=tenant.timezone, now=now)
    messages.success(request, "Today's figures are up to date.")
    back = reverse("reports-dashboard", args=[tenant.slug])
    period = request.POST.get("period")
    return redirect(f"{back}?{urlencode({'period': period})}" if period in PERIODS else back)


@tenant_view(Role.SUPERVISOR)
@require_GET
def funnel(request, tenant_slug: str):
    period = _period(request, request.tenant)
    return render(
        request,
        "reports/funnel.html",
        {**_common(request, period), "versions": report_funnel(tenant=request.tenant, period=period)},
    )


@tenant_view(Role.SUPERVISOR)
@require_GET
def unmatched(request, tenant_slug: str):
    period = _period(request, request.tenant)
    groups = report_unmatched(tenant=request.tenant, period=period)
    return render(request, "reports/unmatched.html", {**_common(request, period), "groups": groups})


def _review_action(request, action):
    """Shared by the three one-click actions: load the flow (404 if not this tenant's), run the action,
    report the result, go back to the review with the same period."""
    tenant_id = request.tenant_access.tenant_id
    back = reverse("reports-unmatched", args=[request.tenant_access.slug])
    if request.POST.get("period") in PERIODS:
        back += "?" + urlencode({"period": request.POST["period"]})
    flow_id = request.POST.get("flow") or ""
    if not flow_id.isdigit():
        messages.error(request, "Choose the script these questions belong to.")
        return redirect(back)
    flow = get_object_or_404(Flow, pk=int(flow_id), tenant_id=tenant_id)
    keys = request.POST.getlist("key")
    try:
        text = action(tenant_id=tenant_id, flow=flow, keys=keys)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, text)
    return redirect(back)


def _flow_link(flow: Flow) -> str:
    return reverse("admin:flows_flow_change", args=[flow.pk])


@tenant_view(Role.ADMIN)
@require_POST
def unmatched_add_examples(request, tenant_slug: str):
    intent_id = request.POST.get("intent") or ""

    def action(*, tenant_id, flow, keys):
        if not intent_id.isdigit():
            raise ValidationError("Choose the intent these questions mean.")
        intent = get_object_or_404(Intent, pk=int(intent_id), tenant_id=tenant_id, flow_id=flow.pk)
        added = services.unmatched_add_examples(
            tenant_id=tenant_id, flow=flow, intent=intent, keys=keys, user=request.user
        )
        return (
            f"Added {len(added)} example(s) to the intent “{intent.name}” in the draft of “{flow.name}”. "
            "Callers hear the change once you publish the script (Settings → Flows → Check & publish)."
        )

    return _review_action(request, action)


@tenant_view(Role.ADMIN)
@require_POST
def unmatched_new_faq(request, tenant_slug: str):
    def action(*, tenant_id, flow, keys):
        faq = services.unmatched_new_faq(
            tenant_id=tenant_id,
            flow=flow,
            keys=keys,
            answer=request.POST.get("answer", ""),
            key=(request.POST.get("faq_key") or "").strip(),
            user=request.user,
        )
        return (
            f"Added the FAQ “{faq.key}” to the draft of “{flow.name}”. "
            "Callers hear it once you publish the script (Settings → Flows → Check & publish)."
        )

    return _review_action(request, action)


@tenant_view(Role.ADMIN)
@require_POST
def unmatched_dismiss(request, tenant_slug: str):
    def action(*, tenant_id, flow, keys):
        n = services.unmatched_dismiss(tenant_id=tenant_id, flow=flow, keys=keys, user=request.user)
        return f"Dismissed {n} question(s); they leave the review."

    return _review_action(request, action)


def _export_view(name: str):
    label, build = exports.TABLES[name]

    @tenant_view(Role.SUPERVISOR)
    @require_GET
    def export(request, tenant_slug: str):
        tenant = request.tenant
        period = _period(request, tenant)
        header, rows = build(tenant, period, _queue_id(request, tenant.id))
        return exports.csv_response(request, _filename(tenant, name, period), header, rows)

    export.__name__ = export.__qualname__ = f"export_{name}"
    export.__doc__ = f"CSV: {label.lower()} of a period."
    return export


def _filename(tenant: Tenant, name: str, period) -> str:
    return f"{tenant.slug}-{name}-{period.start:%Y%m%d}-{period.end:%Y%m%d}.csv"


EXPORT_VIEWS = {name: _export_view(name) for name in exports.TABLES}


@tenant_view(Role.SUPERVISOR)
@require_GET
def export_conversations(request, tenant_slug: str):
    """CSV: every conversation started in the period, with its transcript (streamed)."""
    tenant = request.tenant
    period = _period(request, tenant)
    rows = exports.conversation_rows(tenant, period)
    return exports.csv_response(request, _filename(tenant, "conversations", period), exports.CONVERSATION_HEADER, rows)


# --- agencies -----------------------------------------------------------------------------------------
def _covered_tenants(request) -> list[Tenant]:
    """Businesses the agency covers now and the user may act for (the request's scope)."""
    access = getattr(request, "tenant_access_map", {}) or {}
    ids = Coverage.objects.filter(agency_id=request.agency.pk, active=True, tenant_id__in=list(access)).values_list(
        "tenant_id", flat=True
    )
    return list(Tenant.objects.filter(pk__in=list(ids)).order_by("name"))


def _agency_period(request) -> str:
    key = request.GET.get("period") or "7d"
    if key not in PERIODS:
        messages.error(request, f"{key!r} is not a period; showing the last 7 days.")
        key = "7d"
    return key


@agency_view(AgencyRole.SUPERVISOR)
@require_GET
def agency_reports(request, agency_slug: str):
    key = _agency_period(request)
    report = report_agency(
        agency_id=request.agency.pk, tenants=_covered_tenants(request), period_key=key, now=timezone.now()
    )
    return render(
        request,
        "reports/agency.html",
        {
            "agency": request.agency,
            "report": report,
            "period_key": key,
            "periods": [(k, label) for k, (label, _) in PERIODS.items()],
        },
    )


@agency_view(AgencyRole.SUPERVISOR)
@require_GET
def agency_export(request, agency_slug: str):
    key = _agency_period(request)
    report = report_agency(
        agency_id=request.agency.pk, tenants=_covered_tenants(request), period_key=key, now=timezone.now()
    )
    header = ["business", "start", "end", "handled", "talk_minutes", "answered_within_sl", "within_sl_pct"]
    header += ["asa_seconds", "business_service_level_pct"]
    rows = [[r["name"], *(r[f] for f in header[1:])] for r in report["rows"]]
    return exports.csv_response(request, f"{request.agency.slug}-clients-{key}.csv", header, rows)
