"""What flows adds to a new business: a starter script (a draft to review), and a checklist step."""

from __future__ import annotations

from pathlib import Path

import yaml
from django.urls import reverse

from flows import services
from flows.definition import FlowDefinition
from flows.models import Flow
from tenants.scoping import tenant_scope

STARTER = Path(__file__).resolve().parent / "examples" / "starter.yaml"


def starter_definition(tenant) -> FlowDefinition:
    data = yaml.safe_load(STARTER.read_text())
    data["hours"]["timezone"] = tenant.timezone
    for step in data["steps"]:
        if "text" in step and step["text"]:
            step["text"] = step["text"].replace("BUSINESS_NAME", tenant.name)
    return FlowDefinition.model_validate(data)


def create_starter_script(tenant) -> None:
    """A new business gets a draft script, its hours (Mon-Fri 9-5), a front-desk queue and a policy."""
    with tenant_scope([tenant.id]):
        defn = starter_definition(tenant)
        services.tenant_settings_import(tenant=tenant, defn=defn)
        services.flow_create_from_definition(tenant=tenant, defn=defn)


def script_step(tenant) -> dict:
    with tenant_scope([tenant.id]):
        flows = list(Flow.objects.all())
    published = any(f.published_version_id for f in flows)
    url = reverse("admin:flows_flow_change", args=[flows[0].pk]) if flows else reverse("admin:flows_flow_changelist")
    return {
        "key": "script",
        "title": "Review and publish your script",
        "done": published,
        "text": "Your AI answers only with the words you approve. Check the starter answers, try it in the "
        "simulator, then publish."
        if not published
        else "Your script is live. Improve it any time in Settings.",
        "url": url,
        "action": "Open your script",
    }
