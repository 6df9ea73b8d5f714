"""Access to agency pages (``/agency/<agency_slug>/``), the agency counterpart of ``tenant_view``.

Agency pages are not reached through ``tenant_slug``, so the tenant middleware does not resolve
them: ``agency_for`` looks the agency up through the signed-in user's own membership. Someone who
is not a member gets 404 (exactly like a missing agency); a member below the role gets 403.
"""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404

from tenants.models import Agency, AgencyMembership, AgencyRole

AGENCY_ROLE_RANK = {AgencyRole.AGENT: 1, AgencyRole.SUPERVISOR: 2, AgencyRole.OWNER: 3}


def agency_role_at_least(role: str | None, minimum: str) -> bool:
    return role is not None and AGENCY_ROLE_RANK[AgencyRole(role)] >= AGENCY_ROLE_RANK[AgencyRole(minimum)]


def agency_for(request, slug: str, minimum_role: str = AgencyRole.AGENT) -> Agency:
    """The agency ``slug`` if the user is a member with at least ``minimum_role``.

    Raises Http404 for a non-member (or a missing agency) and PermissionDenied below the role. The
    returned agency carries ``membership`` (the user's AgencyMembership) and ``viewer_role``.
    """
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        raise Http404("No such agency, or you are not a member of it.")
    membership = AgencyMembership.objects.select_related("agency").filter(agency__slug=slug, user_id=user.pk).first()
    if membership is None:
        raise Http404("No such agency, or you are not a member of it.")
    if not agency_role_at_least(membership.role, minimum_role):
        raise PermissionDenied(
            f"This needs the agency {AgencyRole(minimum_role).label.lower()} role or above; "
            f"you are {membership.get_role_display().lower()}."
        )
    agency = membership.agency
    agency.membership = membership
    agency.viewer_role = membership.role
    return agency


def agency_view(minimum_role: str = AgencyRole.AGENT, *, write_role: str | None = None):
    """``@agency_view(AgencyRole.AGENT, write_role=AgencyRole.SUPERVISOR)``: like ``tenant_view``, for
    views taking ``agency_slug``; the view receives ``request.agency``."""

    def decorator(view):
        @login_required
        @wraps(view)
        def wrapped(request, *args, agency_slug: str, **kwargs):
            safe = request.method in ("GET", "HEAD", "OPTIONS")
            request.agency = agency_for(request, agency_slug, minimum_role if safe else (write_role or minimum_role))
            return view(request, *args, agency_slug=agency_slug, **kwargs)

        wrapped.agency_minimum_role = minimum_role
        wrapped.agency_write_role = write_role or minimum_role
        return wrapped

    return decorator
