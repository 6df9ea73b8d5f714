"""Business pages: landing, the post-login redirect, a tenant's home (onboarding checklist), team,
coverage, API keys, audit log, invitations and agency pages.

Rules:
- every tenant page is decorated with ``@tenant_view`` (404 for another tenant, 403 below the role)
  and looks rows up with the tenant id from ``request.tenant_access``, so another tenant's pk is 404;
- every write goes through ``tenants.services``; their ValidationError / PermissionDenied messages
  are shown on the form or as a ``messages`` error;
- views whose URL has kwargs other than ``tenant_slug`` carry ``isolation_model`` (the model the
  kwarg points at) and ``isolation_kwargs`` ({kwarg: "Model.field"}) for the isolation matrix.
"""

from __future__ import annotations

from allauth.account.models import EmailAddress
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from tenants.adapters import INVITATION_SESSION_KEY
from tenants.agency_access import agency_view
from tenants.decorators import tenant_view
from tenants.forms import (
    AgencyCreateForm,
    AgencyInvitationForm,
    ApiKeyForm,
    CoverageGrantForm,
    InvitationForm,
    MembershipRoleForm,
    apply_service_errors,
    error_text,
)
from tenants.hooks import onboarding_steps
from tenants.models import (
    Agency,
    AgencyMembership,
    AgencyRole,
    ApiKey,
    AuditEvent,
    Coverage,
    Invitation,
    Membership,
    Role,
)
from tenants.selectors import agencies_for_user
from tenants.services import (
    agency_create,
    api_key_create,
    api_key_revoke,
    coverage_grant,
    coverage_revoke,
    invitation_accept,
    invitation_create,
    invitation_revoke,
    membership_remove,
    membership_update_role,
)


def _pending_invitations():
    return Invitation.objects.filter(accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now())


def _is_staff(access) -> bool:
    """The business's own people (not an answering service covering it)."""
    return access.via == "member"


# --- landing and the post-login redirect -----------------------------------------------------------------------


def landing(request):
    return render(request, "landing.html")


@login_required
def app_home(request):
    """Where login lands: a pending invitation first, then the only business, else a picker."""
    user = request.user
    token = request.session.pop(INVITATION_SESSION_KEY, None)
    if token:
        invitation = _pending_invitations().filter(token=token, email__iexact=user.email).first()
        if invitation is not None:
            return redirect("invitation", token=token)
    access = getattr(request, "tenant_access_map", {}) or {}
    agencies = list(agencies_for_user(user))
    if len(access) == 1:
        only = next(iter(access.values()))
        return redirect("tenant-home", tenant_slug=only.slug)
    if not access and len(agencies) == 1:
        return redirect("agency-home", agency_slug=agencies[0].slug)
    verified = EmailAddress.objects.filter(user_id=user.pk, email__iexact=user.email, verified=True).exists()
    invitations = (
        list(_pending_invitations().filter(email__iexact=user.email).select_related("tenant", "agency", "invited_by"))
        if verified
        else []
    )
    return render(
        request,
        "tenants/app_home.html",
        {
            "accesses": sorted(access.values(), key=lambda a: a.name.lower()),
            "agencies": agencies,
            "invitations": invitations,
        },
    )


# --- tenant pages ----------------------------------------------------------------------------------------------


