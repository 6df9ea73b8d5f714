"""Business pages: landing, the post-login redirect and a tenant's home (onboarding checklist)."""
from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render

from tenants.decorators import tenant_view
from tenants.models import Role


def landing(request):
    return render(request, "landing.html")


@login_required
def app_home(request):
    access = request.tenant_access_map
    if len(access) == 1:
        only = next(iter(access.values()))
        return redirect("tenant-home", tenant_slug=only.slug)
    return render(request, "tenants/app_home.html", {"accesses": sorted(access.values(), key=lambda a: a.name)})


@tenant_view(Role.AGENT)
def tenant_home(request, tenant_slug: str):
    return render(request, "tenants/tenant_home.html", {"tenant": request.tenant})
