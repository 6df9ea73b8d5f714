"""The Celery app. Configured from Django settings (CELERY_*), tasks found in each app's tasks.py."""

import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "contactcenter.settings.dev")

app = Celery("contactcenter")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.worker_process_init.connect
def _freeze_warm_heap(**_) -> None:
    """Each worker process, once Django and the tasks are loaded: see contactcenter/heap.py."""
    from contactcenter import heap

    heap.freeze("celery worker process started")
