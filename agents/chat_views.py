"""The chat widget's demo page: a business's staff try their widget on a page Switchboard serves.

The page's Origin is Switchboard's own, which the chat socket accepts besides the site's listed
origins (``agents.webchat.own_origins``), so the demo works under ``make run`` without configuration.
"""

from __future__ import annotations

from django.http import Http404
from django.shortcuts import render
from django.views.decorators.http import require_GET

from agents.models import ChatSite
from agents.webchat import embed_snippet
from tenants.decorators import tenant_view
from tenants.models import Role


@tenant_view(Role.SUPERVISOR)
@require_GET
def chat_demo(request, tenant_slug: str, pk: int):
    site = ChatSite.objects.select_related("flow").filter(pk=pk, tenant_id=request.tenant_access.tenant_id).first()
    if site is None:
        raise Http404("No such chat site.")
    return render(
        request,
        "agents/chat_demo.html",
        {"site": site, "snippet": embed_snippet(site), "published": site.flow.published_version_id is not None},
    )


chat_demo.isolation_model = ChatSite
