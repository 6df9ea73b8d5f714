"""Websocket routes. Every consumer derives from tenants.consumers.TenantScopedConsumer."""

from django.urls import path

from tenants.consumers import TenantEventsConsumer

websocket_urlpatterns = [
    path("ws/t/<slug:tenant_slug>/events/", TenantEventsConsumer.as_asgi(), name="ws-tenant-events"),
]
