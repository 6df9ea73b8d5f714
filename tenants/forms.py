"""Forms for signup and the business pages.

Forms only check the shape of the input; the rules (who may invite an owner, the last owner...)
live in ``tenants.services``, whose ValidationErrors the views copy back onto these forms.
"""

from __future__ import annotations

import zoneinfo

from allauth.account.forms import SignupForm
from allauth.account.models import EmailAddress
from allauth.core import context as allauth_context
from django import forms
from django.core.exceptions import ValidationError
from django.db import transaction
from django.shortcuts import render

from tenants.adapters import INVITATION_FIELD, INVITATION_SESSION_KEY, pending_invitation
from tenants.models import AgencyRole, ApiAccess, CoverageMode, Role, User

COMMON_TIMEZONES = [
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Phoenix",
    "America/Los_Angeles",
    "America/Anchorage",
    "Pacific/Honolulu",
    "America/Toronto",
    "America/Vancouver",
    "Europe/London",
    "Europe/Dublin",
    "Europe/Paris",
    "Europe/Berlin",
    "Australia/Sydney",
    "Asia/Singapore",
]


def timezone_choices() -> list[tuple[str, str]]:
    rest = sorted(zoneinfo.available_timezones() - set(COMMON_TIMEZONES))
    rest = [t for t in rest if "/" in t and not t.startswith("Etc")]
    return [(tz, tz.replace("_", " ")) for tz in COMMON_TIMEZONES + rest]


def apply_service_errors(form: forms.Form, error: ValidationError) -> None:
    """Copy a service's ValidationError onto the form: field errors where the form has the field,
    everything else as a form-wide error, so every message ends up on the page."""
    if hasattr(error, "error_dict"):
        for field, errors in error.message_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, error.messages)


def error_text(error: Exception) -> str:
    """A ValidationError or PermissionDenied as one sentence for ``messages``."""
    if isinstance(error, ValidationError):
        return " ".join(error.messages)
    return str(error) or "You are not allowed to do that."


