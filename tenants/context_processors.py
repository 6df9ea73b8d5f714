from django.conf import settings


def tenancy(request):
    access = getattr(request, "tenant_access_map", None) or {}
    agencies = []
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        from tenants.selectors import agencies_for_user

        agencies = list(agencies_for_user(user))
    return {
        "my_agencies": agencies,
        "current_tenant": getattr(request, "tenant", None),
        "current_access": getattr(request, "tenant_access", None),
        "my_tenants": sorted(access.values(), key=lambda a: a.name),
        "demo_mode": settings.SWITCHBOARD_DEMO_DATA,
    }
