"""Writes about tenancy. Keyword-only, typed, named <entity>_<action>; each raises ValidationError
with a message a person can act on, and changes nothing when it does."""

from __future__ import annotations

import secrets
import zoneinfo

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from tenants.models import (
    Agency,
    AgencyMembership,
    AgencyRole,
    ApiAccess,
    ApiKey,
    AuditEvent,
    Coverage,
    CoverageMode,
    Invitation,
    Membership,
    Role,
    Tenant,
    User,
    hash_api_key,
    unique_slug,
)

API_KEY_PREFIX = "sb_"


def audit_record(*, tenant_id: int, actor: User | None, action: str, detail: str = "") -> None:
    AuditEvent.objects.create(
        tenant_id=tenant_id, actor=actor if actor is not None and actor.pk else None, action=action, detail=detail[:300]
    )


def tenant_create(*, name: str, timezone_name: str, owner: User) -> Tenant:
    """Create a business and make ``owner`` its owner, in one transaction."""
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "Enter your business name."})
    if timezone_name not in zoneinfo.available_timezones():
        raise ValidationError({"timezone": f"{timezone_name!r} is not a time zone; pick one from the list."})
    with transaction.atomic():
        tenant = Tenant.objects.create(name=name[:120], slug=unique_slug(Tenant, name), timezone=timezone_name)
        Membership.objects.create(user=owner, tenant=tenant, role=Role.OWNER)
        audit_record(tenant_id=tenant.id, actor=owner, action="tenant.created", detail=f"{name} signed up")
        from tenants.hooks import tenant_created

        tenant_created(tenant)
    return tenant


TENANT_EDITABLE_FIELDS = ("name", "timezone", "greeting", "agent_notes")


def tenant_update(*, tenant: Tenant, changes: dict, acting_user: User | None) -> Tenant:
    """Change a business's settings (name, time zone, greeting, agent notes), validated and audited."""
    unknown = set(changes) - set(TENANT_EDITABLE_FIELDS)
    if unknown:
        raise ValidationError(f"These settings cannot be changed here: {', '.join(sorted(unknown))}.")
    changed = {k: v for k, v in changes.items() if getattr(tenant, k) != v}
    if not changed:
        return tenant
    for name, value in changed.items():
        setattr(tenant, name, value)
    tenant.full_clean(exclude=[f.name for f in Tenant._meta.fields if f.name not in changed])
    with transaction.atomic():
        tenant.save(update_fields=list(changed))
        audit_record(tenant_id=tenant.id, actor=acting_user, action="tenant.updated", detail=", ".join(sorted(changed)))
    return tenant


def agency_create(*, name: str, owner: User) -> Agency:
    with transaction.atomic():
        agency = Agency.objects.create(name=name.strip()[:120], slug=unique_slug(Agency, name))
        AgencyMembership.objects.create(user=owner, agency=agency, role=AgencyRole.OWNER)
    return agency