@tenant_view(Role.AGENT)
def tenant_home(request, tenant_slug: str):
    tenant = request.tenant
    access = request.tenant_access
    context = {"tenant": tenant, "access": access}
    if access.via == "agency" and access.agency_id:
        context["via_agency"] = Agency.objects.filter(pk=access.agency_id).first()
    if _is_staff(access) and access.allows(Role.ADMIN):
        members = Membership.objects.filter(tenant_id=access.tenant_id).count()
        invited = _pending_invitations().filter(tenant_id=access.tenant_id).exists()
        steps = [
            {
                "key": "verify",
                "title": "Verify your email address",
                "done": EmailAddress.objects.filter(user_id=request.user.pk, verified=True).exists(),
                "text": "Done: we will send invitations and alerts to this address.",
            },
            {
                "key": "team",
                "title": "Invite your teammates",
                "done": members > 1 or invited,
                "text": "Add the people who answer escalated calls or manage settings.",
                "url": reverse("tenant-team", args=[tenant.slug]),
                "action": "Invite teammates",
            },
            *onboarding_steps(tenant),
            {
                "key": "coverage",
                "title": "Let an answering service cover you (optional)",
                "done": Coverage.objects.filter(tenant_id=access.tenant_id, active=True).exists(),
                "text": "Give a live answering service access after hours, on overflow or always.",
                "url": reverse("tenant-coverage", args=[tenant.slug]),
                "action": "Set up coverage",
            },
            {
                "key": "api",
                "title": "Create an API key (optional)",
                "done": ApiKey.objects.filter(tenant_id=access.tenant_id, revoked_at__isnull=True).exists(),
                "text": "Connect your booking system or CRM.",
                "url": reverse("tenant-api-keys", args=[tenant.slug]),
                "action": "Create a key",
            },
        ]
        countable = [s for s in steps if not s.get("coming_soon")]
        context.update(
            checklist=steps,
            steps_done=sum(1 for s in countable if s["done"]),
            steps_total=len(countable),
        )
    return render(request, "tenants/tenant_home.html", context)


def _team_context(request, invite_form: InvitationForm) -> dict:
    access = request.tenant_access
    is_owner = access.role == Role.OWNER
    memberships = list(
        Membership.objects.filter(tenant_id=access.tenant_id).select_related("user").order_by("user__email")
    )
    can_manage = access.allows(Role.ADMIN)
    role_choices = [c for c in Role.choices if is_owner or c[0] != Role.OWNER]
    return {
        "tenant": request.tenant,
        "memberships": memberships,
        "owner_count": sum(1 for m in memberships if m.role == Role.OWNER),
        "invitations": list(_pending_invitations().filter(tenant_id=access.tenant_id).select_related("invited_by"))
        if can_manage
        else [],
        "can_manage": can_manage,
        "is_owner": is_owner,
        "role_choices": role_choices,
        "invite_form": invite_form,
    }


@tenant_view(Role.AGENT, write_role=Role.ADMIN)
def team(request, tenant_slug: str):
    """Everyone on the business's staff may see the team; owners and admins invite."""
    access = request.tenant_access
    if not _is_staff(access):
        raise PermissionDenied("The team page is for the business's own staff.")
    can_invite_owner = access.role == Role.OWNER
    form = InvitationForm(request.POST or None, can_invite_owner=can_invite_owner)
    if request.method == "POST" and form.is_valid():
        email, role = form.cleaned_data["email"], form.cleaned_data["role"]
        try:
            invitation_create(email=email, role=role, invited_by=request.user, tenant=request.tenant)
        except ValidationError as error:
            apply_service_errors(form, error)
        else:
            messages.success(
                request, f"Invitation sent to {email.lower()} as {Role(role).label.lower()}. It expires in 7 days."
            )
            return redirect("tenant-team", tenant_slug=tenant_slug)
    return render(request, "tenants/team.html", _team_context(request, form))


@tenant_view(Role.ADMIN)
@require_POST
def member_role(request, tenant_slug: str, pk: int):
    access = request.tenant_access
    membership = get_object_or_404(Membership.objects.select_related("user"), pk=pk, tenant_id=access.tenant_id)
    form = MembershipRoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a role from the list.")
        return redirect("tenant-team", tenant_slug=tenant_slug)
    role = form.cleaned_data["role"]
    if role == membership.role:
        messages.info(request, f"{membership.user.email} is already {Role(role).label.lower()}.")
        return redirect("tenant-team", tenant_slug=tenant_slug)
    try:
        membership_update_role(membership=membership, role=role, acting_user=request.user)
    except (ValidationError, PermissionDenied) as error:
        messages.error(request, error_text(error))
    else:
        messages.success(request, f"{membership.user.email} is now {Role(role).label.lower()}.")
    return redirect("tenant-team", tenant_slug=tenant_slug)


