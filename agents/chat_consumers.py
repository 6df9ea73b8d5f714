"""The public chat socket (``/ws/chat/<public_key>/``) for the website widget's anonymous visitors.

Not a ``TenantScopedConsumer`` (there is no signed-in user): the tenant comes from the widget's
public key, looked up unscoped once at connect, and every database call then runs inside
``tenant_scope([site.tenant_id])`` (``self.scoped``). Served by its own router branch without
``AllowedHostsOriginValidator`` (the widget lives on the customer's site); this consumer checks the
Origin against the site's ``allowed_origins`` itself.

Close codes: 4404 unknown key; 4403 disabled site, unpublished script, or an Origin not allowed.

Client -> server (JSON text frames):
  {"type": "start", "token": "<visitor token or empty>"}   first frame: resume or start the chat
  {"type": "message", "text": "..."}                        (<= 1000 characters)
  {"type": "ping"}
Server -> client:
  {"type": "session", "token": "...", "resumed": bool, "title": "...", "state": "bot"|"waiting"|"agent"|"ended"}
  {"type": "history", "messages": [...]}                    on resume: the transcript, from the database
  {"type": "message", "from": "bot"|"agent", "text": "...", "name"?: "..."}
  {"type": "status", "state": "waiting"|"agent"|"ended", "text": "..."}
  {"type": "error", "code": "invalid"|"too_long"|"slow_down"|"unavailable", "message": "..."}
  {"type": "pong"}
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from agents import webchat
from tenants.consumers import CLOSE_FORBIDDEN, CLOSE_NOT_FOUND
from tenants.scoping import tenant_scope

#: The visitor's address opened too many chats this minute (like HTTP 429).
CLOSE_TOO_MANY = 4429

logger = logging.getLogger("switchboard.agents.webchat")


def _header(scope: dict, name: bytes) -> str:
    for key, value in scope.get("headers") or []:
        if key.lower() == name:
            return value.decode("latin1")
    return ""


class ChatConsumer(AsyncJsonWebsocketConsumer):
    site = None
    conversation_id: int | None = None
    group: str | None = None

    async def connect(self) -> None:
        key = self.scope["url_route"]["kwargs"]["public_key"]
        site = await database_sync_to_async(webchat.site_for_key)(key)
        if site is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        origin = _header(self.scope, b"origin")
        own = webchat.own_origins(_header(self.scope, b"host"))
        if not site.enabled or site.flow.published_version_id is None:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        if not webchat.origin_allowed(site, origin, own_origins=own):
            logger.info("chat socket from an origin not allowed", extra={"site_id": site.pk, "origin": origin[:200]})
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.site = site
        self.bucket = webchat.Bucket()
        self.ip = (self.scope.get("client") or ("", 0))[0] or ""
        await self.accept()
        if not await database_sync_to_async(webchat.ip_allows)(self.ip, "connect"):
            await self.send_error("slow_down", webchat.TOO_MANY_CHATS_MESSAGE)
            await self.close(code=CLOSE_TOO_MANY)
            return

    async def disconnect(self, code: int) -> None:
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)
        if self.conversation_id is not None:
            await database_sync_to_async(webchat.visitor_disconnected)(
                tenant_id=self.site.tenant_id, conversation_id=self.conversation_id
            )

    async def scoped(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        tenant_id = self.site.tenant_id

        def run():
            with tenant_scope([tenant_id]):
                return fn(*args, **kwargs)

        return await database_sync_to_async(run)()

    async def send_error(self, code: str, message: str) -> None:
        await self.send_json({"type": "error", "code": code, "message": message})

    # --- frames ----------------------------------------------------------------------------------
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        if text_data is None or len(text_data) > 4 * webchat.MAX_MESSAGE_CHARS + 200:
            if text_data is not None:
                await self.send_error("too_long", webchat.TOO_LONG_MESSAGE)
            else:
                await self.send_error("invalid", webchat.INVALID_MESSAGE)
            return
        try:
            content = json.loads(text_data)
        except ValueError:
            await self.send_error("invalid", webchat.INVALID_MESSAGE)
            return
        if not isinstance(content, dict):
            await self.send_error("invalid", webchat.INVALID_MESSAGE)
            return
        await self.receive_json(content)

    async def receive_json(self, content: dict, **kwargs: Any) -> None:
        kind = content.get("type")
        if kind == "ping":
            await self.send_json({"type": "pong"})
        elif kind == "start":
            if self.conversation_id is None:
                token = content.get("token")
                await self.start(token if isinstance(token, str) else None)
        elif kind == "message":
            await self.on_message(content.get("text"))
        else:
            await self.send_error("invalid", webchat.INVALID_MESSAGE)

    async def start(self, token: str | None) -> None:
        try:
            opened = await self.scoped(webchat.chat_open, site=self.site, token=token)
        except LookupError:
            await self.send_error("unavailable", webchat.UNAVAILABLE_MESSAGE)
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.conversation_id = opened.conversation.pk
        await database_sync_to_async(webchat.visitor_connected)(conversation_id=self.conversation_id)
        self.group = webchat.chat_group(self.conversation_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.send_json(
            {
                "type": "session",
                "token": opened.token,
                "resumed": opened.resumed,
                "title": self.site.title,
                "state": opened.state,
            }
        )
        if opened.resumed:
            await self.send_json({"type": "history", "messages": opened.messages})
        else:
            for message in opened.messages:
                await self.send_json(message)

    async def on_message(self, text: Any) -> None:
        if not isinstance(text, str) or not text.strip():
            await self.send_error("invalid", "Please type a message first.")
            return
        text = text.strip()
        if len(text) > webchat.MAX_MESSAGE_CHARS:
            await self.send_error("too_long", webchat.TOO_LONG_MESSAGE)
            return
        if (
            not self.bucket.allow()
            or not await database_sync_to_async(webchat.ip_allows)(self.ip, "message")
            or not await database_sync_to_async(webchat.site_allows)(self.site)
        ):
            await self.send_error("slow_down", webchat.SLOW_DOWN_MESSAGE)
            return
        if self.conversation_id is None:
            await self.start(None)
            if self.conversation_id is None:
                return
        for message in await self.scoped(webchat.chat_visitor_message, conversation_id=self.conversation_id, text=text):
            await self.send_json(message)

    # --- pushes from the agent's side (group chat.<conversation id>) -------------------------------
    async def chat_push(self, event: dict) -> None:
        await self.send_json(event["message"])
