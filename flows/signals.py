"""Cache invalidation only (no business logic here): a change to a tenant's calendar tells every
process to re-read it on the next turn, whichever way it was saved (admin, service, shell)."""

from __future__ import annotations

from django.db.models.signals import post_delete, post_save

from flows.models import BusinessHours, Closure, Holiday


def _calendar_changed(sender, instance, **kwargs) -> None:
    from flows.runtime import calendar_changed

    calendar_changed(instance.tenant_id)


def connect() -> None:
    for model in (BusinessHours, Holiday, Closure):
        post_save.connect(_calendar_changed, sender=model, dispatch_uid=f"calendar-changed-{model.__name__}")
        post_delete.connect(_calendar_changed, sender=model, dispatch_uid=f"calendar-deleted-{model.__name__}")
