"""The simulator: type what a caller says (or press keys) and see what the AI answers and why.

Runs the real engine on the draft or on any published version. The conversation state lives in
the admin user's session, one per flow and target, so several tabs can simulate side by side.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from django.template.response import TemplateResponse
from django.utils import timezone

from flows import services
from flows.definition import errors_only, to_json
from flows.engine import ConversationState, Event, actions_to_json
from flows.models import Flow, FlowVersion
from flows.runtime import compiled_definition, compiled_version, run_turn

MAX_TEXT = 500
MAX_TRANSCRIPT = 60


def _target(flow: Flow, value: str) -> tuple[str, FlowVersion | None]:
    if value.startswith("v") and value[1:].isdigit():
        version = FlowVersion.objects.filter(flow=flow, number=int(value[1:])).first()
        if version is not None:
            return value, version
    if value == "live" and flow.published_version_id:
        return "live", flow.published_version
    return "draft", None


def _event_time(flow: Flow, raw: str) -> dt.datetime:
    """The simulated clock: now, or a local date/time typed in the tenant's time zone."""
    if not raw:
        return timezone.now()
    try:
        naive = dt.datetime.fromisoformat(raw)
    except ValueError:
        return timezone.now()
    return naive.replace(tzinfo=ZoneInfo(flow.tenant.timezone)) if naive.tzinfo is None else naive


def describe(turn, event: Event) -> dict[str, Any]:
    understanding = turn.understanding
    return {
        "caller": event.text or (f"pressed {event.dtmf}" if event.dtmf else f"({event.kind})"),
        "replies": [_reply(a) for a in actions_to_json(turn.actions)],
        "intent": getattr(understanding, "label", None),
        "confidence": round(getattr(understanding, "confidence", 0.0) or 0.0, 3) if understanding else None,
        "out_of_scope": getattr(understanding, "out_of_scope", None),
        "candidates": [(label, round(score, 3)) for label, score in getattr(understanding, "candidates", ())][:3],
        "slots": dict(turn.state.slots),
        "step": turn.state.current_step,
        "finished": turn.state.finished,
        "outcome": turn.state.outcome,
        "escalation_reason": turn.state.escalation_reason,
    }


def _reply(action: dict) -> dict:
    kind = action["type"]
    text = action.get("text") or action.get("prompt") or ""
    if kind == "transfer":
        text = f"→ transfer to queue {action['queue']} (priority {action['priority']})"
    elif kind == "hangup":
        text = "→ hang up"
    elif kind == "capture_lead":
        text = f"→ lead saved: {action['fields']}"
    elif kind == "request_appointment":
        text = f"→ appointment requested: {action['service']} at {action['when']}"
    return {
        "type": kind,
        "text": text,
        "reason_code": action["reason"]["code"],
        "reason": action["reason"]["explanation"],
        "summary": action.get("summary"),
    }


def simulator_page(model_admin, request, flow: Flow):
    target_name, version = _target(flow, request.POST.get("target") or request.GET.get("target") or "draft")
    session_key = f"flow-sim:{flow.pk}:{target_name}"
    saved = request.session.get(session_key) or {}
    problems: list = []
    compiled = None
    if version is not None:
        compiled = compiled_version(version)
    else:
        defn, problems = services.flow_check(flow)
        if defn is not None and not errors_only(problems):
            compiled = compiled_definition(defn, cache_key=f"{flow.pk}:{services.definition_hash(to_json(defn))}")
    transcript: list[dict] = saved.get("transcript", [])
    input_error = ""
    channel = request.POST.get("channel") or saved.get("channel") or "voice"
    channel = channel if channel in ("voice", "chat") else "voice"

    if request.method == "POST" and compiled is not None:
        action = request.POST.get("action", "say")
        now = _event_time(flow, request.POST.get("when", ""))
        state = ConversationState.from_json(saved["state"]) if saved.get("state") and action != "restart" else None
        text = (request.POST.get("text") or "").strip()
        keys = (request.POST.get("keys") or "").strip()
        event = None
        if action == "restart" or state is None:
            transcript = []
            event = Event.start(now, channel=channel)
        elif action == "keys":
            if keys and all(k in "0123456789*#" for k in keys) and len(keys) <= 20:
                event = Event.keys(keys, now, channel=channel)
            else:
                input_error = "Press phone keys only: 0-9, * and #."
        elif action == "silence":
            event = Event.silence(now, channel=channel)
        else:
            if not text:
                input_error = "Type what the caller says, or press Silence."
            elif len(text) > MAX_TEXT:
                input_error = f"Keep it under {MAX_TEXT} characters; callers rarely say more in one turn."
            else:
                confidence = request.POST.get("asr_confidence")
                try:
                    asr = float(confidence) if confidence else None
                except ValueError:
                    asr = None
                event = Event.utterance(text, now, asr_confidence=asr, channel=channel)
        if event is not None:
            turn = run_turn(compiled, state, event)
            transcript = (transcript + [describe(turn, event)])[-MAX_TRANSCRIPT:]
            saved = {"state": turn.state.to_json(), "transcript": transcript, "channel": channel}
            request.session[session_key] = saved

    state = ConversationState.from_json(saved["state"]) if saved.get("state") else None
    versions = list(FlowVersion.objects.filter(flow=flow).order_by("-number").values_list("number", flat=True)[:20])
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": flow._meta,
        "original": flow,
        "title": f"Simulate {flow.name}",
        "target": target_name,
        "version": version,
        "versions": versions,
        "errors": errors_only(problems),
        "transcript": transcript,
        "state": state,
        "channel": channel,
        "input_error": input_error,
        "tenant_timezone": flow.tenant.timezone,
    }
    return TemplateResponse(request, "admin/flows/flow/simulate.html", context, status=400 if input_error else 200)
