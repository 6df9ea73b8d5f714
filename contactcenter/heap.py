"""Short full garbage collections in long-running processes (``gc.freeze``).

A warm web process holds ~120-180k long-lived container objects (Django, the URLconf, compiled flows,
the NLU models and their vocabularies). CPython's full (generation 2) collection walks all of them, and
it runs every few hundred requests: measured 40-90 ms on the 2-core box, a pause that every request
in flight on that process waits for, which is the tail of the voice-turn and push latencies
(docs/benchmarks.md). ``gc.freeze()`` moves everything alive now into a permanent generation that the
collector no longer walks; objects freed by reference counting are still freed as usual.

Called when a process is warm (``contactcenter/asgi.py``, Celery's ``worker_process_init``) and after a
newly compiled published flow is cached (``flows.runtime``): rare moments that are slow anyway. It
collects first, so cyclic garbage alive at that moment is not frozen. The cost: a frozen object that
later becomes part of unreachable cycle is never reclaimed; compiled flows and models are freed by
reference counting when evicted, so this stays bounded (one freeze per compile, per process).
``GC_FREEZE`` (default on in production, off in dev and tests) turns it off.
"""

from __future__ import annotations

import gc
import logging
import threading
import time

from django.conf import settings

logger = logging.getLogger("switchboard.heap")
_lock = threading.Lock()


def freeze(reason: str) -> bool:
    """Collect, then freeze what is alive now. Returns whether it ran (``GC_FREEZE``)."""
    if not getattr(settings, "GC_FREEZE", False):
        return False
    with _lock:
        started = time.perf_counter()
        gc.collect()
        gc.freeze()
        logger.info(
            "heap frozen",
            extra={
                "reason": reason,
                "frozen": gc.get_freeze_count(),
                "ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
    return True