member_role.isolation_model = Membership
member_role.isolation_kwargs = {"pk": "Membership.pk"}


@tenant_view(Role.ADMIN)
@require_POST
def member_remove(request, tenant_slug: str, pk: int):
    access = request.tenant_access
    membership = get_object_or_404(Membership.objects.select_related("user"), pk=pk, tenant_id=access.tenant_id)
    email, is_self = membership.user.email, membership.user_id == request.user.pk
    try:
        membership_remove(membership=membership, acting_user=request.user)
    except (ValidationError, PermissionDenied) as error:
        messages.error(request, error_text(error))
        return redirect("tenant-team", tenant_slug=tenant_slug)
    if is_self:
        messages.success(request, f"You left {access.name}.")
        return redirect("app-home")
    messages.success(request, f"{email} was removed from {access.name}.")
    return redirect("tenant-team", tenant_slug=tenant_slug)


member_remove.isolation_model = Membership
member_remove.isolation_kwargs = {"pk": "Membership.pk"}


@tenant_view(Role.ADMIN)
@require_POST
def tenant_invitation_revoke(request, tenant_slug: str, pk: int):
    access = request.tenant_access
    invitation = get_object_or_404(Invitation, pk=pk, tenant_id=access.tenant_id)
    if not invitation.is_pending:
        messages.info(request, f"The invitation for {invitation.email} was no longer pending.")
    else:
        invitation_revoke(invitation=invitation, revoked_by=request.user)
        messages.success(request, f"The invitation for {invitation.email} was withdrawn; its link no longer works.")
    return redirect("tenant-team", tenant_slug=tenant_slug)


tenant_invitation_revoke.isolation_model = Invitation
tenant_invitation_revoke.isolation_kwargs = {"pk": "Invitation.pk"}


@tenant_view(Role.ADMIN, write_role=Role.OWNER)
def coverage(request, tenant_slug: str):
    """Owners let an answering service staff the business; admins can see who does."""
    access = request.tenant_access
    form = CoverageGrantForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            granted = coverage_grant(
                tenant=request.tenant,
                invite_code=form.cleaned_data["invite_code"],
                mode=form.cleaned_data["mode"],
                granted_by=request.user,
            )
        except ValidationError as error:
            apply_service_errors(form, error)
        else:
            messages.success(
                request,
                f"{granted.agency.name} now answers for {access.name} ({granted.get_mode_display().lower()}).",
            )
            return redirect("tenant-coverage", tenant_slug=tenant_slug)
    coverages = list(
        Coverage.objects.filter(tenant_id=access.tenant_id)
        .select_related("agency", "granted_by")
        .order_by("-active", "agency__name")
    )
    return render(
        request,
        "tenants/coverage.html",
        {
            "tenant": request.tenant,
            "form": form,
            "active_coverages": [c for c in coverages if c.active],
            "past_coverages": [c for c in coverages if not c.active],
            "can_manage": access.allows(Role.OWNER),
        },
    )


@tenant_view(Role.OWNER)
@require_POST
def coverage_revoke_view(request, tenant_slug: str, pk: int):
    access = request.tenant_access
    item = get_object_or_404(Coverage.objects.select_related("agency"), pk=pk, tenant_id=access.tenant_id)
    if not item.active:
        messages.info(request, f"{item.agency.name} no longer had access.")
    else:
        coverage_revoke(coverage=item, revoked_by=request.user)
        messages.success(request, f"{item.agency.name} no longer answers for {access.name}. Their access ended now.")
    return redirect("tenant-coverage", tenant_slug=tenant_slug)


