from django.conf import settings


def tenancy(request):
    access = getattr(request, "tenant_access_map", None) or {}
    return {
        "current_tenant": getattr(request, "tenant", None),
        "current_access": getattr(request, "tenant_access", None),
        "my_tenants": sorted(access.values(), key=lambda a: a.name),
        "demo_mode": settings.SWITCHBOARD_DEMO_DATA,
    }
