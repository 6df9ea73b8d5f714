"""Websocket routes. Every consumer derives from tenants.consumers.TenantScopedConsumer."""

from django.urls import path

from agents.urls import websocket_urlpatterns as agents_websocket_urlpatterns
from tenants.consumers import TenantEventsConsumer

websocket_urlpatterns = [
    path("ws/t/<slug:tenant_slug>/events/", TenantEventsConsumer.as_asgi(), name="ws-tenant-events"),
    *agents_websocket_urlpatterns,
]
