"""Websocket routes. Staff sockets derive from tenants.consumers.TenantScopedConsumer (session auth,
same-origin only); public sockets (the web chat widget) check the tenant's allowed origins."""

from django.urls import path

from agents.chat_urls import websocket_urlpatterns as chat_websocket_urlpatterns
from agents.urls import websocket_urlpatterns as agents_websocket_urlpatterns
from tenants.consumers import TenantEventsConsumer

websocket_urlpatterns = [
    path("ws/t/<slug:tenant_slug>/events/", TenantEventsConsumer.as_asgi(), name="ws-tenant-events"),
    *agents_websocket_urlpatterns,
]

# Public sockets (anonymous web-chat visitors on customers' sites; each checks its own Origin
# against the tenant's allowed sites). Never wrap these in AllowedHostsOriginValidator.
public_websocket_urlpatterns = [*chat_websocket_urlpatterns]
