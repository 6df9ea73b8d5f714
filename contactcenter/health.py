"""Health checks for load balancers and process managers.

- ``/healthz`` (readiness): 200 when the database (and Redis, when configured) answer, else 503.
- ``/healthz/live`` (liveness): 200 while the process serves requests, whatever its dependencies do, so a
  supervisor restarts a wedged process but not every process when the database blips.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)


def check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return "ok"


def check_redis() -> str:
    if not settings.REDIS_URL:
        return "not configured"
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    finally:
        client.close()
    return "ok"


@never_cache
@require_GET
def healthz(request):
    checks: dict[str, str] = {}
    healthy = True
    for name, check in (("database", check_database), ("redis", check_redis)):
        try:
            checks[name] = check()
        except Exception as exc:  # a health check reports every failure rather than raising
            logger.warning("health check failed", extra={"check": name, "error": str(exc)})
            checks[name] = f"error: {type(exc).__name__}"
            healthy = False
    return JsonResponse({"status": "ok" if healthy else "error", "checks": checks}, status=200 if healthy else 503)


@never_cache
@require_GET
def live(request):
    return JsonResponse({"status": "ok"})