def _send_invitation_email(invitation_id: int) -> None:
    invitation = Invitation.objects.select_related("tenant", "agency", "invited_by").get(pk=invitation_id)
    context = {
        "invitation": invitation,
        "organisation": invitation.tenant or invitation.agency,
        "accept_url": f"{settings.SITE_URL}/invitations/{invitation.token}/",
    }
    send_mail(
        subject=f"[Switchboard] You're invited to join {context['organisation']}",
        message=render_to_string("tenants/email/invitation.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[invitation.email],
    )


def invitation_create(
    *, email: str, role: str, invited_by: User, tenant: Tenant | None = None, agency: Agency | None = None
) -> Invitation:
    """Invite a teammate to a tenant, or an agent to an agency; the email goes out after commit."""
    email = (email or "").strip().lower()
    if (tenant is None) == (agency is None):
        raise ValueError("invite to exactly one of tenant or agency")
    valid_roles = [r.value for r in (Role if tenant else AgencyRole)]
    if role not in valid_roles:
        raise ValidationError({"role": f"Choose one of: {', '.join(valid_roles)}."})
    if tenant and role == Role.OWNER:
        inviter = Membership.objects.filter(tenant=tenant, user=invited_by).first()
        if not inviter or inviter.role != Role.OWNER:
            raise ValidationError({"role": "Only an owner can invite another owner."})
    if tenant and Membership.objects.filter(tenant=tenant, user__email__iexact=email).exists():
        raise ValidationError({"email": f"{email} is already a member of {tenant}."})
    if agency and AgencyMembership.objects.filter(agency=agency, user__email__iexact=email).exists():
        raise ValidationError({"email": f"{email} is already a member of {agency}."})
    with transaction.atomic():
        # A fresh invitation replaces an earlier pending one for the same address.
        Invitation.objects.filter(
            email__iexact=email, tenant=tenant, agency=agency, accepted_at__isnull=True, revoked_at__isnull=True
        ).update(revoked_at=timezone.now())
        invitation = Invitation(email=email, tenant=tenant, agency=agency, role=role, invited_by=invited_by)
        invitation.full_clean(exclude=["token"])
        invitation.save()
        if tenant:
            audit_record(
                tenant_id=tenant.id, actor=invited_by, action="invitation.created", detail=f"{email} as {role}"
            )
        transaction.on_commit(lambda: _send_invitation_email(invitation.pk))
    return invitation


def invitation_accept(*, invitation: Invitation, user: User) -> Membership | AgencyMembership:
    """Turn a pending invitation into a membership for the signed-in user it was sent to."""
    if not invitation.is_pending:
        raise ValidationError("This invitation has expired or was already used. Ask for a new one.")
    if invitation.email.lower() != user.email.lower():
        raise ValidationError(
            f"This invitation was sent to {invitation.email}; you are signed in as {user.email}. "
            "Sign in with the invited address."
        )
    with transaction.atomic():
        updated = Invitation.objects.filter(pk=invitation.pk, accepted_at__isnull=True).update(
            accepted_at=timezone.now()
        )
        if updated != 1:
            raise ValidationError("This invitation was already used.")
        if invitation.tenant_id:
            membership, _ = Membership.objects.update_or_create(
                user=user, tenant_id=invitation.tenant_id, defaults={"role": invitation.role}
            )
            audit_record(
                tenant_id=invitation.tenant_id,
                actor=user,
                action="invitation.accepted",
                detail=f"{user.email} joined as {invitation.role}",
            )
        else:
            membership, _ = AgencyMembership.objects.update_or_create(
                user=user, agency_id=invitation.agency_id, defaults={"role": invitation.role}
            )
    return membership


def invitation_revoke(*, invitation: Invitation, revoked_by: User | None = None) -> None:
    revoked = Invitation.objects.filter(pk=invitation.pk, accepted_at__isnull=True).update(revoked_at=timezone.now())
    if revoked and invitation.tenant_id:
        audit_record(
            tenant_id=invitation.tenant_id, actor=revoked_by, action="invitation.revoked", detail=invitation.email
        )


def invitations_expire() -> int:
    """Housekeeping: nothing to change for correctness (is_pending checks expiry); counts stale rows."""
    return Invitation.objects.filter(
        accepted_at__isnull=True, revoked_at__isnull=True, expires_at__lt=timezone.now()
    ).count()


def membership_update_role(*, membership: Membership, role: str, acting_user: User) -> Membership:
    if role not in Role.values:
        raise ValidationError({"role": f"Choose one of: {', '.join(Role.values)}."})
    acting = Membership.objects.filter(tenant_id=membership.tenant_id, user=acting_user).first()
    if (role == Role.OWNER or membership.role == Role.OWNER) and (not acting or acting.role != Role.OWNER):
        raise PermissionDenied("Only an owner can change an owner's role or make someone an owner.")
    with transaction.atomic():
        if membership.role == Role.OWNER and role != Role.OWNER:
            _ensure_another_owner(membership)
        old = membership.role
        membership.role = role
        membership.save(update_fields=["role"])
        audit_record(
            tenant_id=membership.tenant_id,
            actor=acting_user,
            action="membership.role_changed",
            detail=f"{membership.user.email}: {old} -> {role}",
        )
    return membership


def membership_remove(*, membership: Membership, acting_user: User) -> None:
    acting = Membership.objects.filter(tenant_id=membership.tenant_id, user=acting_user).first()
    if membership.role == Role.OWNER and (not acting or acting.role != Role.OWNER):
        raise PermissionDenied("Only an owner can remove an owner.")
    with transaction.atomic():
        if membership.role == Role.OWNER:
            _ensure_another_owner(membership)
        audit_record(
            tenant_id=membership.tenant_id,
            actor=acting_user,
            action="membership.removed",
            detail=f"{membership.user.email} ({membership.role})",
        )
        membership.delete()


def _ensure_another_owner(membership: Membership) -> None:
    others = (
        Membership.objects.select_for_update()
        .filter(tenant_id=membership.tenant_id, role=Role.OWNER)
        .exclude(pk=membership.pk)
    )
    if not others.exists():
        raise ValidationError("A business needs at least one owner. Make someone else an owner first.")


def coverage_grant(*, tenant: Tenant, invite_code: str, mode: str, granted_by: User) -> Coverage:
    """A tenant owner lets an agency staff their business, identified by the agency's invite code."""
    if mode not in CoverageMode.values:
        raise ValidationError({"mode": f"Choose one of: {', '.join(CoverageMode.values)}."})
    agency = Agency.objects.filter(invite_code=(invite_code or "").strip()).first()
    if agency is None:
        raise ValidationError({"invite_code": "No agency has that invite code. Check it with the agency."})
    with transaction.atomic():
        coverage, _ = Coverage.objects.update_or_create(
            agency=agency,
            tenant=tenant,
            defaults={"mode": mode, "active": True, "revoked_at": None, "granted_by": granted_by},
        )
        audit_record(tenant_id=tenant.id, actor=granted_by, action="coverage.granted", detail=f"{agency.name} ({mode})")
    return coverage


def coverage_revoke(*, coverage: Coverage, revoked_by: User | None = None) -> Coverage:
    with transaction.atomic():
        coverage.active = False
        coverage.revoked_at = timezone.now()
        coverage.save(update_fields=["active", "revoked_at"])
        audit_record(
            tenant_id=coverage.tenant_id, actor=revoked_by, action="coverage.revoked", detail=coverage.agency.name
        )
    return coverage


def api_key_create(*, tenant: Tenant, name: str, access: str, created_by: User | None) -> tuple[ApiKey, str]:
    """Create a key and return it with the raw secret, which is never shown again."""
    if access not in ApiAccess.values:
        raise ValidationError({"access": f"Choose one of: {', '.join(ApiAccess.values)}."})
    if not (name or "").strip():
        raise ValidationError({"name": "Give the key a name so you can recognise it later."})
    prefix = secrets.token_hex(4)
    raw = f"{API_KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey.objects.create(
        tenant=tenant,
        name=name.strip()[:80],
        prefix=prefix,
        hashed_key=hash_api_key(raw),
        access=access,
        created_by=created_by,
    )
    audit_record(tenant_id=tenant.id, actor=created_by, action="api_key.created", detail=f"{key.name} ({access})")
    return key, raw


def api_key_revoke(*, api_key: ApiKey, revoked_by: User | None = None) -> None:
    if ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now()):
        audit_record(tenant_id=api_key.tenant_id, actor=revoked_by, action="api_key.revoked", detail=api_key.name)


def api_key_authenticate(raw: str) -> ApiKey | None:
    """Find the live key for a raw secret, and note when it was last used (at most once a minute)."""
    if not raw.startswith(API_KEY_PREFIX):
        return None
    key = ApiKey.objects.select_related("tenant").filter(hashed_key=hash_api_key(raw), revoked_at__isnull=True).first()
    if key is None:
        return None
    now = timezone.now()
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key
