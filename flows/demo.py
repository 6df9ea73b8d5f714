"""Demo flows for `make run`: Bright Smile Dental's published script (flows/examples/dental.yaml)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from django.utils import timezone

from flows import services
from flows.definition import from_yaml
from flows.models import Holiday
from tenants.models import Tenant
from tenants.scoping import tenant_scope

EXAMPLES = Path(__file__).resolve().parent / "examples"


def load_example(tenant: Tenant, filename: str, *, publish: bool = True):
    text = (EXAMPLES / filename).read_text()
    with tenant_scope([tenant.id]):
        defn = from_yaml(text)
        services.tenant_settings_import(tenant=tenant, defn=defn)
        # Keep the demo's calendar current: the coming Christmas and New Year are holidays too.
        today = timezone.localdate()
        for year in (today.year, today.year + 1):
            for month, day, name in ((12, 25, "Christmas Day"), (1, 1, "New Year's Day")):
                Holiday.objects.get_or_create(
                    tenant_id=tenant.id, date=dt.date(year, month, day), defaults={"name": name}
                )
        flow = services.flow_import_yaml(tenant=tenant, text=text)
        if publish:
            services.flow_publish(flow=flow, user=None, note="Demo script")
    return flow


def load_flows_demo(*, dental: Tenant, plumbing: Tenant) -> None:
    load_example(dental, "dental.yaml")
    load_example(plumbing, "plumbing.yaml")