coverage_revoke_view.isolation_model = Coverage
coverage_revoke_view.isolation_kwargs = {"pk": "Coverage.pk"}


def _api_keys_context(request, form: ApiKeyForm) -> dict:
    keys = ApiKey.objects.filter(tenant_id=request.tenant_access.tenant_id).select_related("created_by")
    return {
        "tenant": request.tenant,
        "form": form,
        "active_keys": [k for k in keys if k.revoked_at is None],
        "revoked_keys": [k for k in keys if k.revoked_at is not None],
    }


@tenant_view(Role.ADMIN)
@never_cache
def api_keys(request, tenant_slug: str):
    """Create and list keys. A new key's secret is shown once, in the response to the POST that made it
    (never stored, never shown again)."""
    form = ApiKeyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            key, raw = api_key_create(
                tenant=request.tenant,
                name=form.cleaned_data["name"],
                access=form.cleaned_data["access"],
                created_by=request.user,
            )
        except ValidationError as error:
            apply_service_errors(form, error)
        else:
            response = render(
                request, "tenants/api_key_created.html", {"tenant": request.tenant, "key": key, "raw_key": raw}
            )
            response["Cache-Control"] = "no-store"
            return response
    return render(request, "tenants/api_keys.html", _api_keys_context(request, form))


@tenant_view(Role.ADMIN)
@require_POST
def api_key_revoke_view(request, tenant_slug: str, pk: int):
    key = get_object_or_404(ApiKey, pk=pk, tenant_id=request.tenant_access.tenant_id)
    if key.revoked_at is not None:
        messages.info(request, f"The key “{key.name}” was already revoked.")
    else:
        api_key_revoke(api_key=key, revoked_by=request.user)
        messages.success(request, f"The key “{key.name}” ({key.prefix}…) was revoked; it stops working now.")
    return redirect("tenant-api-keys", tenant_slug=tenant_slug)


api_key_revoke_view.isolation_model = ApiKey
api_key_revoke_view.isolation_kwargs = {"pk": "ApiKey.pk"}


@tenant_view(Role.ADMIN)
def audit_log(request, tenant_slug: str):
    events = AuditEvent.objects.filter(tenant_id=request.tenant_access.tenant_id).select_related("actor")
    page = Paginator(events.order_by("-created_at", "-pk"), 50).get_page(request.GET.get("page"))
    return render(request, "tenants/audit.html", {"tenant": request.tenant, "page": page})


# --- invitations -----------------------------------------------------------------------------------------------


def _invitation_state(invitation: Invitation) -> str:
    if invitation.accepted_at:
        return "accepted"
    if invitation.revoked_at:
        return "revoked"
    if invitation.expires_at <= timezone.now():
        return "expired"
    return "pending"


def _destination(invitation: Invitation) -> str:
    if invitation.tenant_id:
        return reverse("tenant-home", args=[invitation.tenant.slug])
    return reverse("agency-home", args=[invitation.agency.slug])


@never_cache
def invitation_detail(request, token: str):
    """Who invited you to what; sign in or sign up, then accept. POST accepts."""
    invitation = (
        Invitation.objects.select_related("tenant", "agency", "invited_by").filter(token=token).first()
        if len(token) <= 64
        else None
    )
    if invitation is None:
        return render(request, "tenants/invitation_invalid.html", status=404)
    state = _invitation_state(invitation)
    user = request.user
    if request.method == "POST":
        if not user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        try:
            invitation_accept(invitation=invitation, user=user)
        except ValidationError as error:
            messages.error(request, error_text(error))
            return redirect("invitation", token=token)
        request.session.pop(INVITATION_SESSION_KEY, None)
        organisation = invitation.tenant or invitation.agency
        messages.success(request, f"Welcome to {organisation}! You joined as {invitation.role}.")
        return redirect(_destination(invitation))
    if state == "pending" and not user.is_authenticated:
        request.session[INVITATION_SESSION_KEY] = token
    context = {
        "invitation": invitation,
        "organisation": invitation.tenant or invitation.agency,
        "kind": "business" if invitation.tenant_id else "answering service",
        "state": state,
        "email_matches": user.is_authenticated and user.email.lower() == invitation.email.lower(),
        "already_member": user.is_authenticated
        and (
            Membership.objects.filter(tenant_id=invitation.tenant_id, user_id=user.pk).exists()
            if invitation.tenant_id
            else AgencyMembership.objects.filter(agency_id=invitation.agency_id, user_id=user.pk).exists()
        ),
        "destination": _destination(invitation),
        "here": request.path,
        "signup_url": f"{reverse('account_signup')}?invitation={token}",
    }
    return render(request, "tenants/invitation.html", context)


