"""Dashboard pages for phone numbers: the phone simulator.

The simulator page lets owners, admins and supervisors call one of their business's numbers from the
browser. The browser never talks to the webhooks itself (it cannot sign them): it posts each step to
`phone_relay`, which drives a `CallSimulator` over `InProcessTransport`, i.e. through the very webhook
views Vonage calls, signed with the server's own secret (see telephony/simulator.py for why in-process).
The simulated call's identity (Vonage uuid, the input URL of the last NCCO, its state) lives in the
session, one call per business. Simulated calls are real conversations in the records (their Vonage uuid
starts with "sim-").
"""

from __future__ import annotations

import json
import logging
import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from telephony.models import PhoneNumber, normalize_e164
from telephony.simulator import (
    DEFAULT_FROM,
    CallNotListening,
    CallSimulator,
    InProcessTransport,
    SignatureRefused,
    SimulatorError,
    UnknownNumber,
)
from tenants.decorators import tenant_view
from tenants.models import Role

logger = logging.getLogger("switchboard.telephony")

SESSION_KEY = "phone_simulator"  # {tenant id: CallSimulator.to_state() + number id}
MAX_TEXT = 500
DIGITS = re.compile(r"[0-9*#]{1,20}")


def _calls(request) -> dict:
    calls = request.session.get(SESSION_KEY)
    return calls if isinstance(calls, dict) else {}


def _saved_call(request) -> dict | None:
    return _calls(request).get(str(request.tenant_access.tenant_id))


def _save_call(request, call: CallSimulator | None, number_id: int | None = None) -> None:
    calls = _calls(request)
    key = str(request.tenant_access.tenant_id)
    if call is None or not call.in_progress:
        calls.pop(key, None)
    else:
        calls[key] = {**call.to_state(), "number_id": number_id}
    request.session[SESSION_KEY] = calls


def _simulator(state: dict | None = None) -> CallSimulator:
    """A simulator that calls the webhook views in this process (InProcessTransport)."""
    base_url, secret = settings.SITE_URL or "http://localhost", settings.VONAGE_SIGNATURE_SECRET
    options = {"api_key": settings.VONAGE_API_KEY or "sim", "application_id": settings.VONAGE_APPLICATION_ID or None}
    if state is None:
        return CallSimulator(base_url, secret, InProcessTransport(), **options)
    return CallSimulator.from_state(state, base_url=base_url, secret=secret, transport=InProcessTransport(), **options)


def _call_json(call: CallSimulator | None, number_id: int | None = None) -> dict:
    if call is None:
        return {"state": "idle", "listening": False, "active": False}
    return {
        "state": call.state,
        "listening": call.listening,
        "active": call.in_progress,
        "to": call.to,
        "from": call.from_,
        "uuid": call.uuid,
        "number_id": number_id,
    }


def _error(message: str, status: int, **extra) -> JsonResponse:
    return JsonResponse({"error": message, **extra}, status=status)


@never_cache
@tenant_view(Role.SUPERVISOR)
def phone_simulator(request, tenant_slug: str):
    numbers = list(PhoneNumber.objects.filter(active=True).select_related("flow").order_by("number"))
    saved = _saved_call(request)
    current = None
    if saved:
        call = _simulator(saved)
        current = _call_json(call, saved.get("number_id"))
    return render(
        request,
        "telephony/phone_simulator.html",
        {
            "tenant": request.tenant,
            "numbers": numbers,
            "default_from": DEFAULT_FROM,
            "current_call": current,
            "signing_ready": bool(settings.VONAGE_SIGNATURE_SECRET),
        },
    )


@never_cache
@tenant_view(Role.SUPERVISOR)
@require_POST
def phone_relay(request, tenant_slug: str):
    """One step of a simulated call. JSON in: {"action": "call", "number": <id>, "from": "+1..."} |
    {"action": "say", "text": ..., "confidence": 0.9} | {"action": "press", "digits": "1"} |
    {"action": "silence"} | {"action": "hangup"}. JSON out: {"call": {...}, "turn": {...} | null}."""
    try:
        data = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        data = request.POST.dict()
    if not isinstance(data, dict):
        return _error("Send a JSON object.", 400)
    action = str(data.get("action") or "")
    if not settings.VONAGE_SIGNATURE_SECRET:
        return _error("Calls cannot be simulated: VONAGE_SIGNATURE_SECRET is not set on this server.", 503)

    saved = _saved_call(request)
    try:
        if action == "call":
            try:
                number_id = int(data.get("number"))
            except (TypeError, ValueError):
                return _error("Choose a number to call.", 400)
            # Tenant-scoped (the middleware entered this business's scope): another business's number is 404.
            number = PhoneNumber.objects.filter(active=True, pk=number_id).first()
            if number is None:
                return _error("No such active number in this business.", 404)
            try:
                caller = normalize_e164(str(data.get("from") or DEFAULT_FROM))
            except ValidationError as exc:
                return _error(exc.messages[0], 400)
            if saved:  # one call at a time per business: end the previous one properly
                previous = _simulator(saved)
                try:
                    previous.hang_up()
                except SimulatorError:
                    logger.warning(
                        "could not end the previous simulated call", extra={"vonage_uuid": saved.get("uuid")}
                    )
                _save_call(request, None)
            call = _simulator()
            try:
                turn = call.answer(number.number, caller)
            except UnknownNumber as exc:
                _save_call(request, None)
                return _error(str(exc), 409, turn=exc.turn.to_json(), call=_call_json(call, number_id))
            _save_call(request, call, number_id)
            return JsonResponse({"call": _call_json(call, number_id), "turn": turn.to_json()})

        if action not in ("say", "press", "silence", "hangup"):
            return _error("Unknown action: use call, say, press, silence or hangup.", 400)
        if not saved:
            if action == "hangup":
                return JsonResponse({"call": _call_json(None), "turn": None})
            return _error("No call in progress: press Call first.", 409, call=_call_json(None))
        call = _simulator(saved)
        number_id = saved.get("number_id")
        if action == "hangup":
            call.hang_up()
            _save_call(request, None)
            return JsonResponse({"call": _call_json(call, number_id), "turn": None})
        if action == "say":
            text = " ".join(str(data.get("text") or "").split())[:MAX_TEXT]
            if not text:
                return _error("Type what the caller says (or use Silence).", 400)
            try:
                confidence = min(max(float(data.get("confidence", 0.93)), 0.0), 1.0)
            except (TypeError, ValueError):
                confidence = 0.93
            turn = call.say(text, confidence=confidence)
        elif action == "press":
            digits = str(data.get("digits") or "").strip()
            if not DIGITS.fullmatch(digits):
                return _error("Keys are 0-9, * and # (at most 20).", 400)
            turn = call.press(digits)
        else:
            turn = call.silence()
        _save_call(request, call, number_id)
        return JsonResponse({"call": _call_json(call, number_id), "turn": turn.to_json()})
    except CallNotListening as exc:
        call = _simulator(saved) if saved else None
        return _error(str(exc), 409, call=_call_json(call, saved.get("number_id") if saved else None))
    except SignatureRefused as exc:
        logger.error("the webhooks refused the simulator's own signature", extra={"error": str(exc)})
        return _error("The webhooks refused the simulator's signature; check VONAGE_SIGNATURE_SECRET.", 502)
    except SimulatorError as exc:
        logger.warning("simulated call step failed", extra={"action": action, "error": str(exc)})
        return _error(str(exc), 502)
