"""The owner's checklist step for phone numbers."""

from __future__ import annotations

from django.urls import reverse

from telephony.models import PhoneNumber
from tenants.scoping import tenant_scope


def phone_step(tenant) -> dict:
    with tenant_scope([tenant.id]):
        numbers = list(PhoneNumber.objects.filter(active=True).values_list("number", flat=True)[:3])
    return {
        "key": "phone",
        "title": "Connect a phone number",
        "done": bool(numbers),
        "text": (
            f"Calls to {', '.join(numbers)} are answered by your script."
            if numbers
            else "Add the number callers dial (forward your existing line to it) and choose the script that answers."
        ),
        "url": reverse("admin:telephony_phonenumber_changelist")
        if numbers
        else reverse("admin:telephony_phonenumber_add"),
        "action": "Phone numbers" if numbers else "Add a number",
    }
