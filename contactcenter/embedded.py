"""The one-process runtime of `make run`: a Celery worker and beat in threads beside the ASGI server.

With the in-memory broker (no REDIS_URL) tasks only reach a worker in the same process, so this is
what makes after-commit tasks and scheduled work (callbacks, rollups) run on a laptop. In
production the same tasks run in separate `celery worker` / `celery beat` processes instead.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from celery import Celery
from celery.beat import EmbeddedService
from celery.worker import WorkController

logger = logging.getLogger(__name__)


@dataclass
class EmbeddedCelery:
    worker: WorkController
    beat: EmbeddedService | None
    threads: list[threading.Thread]

    def stop(self) -> None:
        if self.beat is not None:
            self.beat.stop()
        self.worker.stop(in_sighandler=False)
        for thread in self.threads:
            thread.join(timeout=10)


def start_embedded_celery(
    app: Celery, *, beat: bool = True, scheduler: str = "celery.beat:Scheduler"
) -> EmbeddedCelery:
    """Start a solo-pool worker (and beat) in daemon threads; returns once the worker is consuming."""
    ready = threading.Event()
    worker = WorkController(
        app=app,
        pool_cls="solo",
        concurrency=1,
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
        loglevel="WARNING",
        ready_callback=lambda consumer: ready.set(),
    )
    threads = [threading.Thread(target=worker.start, name="celery-worker", daemon=True)]
    threads[0].start()
    beat_service = None
    if beat:
        beat_service = EmbeddedService(app, thread=True, scheduler_cls=scheduler)
        beat_service.start()
    if not ready.wait(timeout=30):
        logger.warning("embedded celery worker did not report ready within 30 s")
    return EmbeddedCelery(worker=worker, beat=beat_service, threads=threads)
