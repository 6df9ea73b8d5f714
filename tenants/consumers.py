"""Websocket door to the tenant scope.

``TenantScopedConsumer`` authenticates by session (AuthMiddlewareStack), computes the tenants the
user can act for at connect, and runs every database call inside that scope. A socket for a
tenant the user cannot act for is closed with code 4404 (the websocket form of "not found").

``TenantEventsConsumer`` is the generic per-tenant event stream (``/ws/t/<slug>/events/``); the
console and wallboard build on the same base.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from tenants.scoping import tenant_scope
from tenants.selectors import TenantAccess, tenant_access_for_user

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404


def tenant_group(tenant_id: int) -> str:
    return f"tenant.{tenant_id}"


class TenantScopedConsumer(AsyncJsonWebsocketConsumer):
    access: dict[int, TenantAccess]

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.access = await database_sync_to_async(tenant_access_for_user)(user)
        await self.connect_scoped()

    async def connect_scoped(self) -> None:
        await self.accept()

    async def scoped(self, fn: Callable[..., Any], *args: Any, tenant_ids=None, **kwargs: Any) -> Any:
        """Run a synchronous database function inside the tenants this socket may act for."""
        ids = list(self.access) if tenant_ids is None else list(tenant_ids)

        def run():
            with tenant_scope(ids):
                return fn(*args, **kwargs)

        return await database_sync_to_async(run)()


class TenantEventsConsumer(TenantScopedConsumer):
    """Pushes a tenant's events (``event.*`` group messages) to a member's browser."""

    async def connect_scoped(self) -> None:
        slug = self.scope["url_route"]["kwargs"]["tenant_slug"]
        chosen = next((a for a in self.access.values() if a.slug == slug), None)
        if chosen is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.tenant_access = chosen
        self.group = tenant_group(chosen.tenant_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json({"type": "hello", "tenant": chosen.slug, "role": chosen.role})

    async def disconnect(self, code: int) -> None:
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: dict, **kwargs: Any) -> None:
        if content.get("type") == "ping":
            await self.send_json({"type": "pong"})
        else:
            await self.send_json({"type": "error", "message": 'Unknown message type; send {"type": "ping"}.'})

    async def tenant_event(self, message: dict) -> None:
        if text := message.get("text"):  # encoded once by agents.realtime.publish
            await self.send(text_data=text)
        else:
            await self.send_json(message["event"])
