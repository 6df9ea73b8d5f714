"""Forms for signup and the business pages."""
from __future__ import annotations

import zoneinfo

from allauth.account.forms import SignupForm
from django import forms

from tenants.models import AgencyRole, ApiAccess, CoverageMode, Role

COMMON_TIMEZONES = [
    "America/New_York", "America/Chicago", "America/Denver", "America/Phoenix", "America/Los_Angeles",
    "America/Anchorage", "Pacific/Honolulu", "America/Toronto", "America/Vancouver", "Europe/London",
    "Europe/Dublin", "Europe/Paris", "Europe/Berlin", "Australia/Sydney", "Asia/Singapore",
]


def timezone_choices() -> list[tuple[str, str]]:
    rest = sorted(zoneinfo.available_timezones() - set(COMMON_TIMEZONES))
    return [(tz, tz.replace("_", " ")) for tz in COMMON_TIMEZONES + [t for t in rest if "/" in t and not t.startswith("Etc")]]


class BusinessSignupForm(SignupForm):
    """allauth's signup plus the business: its name and time zone (hours and callbacks use it)."""

    business_name = forms.CharField(
        max_length=120, label="Business name", widget=forms.TextInput(attrs={"placeholder": "Bright Smile Dental"})
    )
    timezone = forms.ChoiceField(choices=timezone_choices, initial="America/New_York", label="Time zone")
    full_name = forms.CharField(max_length=150, required=False, label="Your name")

    field_order = ["full_name", "email", "password1", "password2", "business_name", "timezone"]

    def clean_business_name(self) -> str:
        name = self.cleaned_data["business_name"].strip()
        if len(name) < 2:
            raise forms.ValidationError("Enter your business name as callers know it.")
        return name


class InvitationForm(forms.Form):
    email = forms.EmailField()
    role = forms.ChoiceField(choices=Role.choices, initial=Role.AGENT)


class AgencyInvitationForm(forms.Form):
    email = forms.EmailField()
    role = forms.ChoiceField(choices=AgencyRole.choices, initial=AgencyRole.AGENT)


class CoverageGrantForm(forms.Form):
    invite_code = forms.CharField(max_length=32, label="Agency invite code")
    mode = forms.ChoiceField(choices=CoverageMode.choices, initial=CoverageMode.AFTER_HOURS)


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=80)
    access = forms.ChoiceField(choices=ApiAccess.choices, initial=ApiAccess.READ)


class MembershipRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)
