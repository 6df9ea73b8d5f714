"""The tenant scope: which tenants' rows the current code may touch.

Entered in exactly four places (the "doors"): ``TenantScopeMiddleware`` (HTTP),
``tenants.drf.TenantScopedViewSet`` (API), ``tenants.tasks.TenantTask`` (Celery) and
``tenants.consumers.TenantScopedConsumer`` (websockets). Everything below them just queries.

A scope holds a *list* of tenant ids (an agency agent's console covers several tenants). An empty
list matches nothing. ``unscoped(reason)`` is the one escape hatch; grep for it in review.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from django_scopes import scope, scopes_disabled
from django_scopes.state import get_scope, state

logger = logging.getLogger(__name__)


def _ids(tenant_ids: Iterable[int]) -> list[int]:
    ids = [int(t) for t in tenant_ids]
    return ids


@contextmanager
def tenant_scope(tenant_ids: Iterable[int]) -> Iterator[None]:
    """Run the block with queries limited to these tenants (a list; never None)."""
    with scope(tenant=_ids(tenant_ids)):
        yield


def activate_tenant_scope(tenant_ids: Iterable[int]) -> None:
    """Replace the scope for the rest of an enclosing ``tenant_scope`` block.

    For doors that learn who is acting only part-way through (DRF authenticates inside the view).
    The enclosing block restores the previous scope on exit.
    """
    current = dict(get_scope())
    if not current:
        raise RuntimeError("activate_tenant_scope must run inside a tenant_scope block")
    current.update({"_enabled": True, "tenant": _ids(tenant_ids)})
    state.set(current)


def current_tenant_ids() -> list[int] | None:
    """The tenant ids in scope, or None when outside any scope or unscoped."""
    current = get_scope()
    if not current.get("_enabled", True):
        return None
    value = current.get("tenant")
    return list(value) if value is not None else None


@contextmanager
def unscoped(reason: str) -> Iterator[None]:
    """The explicit escape hatch: platform-wide work (superusers, routing a dialled number, rollups)."""
    logger.debug("entering unscoped block", extra={"reason": reason})
    with scopes_disabled():
        yield
