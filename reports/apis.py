"""REST API v1 for reports: the dashboard's figures, the flow funnel and the unmatched review.

The same selectors as the pages (``reports.selectors``), so the API and the dashboard show the same
figures. Each endpoint derives from ``tenants.drf.TenantScopedViewSet`` (tenant from the URL; no
access -> 404; below supervisor -> 403; a read-only API key acts as a supervisor, so it may read).
"""

from __future__ import annotations

from django.http import Http404
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from flows.models import Queue
from reports.models import DailyTenantStats, FunnelStepDaily, UnmatchedDaily
from reports.selectors import (
    CONTACT_FIELDS,
    PERIODS,
    QUEUE_FIELDS,
    UnknownPeriod,
    period_from_params,
    report_funnel,
    report_summary,
    report_unmatched,
)
from tenants.drf import TenantScopedViewSet
from tenants.models import Role
from tenants.schema import error_responses

JSON_ONLY = [JSONRenderer]

FIGURE_HELP = {
    "contacts": "Calls and chats that started.",
    "voice": "Phone calls.",
    "chat": "Web chats.",
    "resolved": "Ended as resolved by the AI (repeat contacts included).",
    "ai_resolved": "Resolved by the AI with no contact from the same caller within the next 48 hours.",
    "repeat_contacts": "Resolved, but the same caller came back within 48 hours (not contained).",
    "escalated": "Conversations handed to a person.",
    "voicemails": "Voicemails left.",
    "callbacks_requested": "Callbacks promised.",
    "callbacks_due": "Callbacks first due in the period (cancelled before being offered: not counted).",
    "callbacks_on_time": "Of those, offered to an agent within 2 minutes of being due.",
    "leads": "Leads captured.",
    "appointments": "Appointment requests.",
    "escalations": "Live escalations (callers waiting for a person).",
    "answered": "Live escalations accepted by a person.",
    "wait_seconds": "Sum of the waits (arrival to accept) of answered live escalations.",
    "sl_counted": "Live escalations that arrived while the business was open and are decided.",
    "sl_met": "Of those, accepted within the queue's service-level threshold.",
    "out_of_hours": "Live escalations that arrived while closed (not on the service-level clock).",
    "abandoned": "The caller hung up waiting (a caller who chose a callback is not abandoned).",
    "chose_callback": "Turned into a callback at the caller's choice.",
    "expired": "Nobody took it within the queue's maximum wait.",
    "callback_escalations": "Callback attempts offered to agents.",
    "handled": "Escalations wrapped up by an agent (live and callbacks).",
    "handle_seconds": "Sum of accept-to-wrap-up times of handled escalations.",
    "containment_pct": "AI containment: ai_resolved / contacts, in percent (null without contacts).",
    "callbacks_on_time_pct": "callbacks_on_time / callbacks_due, in percent.",
    "service_level_pct": "Service level: sl_met / sl_counted, in percent.",
    "asa_seconds": "Average speed of answer: wait_seconds / answered.",
    "abandonment_pct": "abandoned / escalations, in percent.",
    "aht_seconds": "Average handle time: handle_seconds / handled.",
}
FLOAT_FIELDS = {"wait_seconds", "handle_seconds"}
DERIVED_CONTACT = ("containment_pct", "callbacks_on_time_pct")
DERIVED_QUEUE = ("service_level_pct", "asa_seconds", "abandonment_pct", "aht_seconds")


def _field(name: str) -> serializers.Field:
    help_text = FIGURE_HELP[name]
    if name in DERIVED_CONTACT or name in DERIVED_QUEUE:
        return serializers.FloatField(allow_null=True, help_text=help_text)
    if name in FLOAT_FIELDS:
        return serializers.FloatField(help_text=help_text)
    return serializers.IntegerField(help_text=help_text)


def _figures(class_name: str, names: tuple[str, ...], **extra) -> type[serializers.Serializer]:
    """A serializer class (an OpenAPI component named ``class_name``) with one field per figure."""
    return type(class_name, (serializers.Serializer,), {**{n: _field(n) for n in names}, **extra})


ALL_FIGURES = (*CONTACT_FIELDS, *QUEUE_FIELDS, *DERIVED_CONTACT, *DERIVED_QUEUE)
TotalsSerializer = _figures("ReportTotals", ALL_FIGURES)
DaySerializer = _figures("ReportDay", ALL_FIGURES, day=serializers.DateField(help_text="The business's local day."))
QueueFiguresSerializer = _figures(
    "ReportQueue",
    (*QUEUE_FIELDS, *DERIVED_QUEUE),
    queue_id=serializers.IntegerField(),
    name=serializers.CharField(),
    service_level_seconds=serializers.IntegerField(help_text="The queue's service-level threshold."),
)


class PeriodSerializer(serializers.Serializer):
    key = serializers.CharField(help_text="`today`, `7d`, `30d`, or `custom` (start and end given).")
    label = serializers.CharField()
    start = serializers.DateField(help_text="First local day, inclusive.")
    end = serializers.DateField(help_text="Last local day, inclusive.")


class HourSerializer(serializers.Serializer):
    hour = serializers.IntegerField(help_text="Local hour of the day, 0-23.")
    voice = serializers.IntegerField()
    chat = serializers.IntegerField()
    total = serializers.IntegerField()


class ReasonSerializer(serializers.Serializer):
    reason_code = serializers.CharField(help_text="Why the AI handed over, e.g. `asked_for_human`, `out_of_scope`.")
    label = serializers.CharField()
    escalations = serializers.IntegerField()


