"""The one access helper for tenant pages (as healthchecks does it).

``@tenant_view(Role.ADMIN)`` requires a signed-in user, relies on the middleware having resolved
``request.tenant`` from the URL (404 for another tenant's URL), answers 403 when the user's role is
below the minimum, and records the minimum on the view so the isolation tests can find it.
"""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404


def tenant_view(minimum_role: str, *, write_role: str | None = None):
    """Reads need ``minimum_role``; unsafe methods (POST...) need ``write_role`` (default: the same)."""

    def decorator(view):
        @login_required
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            access = getattr(request, "tenant_access", None)
            if access is None:
                raise Http404("No such business, or you are not a member of it.")
            needed = minimum_role if request.method in ("GET", "HEAD", "OPTIONS") else (write_role or minimum_role)
            if not access.allows(needed):
                raise PermissionDenied(f"This needs the {needed} role or above; you are {access.role}.")
            return view(request, *args, **kwargs)

        wrapped.tenant_minimum_role = minimum_role
        wrapped.tenant_write_role = write_role or minimum_role
        return wrapped

    return decorator
