"""Vonage webhooks. Every request must carry Vonage's signed JWT (401 otherwise, nothing changes).

No dead air: whatever fails while handling a call webhook (database down, engine error, the turn
taking longer than the budget), the caller still gets a valid NCCO: an apology and the business's
fallback (its own number, else voicemail, else a polite goodbye). These views never answer 500.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Callable

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core import signals
from django.db import connections
from django.http import HttpRequest, JsonResponse, QueryDict
from django.views.decorators.csrf import csrf_exempt

from contactcenter.logging import bound
from telephony import services
from telephony.asgi import keep_lane_connections, run_in_lane
from telephony.signing import CacheReplayStore, SignatureError, verify_request

logger = logging.getLogger("switchboard.telephony")
_replay_store = CacheReplayStore()


def _signature_refusal(
    *, authorization: str | None, body: bytes, query: list, path: str, replay_store=None
) -> dict | None:
    """The 401 body for an unsigned, forged (or, with a replay store, replayed) webhook; None when signed."""
    try:
        verify_request(
            authorization=authorization,
            body=body,
            secret=settings.VONAGE_SIGNATURE_SECRET,
            api_key=settings.VONAGE_API_KEY or None,
            max_age_seconds=settings.VONAGE_SIGNATURE_MAX_AGE,
            query=query if not body else None,
            replay_store=replay_store,
        )
    except SignatureError as exc:
        logger.warning("rejected an unsigned or forged webhook", extra={"path": path, "reason": exc.reason})
        return {"error": {"code": "unauthorized", "message": f"Signature check failed: {exc.reason}."}}
    return None


def _verify(request: HttpRequest, replay_store=_replay_store) -> JsonResponse | None:
    refusal = _signature_refusal(
        authorization=request.headers.get("Authorization"),
        body=request.body,
        query=list(request.GET.items()),
        path=request.path,
        replay_store=replay_store,
    )
    return JsonResponse(refusal, status=401) if refusal else None


def door_backstop(scope: dict, body: bytes) -> tuple[int, object]:
    """What the webhook door answers when nothing else has within the budget (telephony/asgi.py): runs on
    the event loop, so no database and no cache. A forged request still gets 401 (the signature is checked;
    the replay check needs the cache and is skipped: a replayed request gets an apology and changes
    nothing). A call webhook gets the apology NCCO with the fallback its URL carries; a status event, a
    recording or a transcription gets its usual neutral answer."""
    from django.urls import Resolver404, resolve

    headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope.get("headers", [])}
    query = QueryDict(scope.get("query_string", b""))  # what request.GET would be
    refusal = _signature_refusal(
        authorization=headers.get("authorization"), body=body, query=list(query.items()), path=scope["path"]
    )
    if refusal:
        return 401, refusal
    try:
        match = resolve(scope["path"])
    except Resolver404:
        match = None
    name = match.url_name if match else ""
    logger.error(
        "webhook not answered within its budget: the door apologised",
        extra={"webhook": name, "conversation_id": (match.kwargs if match else {}).get("conversation_id")},
    )
    if name == "vonage-event":
        return 200, {"ok": True}
    if name in ("vonage-recording", "vonage-transcription"):
        return 200, []
    if name == "vonage-input":
        return 200, services.failure_ncco(
            fallback_number=query.get("fb", ""), conversation_id=match.kwargs["conversation_id"]
        )
    return 200, services.failure_ncco()


def _payload(request: HttpRequest) -> dict:
    if request.method == "GET":
        return dict(request.GET.items())
    try:
        data = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        data = dict(request.POST.items())
    return data if isinstance(data, dict) else {}


def _in_hop(request: HttpRequest, fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` as the view's one hop to a worker thread runs it. Through the webhook door (telephony/asgi.py)
    the hop also sends Django's request_started and request_finished, whose receivers look after the
    thread's database connection (closed when too old or broken): Django's handler sends each from a
    thread hop of its own, and the door spares the turn those two."""
    if not getattr(request, "door_signals", False):
        return fn

    def with_request_signals():
        signals.request_started.send(sender=WebhookSignals, scope=request.scope)
        try:
            return fn()
        finally:
            keep_lane_connections()
            signals.request_finished.send(sender=WebhookSignals)

    return with_request_signals


class WebhookSignals:
    """The sender of the request signals a webhook's hop sends."""