class BusinessSignupForm(SignupForm):
    """allauth's signup plus the business: its name and time zone (hours and callbacks use it).

    Opened from an invitation (a pending invitation in the session, the ``?invitation=`` query
    parameter or the form's hidden field), the business fields become optional: leaving them out
    joins the inviting business instead of creating one.
    """

    full_name = forms.CharField(
        max_length=150,
        label="Your name",
        widget=forms.TextInput(attrs={"placeholder": "Alex Rivera", "autocomplete": "name"}),
        error_messages={"required": "Enter your name so teammates know who you are."},
    )
    business_name = forms.CharField(
        max_length=120,
        label="Business name",
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "Bright Smile Dental", "autocomplete": "organization"}),
        help_text="As your callers know it.",
    )
    timezone = forms.ChoiceField(
        choices=timezone_choices,
        initial="America/New_York",
        label="Time zone",
        help_text="Opening hours and callbacks use it.",
        error_messages={"invalid_choice": "Pick your time zone from the list."},
    )
    invitation = forms.CharField(required=False, widget=forms.HiddenInput)

    field_order = ["full_name", "email", "password1", "password2", "business_name", "timezone"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        request = allauth_context.request
        token = self.data.get(INVITATION_FIELD) if self.is_bound else None
        self.pending_invitation = pending_invitation(request, token) if request is not None else None
        self.fields["email"].error_messages["invalid"] = "Enter a valid email address, like you@yourbusiness.com."
        self.fields["email"].widget.attrs["placeholder"] = "you@yourbusiness.com"
        if self.pending_invitation is not None:
            self.fields[INVITATION_FIELD].initial = self.pending_invitation.token
            self.fields["email"].initial = self.pending_invitation.email
            self.fields["timezone"].required = False
            if request is not None and hasattr(request, "session"):
                request.session[INVITATION_SESSION_KEY] = self.pending_invitation.token
        else:
            self.fields["business_name"].required = True
            self.fields["business_name"].error_messages["required"] = "Enter your business name."

    @property
    def business_fields(self):
        return [self["business_name"], self["timezone"]]

    @property
    def person_fields(self):
        return [self[name] for name in ("full_name", "email", "password1", "password2") if name in self.fields]

    def validate_unique_email(self, value: str) -> str:
        # A clear error rather than allauth's silent "check your inbox" (enumeration prevention):
        # a business owner signing up twice at night needs to be told to log in instead.
        taken = User.objects.filter(email__iexact=value).exists()
        if taken or EmailAddress.objects.filter(email__iexact=value).exists():
            raise ValidationError(self._adapter_message("email_taken"))
        return super().validate_unique_email(value)

    @staticmethod
    def _adapter_message(key: str) -> str:
        from allauth.account.adapter import get_adapter

        return str(get_adapter().error_messages[key])

    def clean_full_name(self) -> str:
        name = self.cleaned_data["full_name"].strip()
        if not name:
            raise ValidationError("Enter your name so teammates know who you are.")
        return name

    def clean_business_name(self) -> str:
        name = (self.cleaned_data.get("business_name") or "").strip()
        if self.pending_invitation is not None and not name:
            return ""
        if len(name) < 2:
            raise ValidationError("Enter your business name as callers know it.")
        return name

    def clean(self) -> dict:
        cleaned = super().clean()
        if self.pending_invitation is not None and not cleaned.get("business_name"):
            email = (cleaned.get("email") or "").lower()
            if email and email != self.pending_invitation.email.lower():
                org = self.pending_invitation.tenant or self.pending_invitation.agency
                self.add_error(
                    "email",
                    f"This invitation to {org} was sent to {self.pending_invitation.email}. Sign up with that address "
                    "to join, or enter a business name below to start your own business.",
                )
        if cleaned.get("business_name") and not cleaned.get("timezone"):
            self.add_error("timezone", "Pick your business's time zone.")
        return cleaned

    def save(self, request):
        # The user, the business, its owner membership and the EmailAddress row: all or nothing.
        with transaction.atomic():
            return super().save(request)

    def try_save(self, request):
        try:
            return super().try_save(request)
        except ValidationError as error:
            # A rule in a service said no (everything above was rolled back): show it on the form.
            apply_service_errors(self, error)
            from allauth.account.internal.templatekit import get_entrance_context_data

            context = {"form": self, **get_entrance_context_data(request)}
            return None, render(request, "account/signup.html", context)


class InvitationForm(forms.Form):
    email = forms.EmailField(
        label="Email address",
        widget=forms.EmailInput(attrs={"placeholder": "teammate@yourbusiness.com"}),
        error_messages={"required": "Enter the email address to invite.", "invalid": "Enter a valid email address."},
    )
    role = forms.ChoiceField(choices=Role.choices, initial=Role.AGENT)

    def __init__(self, *args, can_invite_owner: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not can_invite_owner:
            self.fields["role"].choices = [c for c in Role.choices if c[0] != Role.OWNER]


class AgencyInvitationForm(forms.Form):
    email = forms.EmailField(
        label="Email address",
        widget=forms.EmailInput(attrs={"placeholder": "agent@youragency.com"}),
        error_messages={"required": "Enter the email address to invite.", "invalid": "Enter a valid email address."},
    )
    role = forms.ChoiceField(choices=AgencyRole.choices, initial=AgencyRole.AGENT)

    def __init__(self, *args, can_invite_owner: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not can_invite_owner:
            self.fields["role"].choices = [c for c in AgencyRole.choices if c[0] != AgencyRole.OWNER]
            self.fields["role"].error_messages["invalid_choice"] = "Only an agency owner can invite another owner."


class CoverageGrantForm(forms.Form):
    invite_code = forms.CharField(
        max_length=32,
        label="Agency invite code",
        help_text="Your answering service finds it on its agency page in Switchboard.",
        error_messages={"required": "Enter the invite code your answering service gave you."},
    )
    mode = forms.ChoiceField(
        choices=CoverageMode.choices,
        initial=CoverageMode.AFTER_HOURS,
        label="When they answer",
        help_text="Always: every call. After hours: outside your opening hours. Overflow: when your team is busy.",
    )


class ApiKeyForm(forms.Form):
    name = forms.CharField(
        max_length=80,
        label="Key name",
        widget=forms.TextInput(attrs={"placeholder": "Booking system"}),
        help_text="So you can recognise it later.",
        error_messages={"required": "Give the key a name so you can recognise it later."},
    )
    access = forms.ChoiceField(choices=ApiAccess.choices, initial=ApiAccess.READ)


class MembershipRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices, error_messages={"invalid_choice": "Choose a role from the list."})


class AgencyCreateForm(forms.Form):
    name = forms.CharField(
        max_length=120,
        label="Agency name",
        widget=forms.TextInput(attrs={"placeholder": "Night Owl Answering"}),
        error_messages={"required": "Enter your answering service's name."},
    )

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if len(name) < 2:
            raise ValidationError("Enter your answering service's name.")
        return name