class SummarySerializer(serializers.Serializer):
    tenant = serializers.SlugField()
    period = PeriodSerializer()
    queue_id = serializers.IntegerField(allow_null=True, help_text="The queue the escalation figures are for, if any.")
    computed_at = serializers.DateTimeField(
        allow_null=True, help_text="When the newest day was rolled up (hourly for today); null before the first run."
    )
    totals = TotalsSerializer()
    days = DaySerializer(many=True)
    queues = QueueFiguresSerializer(many=True)
    hours = HourSerializer(many=True)
    reasons = ReasonSerializer(many=True)


class FunnelStepSerializer(serializers.Serializer):
    step = serializers.CharField()
    kind = serializers.CharField(help_text="The step's kind in the version (empty if no longer defined).")
    reached = serializers.IntegerField(help_text="Conversations that reached the step.")
    reached_pct = serializers.FloatField(allow_null=True, help_text="reached / the version's conversations.")
    continued = serializers.IntegerField(help_text="Reached it and went on to another step.")
    ended = serializers.IntegerField(help_text="Conversations whose last step this was.")
    escalated = serializers.IntegerField(help_text="Of those, handed to a person here.")
    ended_other = serializers.IntegerField(help_text="Ended here without a person (resolved, voicemail, hung up...).")


class FunnelVersionSerializer(serializers.Serializer):
    flow_version_id = serializers.IntegerField()
    flow = serializers.CharField()
    version = serializers.IntegerField()
    live = serializers.BooleanField(help_text="This version is the flow's published one.")
    published_at = serializers.DateTimeField()
    conversations = serializers.IntegerField()
    steps = FunnelStepSerializer(many=True)


class ExampleSerializer(serializers.Serializer):
    text = serializers.CharField()
    turns = serializers.IntegerField()


class IntentChoiceSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class UnmatchedGroupSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="Stable while the group's leading question is the same.")
    flow_id = serializers.IntegerField(allow_null=True)
    flow = serializers.CharField(allow_null=True)
    label = serializers.CharField(help_text="The most asked wording.")
    turns = serializers.IntegerField(help_text="Times asked in the period.")
    out_of_scope = serializers.IntegerField()
    low_confidence = serializers.IntegerField()
    questions = serializers.IntegerField(help_text="Distinct wordings in the group (as said, lower-cased).")
    examples = ExampleSerializer(many=True)
    keys = serializers.ListField(child=serializers.CharField(), help_text="The wordings (lower case).")
    intents = IntentChoiceSerializer(many=True, help_text="The flow's draft intents they could be added to.")


PERIOD_PARAMETERS = [
    OpenApiParameter(
        "period", OpenApiTypes.STR, enum=list(PERIODS), description="Local days ending today; default `7d`."
    ),
    OpenApiParameter("start", OpenApiTypes.DATE, description="With `end`: a custom period (local days, inclusive)."),
    OpenApiParameter("end", OpenApiTypes.DATE, description="With `start`: the last day, inclusive (366 days at most)."),
]


class _ReportViewSet(TenantScopedViewSet):
    renderer_classes = JSON_ONLY
    pagination_class = None
    read_role = Role.SUPERVISOR
    write_role = Role.ADMIN

    def period(self, request):
        try:
            return period_from_params(request.query_params, tz_name=self.tenant.timezone, now=timezone.now())
        except UnknownPeriod as exc:
            raise exceptions.ValidationError({"period": [str(exc)]}) from exc


@extend_schema(tags=["reports"])
class ReportSummaryViewSet(_ReportViewSet):
    """The dashboard's figures for a period: totals, per day, per queue, per hour of the day, per reason."""

    model = DailyTenantStats

    @extend_schema(
        parameters=[
            *PERIOD_PARAMETERS,
            OpenApiParameter("queue", OpenApiTypes.INT, description="Escalation figures of this queue only."),
        ],
        responses={200: SummarySerializer, **error_responses(400, 403, 404)},
    )
    def retrieve(self, request, tenant_slug: str):
        period = self.period(request)
        queue_id = None
        raw = request.query_params.get("queue")
        if raw:
            if not raw.isdigit() or not Queue.objects.filter(tenant_id=self.tenant.id, pk=int(raw)).exists():
                raise Http404
            queue_id = int(raw)
        data = report_summary(tenant=self.tenant, period=period, queue_id=queue_id)
        return Response(SummarySerializer(data).data)


@extend_schema(tags=["reports"])
class ReportFunnelViewSet(_ReportViewSet):
    """The flow funnel: per published version, how many conversations reached each step and where they ended."""

    model = FunnelStepDaily

    @extend_schema(
        parameters=PERIOD_PARAMETERS,
        responses={200: FunnelVersionSerializer(many=True), **error_responses(400, 403, 404)},
    )
    def retrieve(self, request, tenant_slug: str):
        return Response(
            FunnelVersionSerializer(report_funnel(tenant=self.tenant, period=self.period(request)), many=True).data
        )


@extend_schema(tags=["reports"])
class ReportUnmatchedViewSet(_ReportViewSet):
    """Questions the script could not answer (out of scope or low confidence), grouped by similarity."""

    model = UnmatchedDaily

    @extend_schema(
        parameters=PERIOD_PARAMETERS,
        responses={200: UnmatchedGroupSerializer(many=True), **error_responses(400, 403, 404)},
    )
    def retrieve(self, request, tenant_slug: str):
        groups = report_unmatched(tenant=self.tenant, period=self.period(request))
        return Response(UnmatchedGroupSerializer(groups, many=True).data)
