"""`celery -A _soak_app worker|beat` for bench/callbacks_soak.py: production's Celery app, run on the
soak's accelerated clock (bench/_clock.py). bench/ must be on PYTHONPATH.

Two bench-only additions, both off unless the soak sets their variable:
- ``SOAK_TASK_TIMES=<dir>``: every task's name, start (real time) and run time are appended to
  ``<dir>/tasks-<pid>.log`` (Celery signals; observing only);
- ``SOAK_ROUTE_LOCK_SELF=1``: an experiment, not production: the routing lock
  (``Escalation.objects.select_for_update()`` in ``agents.services.escalation_route``) locks the escalation
  row only (``of=("self",)``) instead of also the joined queue and tenant rows. ``--route-lock-self``
  measures the fix recommended in docs/benchmarks.md ("Callbacks soak").
"""

import os
import time

import _clock

_clock.install()  # before Django and the apps are imported


def route_lock_self() -> None:
    """The experiment above (also applied by the soak's own processes when enabled)."""
    from django.db.models.query import QuerySet

    original = QuerySet.select_for_update
    if getattr(original, "_soak_patched", False):
        return

    def select_for_update(self, nowait=False, skip_locked=False, of=(), no_key=False):
        if not of and self.model.__name__ == "Escalation" and self.model._meta.app_label == "agents":
            of = ("self",)
        return original(self, nowait=nowait, skip_locked=skip_locked, of=of, no_key=no_key)

    select_for_update._soak_patched = True
    QuerySet.select_for_update = select_for_update


if os.environ.get("SOAK_ROUTE_LOCK_SELF") == "1":
    route_lock_self()

from celery import signals  # noqa: E402

from contactcenter.celery import app  # noqa: E402

_started: dict[str, float] = {}


@signals.task_prerun.connect
def _task_started(task_id=None, **_):
    _started[task_id] = time.time()


@signals.task_postrun.connect
def _task_finished(task_id=None, task=None, **_):
    folder = os.environ.get("SOAK_TASK_TIMES")
    start = _started.pop(task_id, None)
    if folder and start is not None:
        with open(os.path.join(folder, f"tasks-{os.getpid()}.log"), "a") as out:
            out.write(f"{task.name} {start:.3f} {time.time() - start:.4f}\n")


__all__ = ["app", "route_lock_self"]
