"""Structured logging: one JSON object per line, carrying the request id, tenant id and user id.

The context lives in a ContextVar so it follows the request through async code and thread hops
(asgiref copies contextvars), and Celery tasks and websocket consumers set it the same way.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

log_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("log_context", default=None)
request_logger = logging.getLogger("switchboard.request")


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Add fields (e.g. tenant_id) to every log record emitted inside the block."""
    token = log_context.set({**(log_context.get() or {}), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        log_context.reset(token)


def bind(**fields: Any) -> None:
    """Add fields to the current context until the enclosing ``bound`` block ends."""
    log_context.set({**(log_context.get() or {}), **{k: v for k, v in fields.items() if v is not None}})


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (log_context.get() or {}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                payload[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class RequestLogMiddleware:
    """Logs one line per request (method, path, status, duration, tenant) and sets X-Request-ID.

    Sync and async: the Vonage webhooks' door (telephony/asgi.py) runs it on the event loop."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
        request_id, start = self._begin(request)
        with bound(request_id=request_id):
            response = self.get_response(request)
            return self._end(request, response, request_id, start)

    async def _acall(self, request):
        request_id, start = self._begin(request)
        with bound(request_id=request_id):
            response = await self.get_response(request)
            return self._end(request, response, request_id, start)

    @staticmethod
    def _begin(request) -> tuple[str, float]:
        return request.headers.get("X-Request-ID") or uuid.uuid4().hex, time.perf_counter()

    @staticmethod
    def _end(request, response, request_id: str, start: float):
        tenant = getattr(request, "tenant", None)
        user = getattr(request, "user", None)
        request_logger.info(
            "request",
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - start) * 1000, 1),
                "tenant_id": getattr(tenant, "id", None),
                "user_id": getattr(user, "id", None) if getattr(user, "is_authenticated", False) else None,
            },
        )
        response["X-Request-ID"] = request_id
        return response