invitation_detail.isolation_model = Invitation
invitation_detail.isolation_kwargs = {"token": "Invitation.token"}


# --- agencies --------------------------------------------------------------------------------------------------


@agency_view(AgencyRole.AGENT, write_role=AgencyRole.SUPERVISOR)
def agency_home(request, agency_slug: str):
    """An answering service's page: its code, the businesses it covers, its people; managers invite."""
    agency = request.agency
    can_manage = agency.viewer_role in (AgencyRole.OWNER, AgencyRole.SUPERVISOR)
    can_invite_owner = agency.viewer_role == AgencyRole.OWNER
    form = AgencyInvitationForm(request.POST or None, can_invite_owner=can_invite_owner) if can_manage else None
    if request.method == "POST" and form.is_valid():
        email, role = form.cleaned_data["email"], form.cleaned_data["role"]
        try:
            invitation_create(email=email, role=role, invited_by=request.user, agency=agency)
        except ValidationError as error:
            apply_service_errors(form, error)
        else:
            messages.success(request, f"Invitation sent to {email.lower()} as {AgencyRole(role).label.lower()}.")
            return redirect("agency-home", agency_slug=agency_slug)
    return render(
        request,
        "tenants/agency_home.html",
        {
            "agency": agency,
            "can_manage": can_manage,
            "form": form,
            "coverages": Coverage.objects.filter(agency_id=agency.pk, active=True)
            .select_related("tenant")
            .order_by("tenant__name"),
            "members": AgencyMembership.objects.filter(agency_id=agency.pk)
            .select_related("user")
            .order_by("user__email"),
            "invitations": _pending_invitations().filter(agency_id=agency.pk).select_related("invited_by")
            if can_manage
            else [],
        },
    )


agency_home.isolation_model = Agency
agency_home.isolation_kwargs = {"agency_slug": "Agency.slug"}


@agency_view(AgencyRole.SUPERVISOR)
@require_POST
def agency_invitation_revoke(request, agency_slug: str, pk: int):
    invitation = get_object_or_404(Invitation, pk=pk, agency_id=request.agency.pk)
    if not invitation.is_pending:
        messages.info(request, f"The invitation for {invitation.email} was no longer pending.")
    else:
        invitation_revoke(invitation=invitation, revoked_by=request.user)
        messages.success(request, f"The invitation for {invitation.email} was withdrawn.")
    return redirect("agency-home", agency_slug=agency_slug)


agency_invitation_revoke.isolation_model = Invitation
agency_invitation_revoke.isolation_kwargs = {"agency_slug": "Agency.slug", "pk": "Invitation.pk"}


@login_required
def agency_new(request):
    """An answering service sets up its agency (the signed-in user becomes its owner)."""
    form = AgencyCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        agency = agency_create(name=form.cleaned_data["name"], owner=request.user)
        messages.success(request, f"{agency.name} is ready. Give your invite code to the businesses you answer for.")
        return redirect("agency-home", agency_slug=agency.slug)
    return render(request, "tenants/agency_new.html", {"form": form})
