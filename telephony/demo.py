"""Demo numbers: Bright Smile Dental answers on +15555550100, Northside Plumbing on +15555550200."""

from __future__ import annotations

from flows.models import Flow
from telephony.models import PhoneNumber
from tenants.models import Tenant
from tenants.scoping import tenant_scope

DEMO_NUMBERS = (("+15555550100", "+15555550199"), ("+15555550200", ""))


def load_numbers_demo(*, dental: Tenant, plumbing: Tenant) -> None:
    for tenant, (number, fallback) in zip((dental, plumbing), DEMO_NUMBERS, strict=True):
        with tenant_scope([tenant.id]):
            flow = Flow.objects.first()
            PhoneNumber.objects.create(
                tenant=tenant, number=number, label="Main line", flow=flow, fallback_number=fallback
            )
