"""Pages for live work: the agent console (all tenants the user acts for) and a tenant's wallboard.

Both pages are shells: the live content arrives over their websocket (``agents.consumers``),
which re-reads everything from the database. The wallboard also renders its first figures
server-side so it is useful before the socket connects.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from agents.consumers import CONSOLE_PRESENCE_STATES, DISPOSITIONS
from agents.models import Presence, PresenceState
from agents.selectors import wallboard_figures
from tenants.decorators import tenant_view
from tenants.models import Role, Tenant
from tenants.selectors import tenant_access_for_user


@login_required
@require_GET
def console(request):
    """Any person who acts for at least one business (as agent or above, agency agents included)."""
    access = getattr(request, "tenant_access_map", None)
    if access is None:
        access = tenant_access_for_user(request.user)
    if not access:
        raise PermissionDenied("The console is for people who answer calls for a business; ask an owner to invite you.")
    tenants = list(Tenant.objects.filter(pk__in=list(access)).order_by("name"))
    presence = Presence.objects.filter(user_id=request.user.pk).first()
    return render(
        request,
        "agents/console.html",
        {
            "tenants": tenants,
            "presence_state": presence.state if presence else PresenceState.OFFLINE.value,
            "presence_states": CONSOLE_PRESENCE_STATES,
            "dispositions": DISPOSITIONS,
        },
    )


@tenant_view(Role.SUPERVISOR)
@require_GET
def wallboard(request, tenant_slug: str):
    access = request.tenant_access
    figures = wallboard_figures(tenant_id=access.tenant_id, now=timezone.now())
    return render(request, "agents/wallboard.html", {"tenant": request.tenant, "access": access, "figures": figures})
