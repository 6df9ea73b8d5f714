"""Phone numbers: a dialled number resolves its business and the flow that answers it."""

from __future__ import annotations

import phonenumbers
from django.core.exceptions import ValidationError
from django.db import models

from flows.models import Flow
from tenants.models import TenantOwned


def normalize_e164(value: str, region: str = "US") -> str:
    """'+1 (555) 555-0100' or '15555550100' -> '+15555550100'; raises ValidationError otherwise."""
    raw = (value or "").strip()
    if raw and not raw.startswith("+") and raw.isdigit() and len(raw) > 10:
        raw = "+" + raw
    try:
        parsed = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        raise ValidationError(
            f"{value!r} is not a phone number; write it with the country code, e.g. +15555550100."
        ) from None
    if not phonenumbers.is_possible_number(parsed):
        raise ValidationError(f"{value!r} does not look like a complete phone number; include the area code.")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


class PhoneNumber(TenantOwned):
    number = models.CharField(max_length=20, unique=True, help_text="E.164, e.g. +15555550100.")
    label = models.CharField(max_length=80, blank=True, help_text="e.g. Main line, Ads campaign.")
    flow = models.ForeignKey(Flow, on_delete=models.PROTECT, related_name="+", help_text="The script that answers.")
    active = models.BooleanField(default=True)
    fallback_number = models.CharField(
        max_length=20,
        blank=True,
        help_text="Where calls go if something fails on our side (your front desk or mobile). Empty: voicemail.",
    )
    transcribe_voicemail = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["number"]

    def __str__(self) -> str:
        return f"{self.number} {self.label}".strip()

    def clean(self) -> None:
        super().clean()
        errors = {}
        for field in ("number", "fallback_number"):
            value = getattr(self, field)
            if value:
                try:
                    setattr(self, field, normalize_e164(value))
                except ValidationError as exc:
                    errors[field] = exc.messages
        # The number is unique across all businesses; the scoped manager would only see this tenant's.
        if (
            self.number
            and not errors.get("number")
            and (PhoneNumber._base_manager.filter(number=self.number).exclude(pk=self.pk).exists())
        ):
            errors["number"] = ["This number is already connected to a business. If it is yours, contact support."]
        if self.fallback_number and self.fallback_number == self.number:
            errors["fallback_number"] = ["The fallback must be another number, or calls would loop back here."]
        if errors:
            raise ValidationError(errors)
