"""Admin for the website chat widget: a business's chat sites, with the embed snippet to copy.

Imported from agents/admin.py (``from agents import chat_admin  # noqa: F401``) so it registers.
"""

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from agents.models import ChatSite
from agents.webchat import embed_snippet
from tenants.admin_site import TenantModelAdmin


@admin.register(ChatSite)
class ChatSiteAdmin(TenantModelAdmin):
    list_display = ("title", "flow", "enabled", "public_key", "created_at")
    list_filter = ("enabled",)
    search_fields = ("title", "public_key", "allowed_origins")
    fields = ("title", "flow", "enabled", "greeting", "allowed_origins", "public_key", "embed_code", "created_at")
    readonly_fields = ("public_key", "embed_code", "created_at")

    @admin.display(description="Embed code")
    def embed_code(self, site: ChatSite):
        if not site.pk:
            return "Save the chat site to get its embed code."
        demo = reverse("chat-demo", args=[site.tenant.slug, site.pk]) if _has_demo() else ""
        return format_html(
            "<p>Paste this before &lt;/body&gt; on your website:</p><pre><code>{}</code></pre>{}",
            embed_snippet(site),
            format_html('<p><a href="{}" target="_blank" rel="noopener">Try it on the demo page</a></p>', demo)
            if demo
            else "",
        )


def _has_demo() -> bool:
    from django.urls import NoReverseMatch

    try:
        reverse("chat-demo", args=["x", 1])
    except NoReverseMatch:
        return False
    return True
