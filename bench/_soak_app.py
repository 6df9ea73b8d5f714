"""`celery -A _soak_app worker|beat` for bench/callbacks_soak.py: production's Celery app, run on the
soak's accelerated clock (bench/_clock.py). bench/ must be on PYTHONPATH.

One bench-only addition, off unless the soak sets its variable: ``SOAK_TASK_TIMES=<dir>``: every task's
name, start (real time) and run time are appended to ``<dir>/tasks-<pid>.log`` (Celery signals; observing
only). (The ``--route-lock-self`` experiment of run F is gone: production now locks that way.)
"""

import os
import time

import _clock

_clock.install()  # before Django and the apps are imported


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


__all__ = ["app"]