async def _guarded(
    request: HttpRequest, name: str, work: Callable[[], list | None], on_failure: Callable[[], list], **log
) -> JsonResponse:
    """Verify the signature and do the work in one hop to a worker thread, under the turn's time budget.

    A forged or replayed request answers 401 and runs nothing. Once the signature is good, whatever fails
    (including the replay check's own store) or runs over the budget is answered with the apology NCCO."""

    def signed_work() -> JsonResponse | list | None:
        if denied := _verify(request):
            return denied
        return work()

    # Not asyncio.wait_for: a thread cannot be cancelled (and cancelling sync_to_async waits for it), so a
    # turn stuck on the database would keep the caller in silence. The stuck work is left to finish alone.
    task = run_in_lane(request, _in_hop(request, signed_work))
    done, _ = await asyncio.wait({task}, timeout=settings.VONAGE_TURN_BUDGET_SECONDS)
    if not done:
        task.add_done_callback(functools.partial(_finished_late, name=name, log=log))
        # The stuck work may not have checked the signature yet: a forgery still gets its 401 (checked here,
        # on the event loop; the replay check needs the cache and is left to the stuck work).
        if denied := _verify(request, replay_store=None):
            return denied
        logger.error("webhook over its time budget; apologised", extra={"webhook": name, **log})
        # The request's own thread is still busy with the stuck work: apologise from another one.
        result = await sync_to_async(_released(on_failure), thread_sensitive=False)()
    else:
        try:
            result = task.result()
        except Exception:
            logger.exception("webhook failed; apologised", extra={"webhook": name, **log})
            result = await run_in_lane(request, on_failure)
    if isinstance(result, JsonResponse):
        return result
    return JsonResponse(result if result is not None else [], safe=False)


def _finished_late(task: asyncio.Future, *, name: str, log: dict) -> None:
    if task.cancelled():
        return
    if (exc := task.exception()) is not None:
        logger.warning(
            "webhook work over its budget ended in an error", extra={"webhook": name, "error": repr(exc), **log}
        )
    else:
        logger.warning("webhook work over its budget finished after the apology", extra={"webhook": name, **log})


def _released(fn: Callable[[], list]) -> Callable[[], list]:
    """Run ``fn`` on a pool thread and give back any database connection it took there."""

    def run() -> list:
        try:
            return fn()
        finally:
            connections.close_all()

    return run


def _answer_failure(payload: dict) -> Callable[[], list]:
    def failure() -> list:
        fallback = ""
        try:
            number = services.number_for(str(payload.get("to") or ""))
            fallback = number.fallback_number if number else ""
        except Exception:  # the database may be what failed
            logger.warning("could not look up the fallback number")
        return services.failure_ncco(fallback_number=fallback)

    return failure


@csrf_exempt
async def answer(request: HttpRequest):
    payload = _payload(request)
    with bound(vonage_uuid=payload.get("uuid")):
        return await _guarded(
            request,
            "answer",
            lambda: services.call_answer(payload=payload),
            _answer_failure(payload),
            vonage_uuid=payload.get("uuid"),
        )


@csrf_exempt
async def fallback(request: HttpRequest):
    """Vonage calls this when our answer or event URL failed: apologise and hand the caller on."""
    payload = _payload(request)
    return await _guarded(request, "fallback", _answer_failure(payload), lambda: services.failure_ncco())


@csrf_exempt
async def call_input(request: HttpRequest, conversation_id: int):
    payload = _payload(request)
    fallback_number = request.GET.get("fb", "")
    with bound(conversation_id=conversation_id):
        if request.GET.get("offer") == "callback":
            return await _guarded(
                request,
                "callback-choice",
                lambda: services.callback_choice(
                    conversation_id=conversation_id,
                    payload=payload,
                    source=request.GET.get("src", ""),
                    fallback_number=fallback_number,
                    transcribe=request.GET.get("tr") == "1",
                ),
                lambda: services.failure_ncco(fallback_number=fallback_number, conversation_id=conversation_id),
                conversation_id=conversation_id,
            )
        return await _guarded(
            request,
            "input",
            lambda: services.call_input(
                conversation_id=conversation_id,
                payload=payload,
                fallback_number=fallback_number,
                transcribe=request.GET.get("tr") == "1",
            ),
            lambda: services.failure_ncco(fallback_number=fallback_number, conversation_id=conversation_id),
            conversation_id=conversation_id,
        )


@csrf_exempt
async def recording(request: HttpRequest, conversation_id: int):
    payload = _payload(request)
    return await _guarded(
        request,
        "recording",
        lambda: services.call_recording(
            conversation_id=conversation_id, payload=payload, transcribe=request.GET.get("tr") == "1"
        ),
        lambda: [],
        conversation_id=conversation_id,
    )


@csrf_exempt
async def transcription(request: HttpRequest, conversation_id: int):
    payload = _payload(request)
    return await _guarded(
        request,
        "transcription",
        lambda: services.call_transcription(conversation_id=conversation_id, payload=payload),
        lambda: [],
        conversation_id=conversation_id,
    )


@csrf_exempt
async def event(request: HttpRequest):
    """Call status events. Always 200 once signed: Vonage must not retry an event we chose to ignore."""

    def signed_event() -> JsonResponse | None:
        if denied := _verify(request):
            return denied
        payload = _payload(request)
        try:
            services.call_event(payload=payload, marker=dict(request.GET.items()))
        except Exception:
            logger.exception("could not apply a call event", extra={"vonage_uuid": payload.get("uuid")})
        return None

    return await run_in_lane(request, _in_hop(request, signed_event)) or JsonResponse({"ok": True})
