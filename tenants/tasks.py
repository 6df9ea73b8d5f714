"""Celery door to the tenant scope, and tenancy housekeeping tasks.

Tenant work is a ``TenantTask``: it takes ``tenant_id`` as a keyword, enters that tenant's scope
for the duration of the task, and tags log records with it. Tasks take ids, never objects, and are
enqueued after commit (``enqueue_on_commit``).
"""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task
from django.db import transaction

from contactcenter.logging import bound
from tenants.scoping import tenant_scope, unscoped


class TenantTask(Task):
    abstract = True
    acks_late = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        tenant_id = kwargs.get("tenant_id")
        if tenant_id is None:
            raise TypeError(f"{self.name} is a tenant task: call it with tenant_id=<id>.")
        with tenant_scope([tenant_id]), bound(tenant_id=tenant_id, task=self.name):
            return super().__call__(*args, **kwargs)


def enqueue_on_commit(task: Task, **kwargs: Any) -> None:
    """Send the task once the current transaction commits (immediately outside one)."""
    transaction.on_commit(lambda: task.apply_async(kwargs=kwargs))


@shared_task(name="tenants.tasks.invitations_expire", acks_late=True)
def invitations_expire() -> int:
    from tenants.services import invitations_expire as expire

    with unscoped("platform housekeeping across tenants"):
        return expire()
