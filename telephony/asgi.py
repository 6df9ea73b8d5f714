"""The Vonage webhooks' own door into Django (ASGI).

Every other HTTP request goes through the full middleware chain (sessions, CSRF, users, messages, the
tenant scope from the URL), which is synchronous: Django runs it on a worker thread and calls async views
from there. For the webhooks that had two costs:

- **Dead air.** The chain's thread waits for the view, and the view's work runs on that same thread.
  When a turn was stuck (the database hanging), the view's time budget ran out and it had its apology
  ready, but the response could only leave once the stuck work returned: the caller heard silence.
- **Time on every turn.** Two extra thread switches and ten middlewares that do nothing for a machine
  client: no cookie, no session, no user, no CSRF (the JWT is the authentication).

Here a webhook runs on the event loop until its one hop to a worker thread (signature check and turn,
with Django's request signals; see WebhookHandler), so the budget holds: the apology leaves when the
budget ends, whatever the stuck thread is doing. What the chain did that still matters is kept: the
request log line and X-Request-ID, ALLOWED_HOSTS (400), the security middleware's HTTPS redirect and
headers (pure checks, no I/O, run in place), an error page instead of a traceback, and the empty tenant
scope anonymous requests get (the services enter the call's own tenant).
"""

from __future__ import annotations

import asyncio
import contextvars
import io
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TypeVar

from asgiref.sync import ThreadSensitiveContext, iscoroutinefunction, sync_to_async
from django.conf import settings
from django.core import signals
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.exception import convert_exception_to_response, response_for_exception
from django.db import connections
from django.http import HttpResponseBadRequest
from django.middleware.security import SecurityMiddleware
from django.urls import get_resolver

from contactcenter.logging import RequestLogMiddleware, bound
from tenants.scoping import tenant_scope

T = TypeVar("T")

WEBHOOK_PREFIX = "/telephony/vonage/"
logger = logging.getLogger("switchboard.telephony")


class Lanes:
    """A few long-lived worker threads for the webhooks' synchronous work, each request on the one with the
    fewest requests in flight (a lane stuck on a hanging turn is passed over).

    Django's own handler starts a new thread for each request's synchronous work (and another to join it),
    and at 50 calls in progress that was 25 threads per process taking turns at the GIL."""

    def __init__(self, size: int):
        self.executors = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"webhook-{n}", initializer=_mark_lane)
            for n in range(size)
        ]
        self.in_flight = [0] * size  # touched on the event loop only

    @asynccontextmanager
    async def lane(self) -> AsyncIterator[ThreadPoolExecutor]:
        n = min(range(len(self.in_flight)), key=self.in_flight.__getitem__)
        self.in_flight[n] += 1
        try:
            yield self.executors[n]
        finally:
            self.in_flight[n] -= 1


def run_in_lane(request, fn: Callable[[], T]) -> asyncio.Future[T]:
    """``fn()`` on a worker thread, in a copy of the caller's context: through the door on the request's
    lane, with a plain executor hop (asgiref's sync_to_async, which Django's handler uses, also brings
    context changes back and tracks thread-sensitive callers: twice the CPU, and a webhook needs neither);
    elsewhere (Django's test client, Django's own handler) with sync_to_async, on Django's thread."""
    lane = getattr(request, "webhook_lane", None)
    if lane is None:
        return asyncio.ensure_future(sync_to_async(fn)())
    return asyncio.get_running_loop().run_in_executor(lane, contextvars.copy_context().run, fn)


# A lane thread keeps its database connection from one webhook to the next for this long (then gives it
# back: to the pool in production, where each web process's lanes hold WEBHOOK_THREADS of its connections).
LANE_CONNECTION_SECONDS = 60.0
_lane = threading.local()


def _mark_lane() -> None:
    _lane.active = True


