"""The Vonage webhooks' own door into Django (ASGI).

Every other HTTP request goes through the full middleware chain (sessions, CSRF, users, messages, the
tenant scope from the URL), which is synchronous: Django runs it on a worker thread and calls async views
from there. For the webhooks that had two costs:

- **Dead air.** The chain's thread waits for the view, and the view's work runs on that same thread.
  When a turn was stuck (the database hanging), the view's time budget ran out and it had its apology
  ready, but the response could only leave once the stuck work returned: the caller heard silence.
- **Time on every turn.** Two extra thread switches and ten middlewares that do nothing for a machine
  client: no cookie, no session, no user, no CSRF (the JWT is the authentication).

Here a webhook runs on the event loop until its one hop to a worker thread (signature check and turn),
so the budget holds: the apology leaves when the budget ends, whatever the stuck thread is doing. What the
chain did that still matters is kept: the request log line and X-Request-ID, ALLOWED_HOSTS (400), the
security middleware's HTTPS redirect and headers (pure checks, no I/O, run in place), an error page
instead of a traceback, and the empty tenant scope anonymous requests get (the services enter the
call's own tenant).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from asgiref.sync import ThreadSensitiveContext, markcoroutinefunction
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.exception import convert_exception_to_response
from django.middleware.security import SecurityMiddleware

from contactcenter.logging import RequestLogMiddleware
from tenants.scoping import tenant_scope

WEBHOOK_PREFIX = "/telephony/vonage/"
logger = logging.getLogger("switchboard.telephony")


class WebhookDoor:
    """Async only: host check, HTTPS redirect and security headers, empty tenant scope."""

    sync_capable = False
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.security = SecurityMiddleware(get_response)  # its checks only; never called as a middleware
        markcoroutinefunction(self)

    async def __call__(self, request):
        request.get_host()  # DisallowedHost answers 400, as for every other request
        if redirect := self.security.process_request(request):
            return redirect
        with tenant_scope([]):
            response = await self.get_response(request)
        return self.security.process_response(request, response)


class Lanes:
    """A few long-lived worker threads for the webhooks' synchronous work, each request on the one with the
    fewest requests in flight (a lane stuck on a hanging turn is passed over).

    Django's own handler starts a new thread for each request's synchronous work (and another to join it),
    and at 50 calls in progress that was 25 threads per process taking turns at the GIL."""

    def __init__(self, size: int):
        self.executors = [ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"webhook-{n}") for n in range(size)]
        self.in_flight = [0] * size  # touched on the event loop only

    @asynccontextmanager
    async def lane(self) -> AsyncIterator[None]:
        n = min(range(len(self.in_flight)), key=self.in_flight.__getitem__)
        self.in_flight[n] += 1
        try:
            async with ThreadSensitiveContext(executor=self.executors[n]):
                yield
        finally:
            self.in_flight[n] -= 1


# The view apologises when its own budget ends; the door's backstop waits this much longer for it.
DOOR_MARGIN_SECONDS = 0.5


def _late(task: asyncio.Future) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    logger.warning(
        "a webhook the door answered for finished late", extra={"error": repr(exc) if exc is not None else ""}
    )


class WebhookHandler(ASGIHandler):
    """Django's ASGI handler with the webhooks' short, fully async middleware chain and worker lanes."""

    def __init__(self, lanes: int | None = None):
        super().__init__()
        self.lanes = Lanes(lanes or settings.WEBHOOK_THREADS)

    async def __call__(self, scope, receive, send):
        """The request in its lane, with a backstop: if nothing has been answered when the turn's budget
        (plus a margin for the view's own apology) has passed, the door answers itself, on the event loop,
        without the database: the apology NCCO (or the neutral answer of a non-call webhook).

        The view's budget covers the view; this covers what runs before it. Django sends request_started
        on the request's worker thread before calling the view, so when a hanging database held every
        webhook thread of the process, the next caller's turn waited for one in silence, with no budget
        running yet."""
        if scope["type"] != "http":
            raise ValueError(f"The webhook door serves HTTP, not {scope['type']}.")
        body = bytearray()
        state = {"started": False, "door": False}

        async def receive_and_keep():
            message = await receive()
            if message["type"] == "http.request":
                body.extend(message.get("body", b""))
            return message

        async def send_unless_answered(message):
            if state["door"]:
                return  # the door answered already; the late turn's response goes nowhere
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        async def in_lane():
            async with self.lanes.lane():
                await self.handle(scope, receive_and_keep, send_unless_answered)

        task = asyncio.ensure_future(in_lane())
        budget = settings.VONAGE_TURN_BUDGET_SECONDS + DOOR_MARGIN_SECONDS
        done, _ = await asyncio.wait({task}, timeout=budget)
        if done or state["started"]:
            await task
            return
        state["door"] = True
        task.add_done_callback(_late)
        from telephony.views import door_backstop

        status, payload = door_backstop(scope, bytes(body))
        content = json.dumps(payload).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content, "more_body": False})

    def load_middleware(self, is_async=False):
        if not is_async:
            raise RuntimeError("the webhook door is ASGI only")
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        handler = convert_exception_to_response(self._get_response_async)
        handler = convert_exception_to_response(WebhookDoor(handler))
        handler = convert_exception_to_response(RequestLogMiddleware(handler))
        self._middleware_chain = handler


def http_router(django_app):
    """HTTP: the Vonage webhooks through their own door, everything else through Django's full chain."""
    webhooks = WebhookHandler()

    async def route(scope, receive, send):
        if scope["path"].startswith(WEBHOOK_PREFIX):
            return await webhooks(scope, receive, send)
        return await django_app(scope, receive, send)

    return route
