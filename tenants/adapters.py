"""allauth adapter: a signup creates the user, the business and the owner membership together.

A signup that starts from an invitation link (``/invitations/<token>/``) may leave the business
out: then no business is created and, when the address matches the invitation's, the invitation is
accepted in the same transaction. Holding the invitation's token proves the invited address (the
token was only ever emailed there), so that address counts as verified and the newcomer is signed
in straight away instead of waiting for a second email.
"""

from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter
from django.db import transaction

from tenants.models import Invitation
from tenants.services import invitation_accept, tenant_create

#: Session key holding the token of the invitation a signed-out visitor opened.
INVITATION_SESSION_KEY = "switchboard_invitation_token"
#: Name of the signup form's hidden field (and query parameter) carrying that token.
INVITATION_FIELD = "invitation"


def pending_invitation(request, token: str | None = None) -> Invitation | None:
    """The pending invitation this request is about: an explicit token, the signup form's hidden
    field, a ``?invitation=`` query parameter or the one remembered in the session."""
    if request is None:
        return None
    if not token:
        token = (
            request.POST.get(INVITATION_FIELD)
            or request.GET.get(INVITATION_FIELD)
            or (request.session.get(INVITATION_SESSION_KEY) if hasattr(request, "session") else None)
        )
    if not token or not isinstance(token, str) or len(token) > 64:
        return None
    invitation = Invitation.objects.select_related("tenant", "agency", "invited_by").filter(token=token).first()
    if invitation is None or not invitation.is_pending:
        return None
    return invitation


class AccountAdapter(DefaultAccountAdapter):
    error_messages = {
        **DefaultAccountAdapter.error_messages,
        "email_taken": "An account already uses this email address. Log in instead, or reset your password "
        "if you have forgotten it.",
    }

    def save_user(self, request, user, form, commit=True):
        # The signup form wraps this and the EmailAddress row in one transaction as well.
        with transaction.atomic():
            user = super().save_user(request, user, form, commit=False)
            user.full_name = (form.cleaned_data.get("full_name") or "").strip()
            user.save()
            business = (form.cleaned_data.get("business_name") or "").strip()
            if business:
                tenant_create(name=business, timezone_name=form.cleaned_data["timezone"], owner=user)
            invitation = getattr(form, "pending_invitation", None)
            if invitation is not None and invitation.email.lower() == user.email.lower():
                invitation_accept(invitation=invitation, user=user)
                if hasattr(request, "session"):
                    request.session.pop(INVITATION_SESSION_KEY, None)
                    # allauth's own hook: setup_user_email() marks this stashed address as verified.
                    self.stash_verified_email(request, user.email)
        return user