def keep_lane_connections() -> None:
    """On a lane thread, keep this thread's database connections for the next webhook.

    With the production pool (CONN_MAX_AGE 0) Django hands a request's connection back at its end and the
    next request borrows one again: on a webhook that was a few percent of the server's time. Lane threads
    live as long as the process, so they may keep theirs; Django still closes one that has failed (its
    ``errors_occurred`` check at request end) or has been kept for LANE_CONNECTION_SECONDS. Other threads
    (pages, the apology's spare thread) keep Django's behaviour."""
    if not getattr(_lane, "active", False):
        return
    deadline = time.monotonic() + LANE_CONNECTION_SECONDS
    for conn in connections.all(initialized_only=True):
        # Once per connection (a new one after Django closed the last): given back when the deadline passes.
        if conn.connection is not None and getattr(conn, "lane_kept", None) is not conn.connection:
            conn.close_at = deadline if conn.close_at is None else max(conn.close_at, deadline)
            conn.lane_kept = conn.connection


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
    """The webhooks' door: a short, fully async path from daphne to the webhook views, in worker lanes.

    A webhook needs none of Django's per-request machinery around its view (the body spooled to a temporary
    file, a task listening for disconnects, the request signals each sent from a thread hop of their own,
    the middleware chain's wrappers): the door reads the body, checks what the middleware chain checked
    (host, HTTPS redirect, security headers), resolves the view and awaits it. The view's own one hop to a
    worker thread carries the request signals (``telephony.views._in_hop``), so a turn costs one thread
    switch and back. A view under the prefix that is not async would go through Django's own request path
    (signals, view middleware, response close), without the full chain's middleware."""

    def __init__(self, lanes: int | None = None):
        super().__init__()
        self.lanes = Lanes(lanes or settings.WEBHOOK_THREADS)
        self.security = SecurityMiddleware(lambda request: None)  # its checks only; never called
        self.resolver = get_resolver()

    async def __call__(self, scope, receive, send):
        """The request in its lane, with a backstop: if nothing has been answered when the turn's budget
        (plus a margin for the view's own apology) has passed, the door answers itself, on the event loop,
        without the database: the apology NCCO (or the neutral answer of a non-call webhook).

        The view's budget covers the view; this covers what runs before it (a request waiting for a free
        worker thread when a hanging database holds all of them)."""
        if scope["type"] != "http":
            raise ValueError(f"The webhook door serves HTTP, not {scope['type']}.")
        body = await _read_body(receive)
        if body is None:
            return  # the client went away before sending its body
        state = {"started": False, "door": False}

        async def send_unless_answered(message):
            if state["door"]:
                return  # the door answered already; the late turn's response goes nowhere
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        async def in_lane():
            async with self.lanes.lane() as lane:
                await self.respond(scope, body, send_unless_answered, lane)

        task = asyncio.ensure_future(in_lane())
        budget = settings.VONAGE_TURN_BUDGET_SECONDS + DOOR_MARGIN_SECONDS
        done, _ = await asyncio.wait({task}, timeout=budget)
        if done or state["started"]:
            await task
            return
        state["door"] = True
        task.add_done_callback(_late)
        from telephony.views import door_backstop

        status, payload = door_backstop(scope, body)
        content = json.dumps(payload).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content, "more_body": False})

    async def respond(self, scope, body: bytes, send, lane: ThreadPoolExecutor) -> None:
        request = None
        request_id, start = None, time.perf_counter()
        try:
            request = self.request_class(scope, io.BytesIO(body))
            request.webhook_lane = lane  # the view's hop runs there (run_in_lane)
            request_id, start = RequestLogMiddleware._begin(request)
            with bound(request_id=request_id), tenant_scope([]):
                response = await self.get_webhook_response(request)
        except Exception as exc:  # noqa: BLE001 - answered as Django answers it (400, 413, 500 page)
            if request is None:  # not even a request: undecodable headers or the like
                response = HttpResponseBadRequest()
            else:
                response = await sync_to_async(response_for_exception, thread_sensitive=False)(request, exc)
        if request is not None:
            response = RequestLogMiddleware._end(request, response, request_id, start)
        await self.send_response(response, send)
        # Not response.close(): it would send request_finished from another hop, and the view's hop has sent
        # it already (a JsonResponse holds nothing else to close). A response from Django's handler (below)
        # was closed there.

    async def get_webhook_response(self, request):
        request.get_host()  # DisallowedHost answers 400, as for every other request
        if redirect := self.security.process_request(request):
            return self.security.process_response(request, redirect)
        match = self.resolver.resolve(request.path_info)  # Resolver404 answers 404
        if not iscoroutinefunction(match.func):
            async with ThreadSensitiveContext(executor=request.webhook_lane):
                response = await self.full_handler(request)
        else:
            request.resolver_match = match
            request.door_signals = True  # the view's hop sends request_started / request_finished
            response = await match.func(request, *match.args, **match.kwargs)
        return self.security.process_response(request, response)

    async def full_handler(self, request):
        """Django's own path (request signals, view middleware, response close) for anything else here."""
        await signals.request_started.asend(sender=self.__class__, scope=request.scope)
        response = await self.get_response_async(request)
        await sync_to_async(response.close)()
        return response

    def load_middleware(self, is_async=False):
        if not is_async:
            raise RuntimeError("the webhook door is ASGI only")
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        self._middleware_chain = convert_exception_to_response(self._get_response_async)


async def _read_body(receive) -> bytes | None:
    """The whole request body (webhooks are small: Django's size limit applies when the view reads it), or
    None when the client disconnected first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def http_router(django_app):
    """HTTP: the Vonage webhooks through their own door, everything else through Django's full chain."""
    webhooks = WebhookHandler()

    async def route(scope, receive, send):
        if scope["path"].startswith(WEBHOOK_PREFIX):
            return await webhooks(scope, receive, send)
        return await django_app(scope, receive, send)

    return route
