"""Reads about tenancy: who may act for which tenant, in which role."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Case, CharField, IntegerField, Value, When

from tenants.models import (
    ROLE_RANK,
    AgencyRole,
    ApiKey,
    Coverage,
    Membership,
    Role,
    User,
)


@dataclass(frozen=True)
class TenantAccess:
    tenant_id: int
    slug: str
    name: str
    role: str  # a tenants.models.Role value
    via: str  # "member" (the tenant's own staff) or "agency"
    agency_id: int | None = None
    coverage_mode: str | None = None

    def allows(self, minimum_role: str) -> bool:
        return ROLE_RANK[Role(self.role)] >= ROLE_RANK[Role(minimum_role)]


def tenant_access_for_user(user: User | None) -> dict[int, TenantAccess]:
    """Which tenants can this user act for, and in which role: memberships plus agency coverage.

    One query (a UNION). Agency owners and supervisors act as supervisors of the tenants their
    agency covers, agency agents as agents; a person's own membership wins when it ranks higher.
    Only active coverage counts, so revoking coverage takes effect on the next request.
    """
    if user is None or not user.is_authenticated:
        return {}
    members = (
        Membership.objects.filter(user_id=user.pk)
        .order_by()
        .values_list(
            "tenant_id",
            "tenant__slug",
            "tenant__name",
            "role",
            Value("member", output_field=CharField()),
            Value(None, output_field=IntegerField()),
            Value(None, output_field=CharField()),
        )
    )
    covered = (
        Coverage.objects.filter(active=True, agency__memberships__user_id=user.pk)
        .order_by()
        .values_list(
            "tenant_id",
            "tenant__slug",
            "tenant__name",
            Case(
                When(agency__memberships__role=AgencyRole.AGENT, then=Value(Role.AGENT.value)),
                default=Value(Role.SUPERVISOR.value),
                output_field=CharField(),
            ),
            Value("agency", output_field=CharField()),
            "agency_id",
            "mode",
        )
    )
    access: dict[int, TenantAccess] = {}
    for tenant_id, slug, name, role, via, agency_id, mode in members.union(covered, all=True):
        candidate = TenantAccess(tenant_id, slug, name, role, via, agency_id, mode)
        existing = access.get(tenant_id)
        if existing is None or ROLE_RANK[Role(role)] > ROLE_RANK[Role(existing.role)]:
            access[tenant_id] = candidate
    return access


def tenant_access_for_api_key(api_key: ApiKey) -> dict[int, TenantAccess]:
    tenant = api_key.tenant
    return {tenant.id: TenantAccess(tenant.id, tenant.slug, tenant.name, api_key.role, "api_key")}


def tenant_staff_emails(*, tenant_id: int, roles: tuple[str, ...] = (Role.OWNER, Role.ADMIN)) -> list[str]:
    """E-mail addresses of a business's own active people in these roles (owners and admins by default)."""
    return list(
        Membership.objects.filter(tenant_id=tenant_id, role__in=list(roles), user__is_active=True)
        .order_by("user__email")
        .values_list("user__email", flat=True)
        .distinct()
    )


def admin_tenant_ids(access: dict[int, TenantAccess]) -> list[int]:
    """Tenants whose configuration this user may see in the admin: own staff, supervisor or above."""
    return [a.tenant_id for a in access.values() if a.via == "member" and a.allows(Role.SUPERVISOR)]


def agencies_for_user(user: User, *, minimum_role: str | None = None):
    from tenants.models import Agency

    qs = Agency.objects.filter(memberships__user_id=user.pk)
    if minimum_role in (AgencyRole.OWNER, AgencyRole.SUPERVISOR):
        allowed = [AgencyRole.OWNER] + ([AgencyRole.SUPERVISOR] if minimum_role == AgencyRole.SUPERVISOR else [])
        qs = qs.filter(memberships__user_id=user.pk, memberships__role__in=allowed)
    return qs.distinct().order_by("name")
