"""Web chat: the public widget socket, its per-site origin check, one engine turn per message recorded
like a call, escalation into the same queues, the agent's live takeover, limits, and isolation.

The sockets go through a router built the way contactcenter/asgi.py mounts it: the chat route in a
branch of its own (no AllowedHostsOriginValidator, no session), everything else unchanged behind it.
"""

from __future__ import annotations

import json

import pytest
from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from channels.testing import WebsocketCommunicator
from django.core.cache import cache
from django.urls import re_path
from django.utils import timezone

from agents import webchat
from agents.chat_urls import websocket_urlpatterns as chat_websocket_urlpatterns
from agents.models import ChatSite, Escalation
from agents.services import escalation_accept
from contactcenter.routing import websocket_urlpatterns
from conversations.models import Conversation, Turn
from flows.services import flow_publish
from tenants.scoping import tenant_scope, unscoped
from tests.agents.test_routing import make_ready
from tests.factories import make_flow

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = "https://brightsmile.example"
GREETING = "Hello, thanks for calling."
MENU = "How can I help?"

# The proposed contactcenter/asgi.py websocket branch.
application = URLRouter(
    [
        *chat_websocket_urlpatterns,
        re_path(r"", AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))),
    ]
)


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()
    yield
    cache.clear()


def _make_site(tenant, user, **extra) -> ChatSite:
    with tenant_scope([tenant.id]):
        flow = make_flow(tenant, name=f"Chat line {tenant.slug}")
        flow_publish(flow=flow, user=user)
        return ChatSite.objects.create(
            tenant=tenant, flow=flow, title="Chat with Bright Smile", allowed_origins=ORIGIN + "\n", **extra
        )


@pytest.fixture
def site(tenant_a, alice):
    return _make_site(tenant_a, alice)


async def open_chat(site_or_key, *, origin: str | None = ORIGIN, token: str | None = None, start: bool = True):
    key = site_or_key if isinstance(site_or_key, str) else site_or_key.public_key
    headers = [(b"origin", origin.encode())] if origin else []
    communicator = WebsocketCommunicator(application, f"/ws/chat/{key}/", headers=headers)
    connected, code = await communicator.connect()
    if connected and start:
        await communicator.send_json_to({"type": "start", "token": token})
    return communicator, connected, code


async def receive_until(communicator, predicate, limit: int = 10) -> list[dict]:
    seen = []
    for _ in range(limit):
        message = await communicator.receive_json_from(timeout=3)
        seen.append(message)
        if predicate(message):
            return seen
    raise AssertionError(f"never received the expected message; got {seen}")


async def opening(communicator) -> tuple[dict, list[dict]]:
    session = await communicator.receive_json_from(timeout=3)
    assert session["type"] == "session"
    messages = await receive_until(communicator, lambda m: m.get("text") == MENU)
    return session, messages


async def say(communicator, text: str) -> None:
    await communicator.send_json_to({"type": "message", "text": text})


@database_sync_to_async
def turns_of(tenant_id: int) -> list[Turn]:
    with tenant_scope([tenant_id]):
        return list(
            Turn.objects.select_related("conversation")
            .filter(conversation__channel="chat")
            .order_by("conversation_id", "seq")
        )


# --- the door ----------------------------------------------------------------------------------------
async def test_allowed_origin_connects_and_gets_the_greeting(site):
    communicator, connected, _ = await open_chat(site)
    assert connected
    session, messages = await opening(communicator)
    assert session["title"] == "Chat with Bright Smile" and session["resumed"] is False and session["token"]
    assert [m["text"] for m in messages] == [GREETING, MENU]
    assert all(m == {"type": "message", "from": "bot", "text": m["text"]} for m in messages)
    [turn] = await turns_of(site.tenant_id)
    assert turn.event == "start" and turn.conversation.channel == "chat"
    await communicator.disconnect()


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "http://brightsmile.example",  # scheme must match
        "https://brightsmile.example:8443",  # port must match
        "https://www.brightsmile.example",
        None,
    ],
)
async def test_foreign_origin_is_refused_with_4403(site, origin):
    _, connected, code = await open_chat(site, origin=origin)
    assert not connected and code == 4403


async def test_unknown_key_is_refused_with_4404(site):
    _, connected, code = await open_chat("wk_does-not-exist")
    assert not connected and code == 4404


async def test_disabled_site_is_refused_with_4403(tenant_a, alice):
    disabled = await database_sync_to_async(_make_site)(tenant_a, alice, enabled=False)
    _, connected, code = await open_chat(disabled)
    assert not connected and code == 4403


async def test_staff_routes_keep_the_host_origin_check(site, alice, tenant_a):
    communicator = WebsocketCommunicator(
        application, f"/ws/t/{tenant_a.slug}/events/", headers=[(b"origin", ORIGIN.encode())]
    )
    connected, _ = await communicator.connect()
    assert not connected


# --- the engine through the same recording path as calls ----------------------------------------------------
async def test_a_question_is_answered_from_the_faq(site):
    communicator, _, _ = await open_chat(site)
    await opening(communicator)
    await say(communicator, "is there parking?")
    seen = await receive_until(communicator, lambda m: "parking" in m.get("text", "").lower())
    assert seen[-1]["from"] == "bot" and seen[-1]["text"] == "Free parking is behind the building."
    turns = await turns_of(site.tenant_id)
    assert turns[-1].utterance == "is there parking?" and "Free parking" in turns[-1].reply
    await communicator.disconnect()


async def test_asking_for_a_person_escalates_into_the_queue_and_the_agent_takes_over(site, tenant_a, bob):
    @database_sync_to_async
    def ready():
        make_ready(bob, now=timezone.now())

    await ready()
    communicator, _, _ = await open_chat(site)
    await opening(communicator)
    await say(communicator, "I want to speak to a person")
    seen = await receive_until(communicator, lambda m: m.get("type") == "status")
    assert seen[-1]["state"] == "waiting"
    assert any(m.get("text") == "Let me get someone." for m in seen)

    @database_sync_to_async
    def escalation_and_accept():
        with tenant_scope([tenant_a.id]):
            escalation = Escalation.objects.select_related("queue", "conversation").get()
            accepted = escalation_accept(escalation_id=escalation.pk, agent=bob, now=timezone.now())
            return escalation, accepted

    escalation, accepted = await escalation_and_accept()
    assert escalation.queue.name == "front-desk" and escalation.conversation.channel == "chat"
    assert escalation.reason_code == "caller_requested_human" and accepted.agent_id == bob.pk

    # The agent writes: recorded as an agent turn, and it reaches the visitor live.
    @database_sync_to_async
    def agent_says(text):
        with tenant_scope([tenant_a.id]):
            return webchat.chat_agent_say(escalation=escalation, agent=bob, text=text)

    turn = await agent_says("Hi, I can help with that.")
    assert turn.event == "agent" and turn.reply == "Hi, I can help with that."
    joined = await communicator.receive_json_from(timeout=3)
    assert joined["type"] == "status" and joined["state"] == "agent"
    message = await communicator.receive_json_from(timeout=3)
    assert message["from"] == "agent" and message["text"] == "Hi, I can help with that."

    # The visitor answers: recorded, and forwarded to the agent's console group.
    layer = get_channel_layer()
    console = await layer.new_channel()
    await layer.group_add(f"agent.{bob.pk}", console)
    await say(communicator, "Thanks! Can I move my appointment?")
    forwarded = await layer.receive(console)
    assert forwarded["type"] == "tenant.event"
    assert forwarded["event"]["type"] == "chat.message" and forwarded["event"]["escalation_id"] == escalation.pk
    assert forwarded["event"]["text"] == "Thanks! Can I move my appointment?"
    turns = await turns_of(site.tenant_id)
    assert [t.event for t in turns][-2:] == ["agent", "visitor"]
    await communicator.disconnect()


async def test_reconnect_resumes_the_same_conversation_with_its_transcript(site):
    communicator, _, _ = await open_chat(site)
    session, _ = await opening(communicator)
    await say(communicator, "is there parking?")
    await receive_until(communicator, lambda m: "parking" in m.get("text", "").lower())
    await communicator.disconnect()

    again, connected, _ = await open_chat(site, token=session["token"])
    assert connected
    resumed = await again.receive_json_from(timeout=3)
    assert resumed["type"] == "session" and resumed["resumed"] is True
    history = await again.receive_json_from(timeout=3)
    assert history["type"] == "history"
    assert [(m.get("from"), m.get("text")) for m in history["messages"]] == [
        ("bot", GREETING),
        ("bot", MENU),
        ("visitor", "is there parking?"),
        ("bot", "Free parking is behind the building."),
        *[("bot", m["text"]) for m in history["messages"][4:]],
    ]

    @database_sync_to_async
    def conversations():
        with unscoped("test assertions"):
            return Conversation.objects.filter(channel="chat").count()

    assert await conversations() == 1
    await again.disconnect()


# --- limits ---------------------------------------------------------------------------------------------------
async def test_oversize_message_is_refused_politely_and_not_recorded(site):
    communicator, _, _ = await open_chat(site)
    await opening(communicator)
    before = len(await turns_of(site.tenant_id))
    await say(communicator, "x" * 1001)
    error = await communicator.receive_json_from(timeout=3)
    assert error["type"] == "error" and error["code"] == "too_long" and "1000 characters" in error["message"]
    assert len(await turns_of(site.tenant_id)) == before
    await say(communicator, "is there parking?")  # the socket stays usable
    await receive_until(communicator, lambda m: "parking" in m.get("text", "").lower())
    await communicator.disconnect()


async def test_invalid_json_is_an_error_and_the_socket_stays_open(site):
    communicator, _, _ = await open_chat(site)
    await opening(communicator)
    await communicator.send_to(text_data="{not json")
    error = await communicator.receive_json_from(timeout=3)
    assert error["type"] == "error" and error["code"] == "invalid"
    await communicator.send_to(text_data=json.dumps({"type": "ping"}))
    assert await communicator.receive_json_from(timeout=3) == {"type": "pong"}
    await communicator.disconnect()


async def test_too_many_messages_get_a_slow_down_message(site):
    communicator, _, _ = await open_chat(site)
    await opening(communicator)
    for _ in range(webchat.RATE_BURST + 1):
        await say(communicator, "hello")
    errors = []
    for _ in range(40):
        message = await communicator.receive_json_from(timeout=3)
        if message["type"] == "error":
            errors.append(message)
            break
    assert errors and errors[0]["code"] == "slow_down"
    assert errors[0]["message"] == webchat.SLOW_DOWN_MESSAGE
    await communicator.disconnect()


def test_the_per_site_limit_is_shared_through_the_cache(site):
    assert all(webchat.site_allows(site, limit=3) for _ in range(3))
    assert not webchat.site_allows(site, limit=3)


# --- isolation ----------------------------------------------------------------------------------------------
async def test_another_sites_token_never_resumes_this_tenants_conversation(site, tenant_b, charlie):
    communicator, _, _ = await open_chat(site)
    session, _ = await opening(communicator)
    await say(communicator, "is there parking?")
    await receive_until(communicator, lambda m: "parking" in m.get("text", "").lower())
    await communicator.disconnect()

    other_site = await database_sync_to_async(_make_site)(tenant_b, charlie)
    other, connected, _ = await open_chat(other_site, token=session["token"])
    assert connected
    fresh = await other.receive_json_from(timeout=3)
    assert fresh["type"] == "session" and fresh["resumed"] is False and fresh["token"] != session["token"]
    shown = await receive_until(other, lambda m: m.get("text") == MENU)
    assert all(m["type"] != "history" and "parking" not in m.get("text", "").lower() for m in shown)

    @database_sync_to_async
    def chats():
        with unscoped("test assertions"):
            return sorted(Conversation.objects.filter(channel="chat").values_list("tenant_id", flat=True))

    assert await chats() == sorted([site.tenant_id, other_site.tenant_id])
    await other.disconnect()


def test_a_forged_or_foreign_token_resolves_to_nothing(site, tenant_b, charlie):
    other_site = _make_site(tenant_b, charlie)
    with tenant_scope([site.tenant_id]):
        opened = webchat.chat_open(site=site)
        assert webchat.conversation_for_token(site, opened.token).pk == opened.conversation.pk
        assert webchat.conversation_for_token(site, opened.token + "x") is None
    with tenant_scope([other_site.tenant_id]):
        assert webchat.conversation_for_token(other_site, opened.token) is None


def test_origin_lines_are_validated(tenant_a, alice):
    from django.core.exceptions import ValidationError

    chat_site = _make_site(tenant_a, alice)
    chat_site.allowed_origins = "https://ok.example\nhttps://bad.example/path\nnot a url"
    with tenant_scope([tenant_a.id]), pytest.raises(ValidationError) as err:
        chat_site.full_clean()
    assert len(err.value.message_dict["allowed_origins"]) == 2


# --- Switchboard's own origin, the demo page, the embed code ---------------------------------------------
async def test_switchboards_own_origin_is_allowed_for_the_demo_page(site, settings):
    communicator, connected, _ = await open_chat(site, origin=settings.SITE_URL)
    assert connected
    await opening(communicator)
    await communicator.disconnect()


def _urlpatterns():
    from django.urls import include, path

    from contactcenter.urls import urlpatterns as project

    return [path("", include("agents.chat_urls")), *project]


urlpatterns = _urlpatterns()  # this module doubles as the URLconf of the demo page tests (chat_urls mounted)


@pytest.mark.urls(__name__)
def test_demo_page_loads_the_widget_for_its_own_business_only(site, client_for, alice, charlie, bob, tenant_a):
    url = f"/t/{tenant_a.slug}/chat/{site.pk}/demo/"
    page = client_for(alice).get(url)
    assert page.status_code == 200
    body = page.content.decode()
    assert f'data-switchboard-key="{site.public_key}"' in body and "/static/js/widget.js" in body
    assert client_for(charlie).get(url).status_code == 404
    assert client_for(bob).get(url).status_code == 403


def test_embed_snippet_is_one_stable_script_tag(site, settings):
    snippet = webchat.embed_snippet(site)
    assert snippet == (
        f'<script src="{settings.SITE_URL}/static/js/widget.js" data-switchboard-key="{site.public_key}" defer></script>'
    )


def test_after_a_voicemail_offer_the_visitor_leaves_details_as_one_lead(site):
    from conversations.models import Lead
    from flows.engine import ConversationState

    with tenant_scope([site.tenant_id]):
        opened = webchat.chat_open(site=site)
        finished = ConversationState(finished=True, outcome="voicemail", current_step="vm")
        Conversation.objects.filter(pk=opened.conversation.pk).update(state=finished.to_json())
        shown = webchat.chat_visitor_message(conversation_id=opened.conversation.pk, text="Pat, 555 0100")
        again = webchat.chat_visitor_message(conversation_id=opened.conversation.pk, text="thanks")
        [lead] = Lead.objects.filter(conversation_id=opened.conversation.pk)
    assert shown == [{"type": "message", "from": "bot", "text": webchat.DETAILS_THANKS}] == again
    assert lead.fields["message"] == "Pat, 555 0100" and lead.fields["channel"] == "chat"


def test_after_a_callback_offer_a_phone_number_in_chat_promises_the_callback(site):
    from conversations.models import Callback
    from flows.engine import ConversationState

    with tenant_scope([site.tenant_id]):
        opened = webchat.chat_open(site=site)
        finished = ConversationState(finished=True, outcome="callback", current_step="cb")
        Conversation.objects.filter(pk=opened.conversation.pk).update(state=finished.to_json())
        vague = webchat.chat_visitor_message(conversation_id=opened.conversation.pk, text="call me please")
        assert vague == [{"type": "message", "from": "bot", "text": webchat.DETAILS_THANKS}]
        assert not Callback.objects.exists()
        shown = webchat.chat_visitor_message(conversation_id=opened.conversation.pk, text="Pat Lee, +1 555 555 0123")
        [callback] = Callback.objects.filter(conversation_id=opened.conversation.pk)
    assert callback.phone == "+15555550123" and callback.name == "Pat Lee" and callback.source == "flow"
    assert shown[0]["text"].startswith("Thank you. We'll call you back at +15555550123 ")


def test_voicemail_and_callback_prompts_offer_to_leave_details():
    from flows.engine import Reason, Voicemail

    shown = webchat.messages_for([Voicemail(prompt="Leave a message.", reason=Reason(code="vm", explanation="x"))])
    assert [m["text"] for m in shown] == ["Leave a message.", webchat.LEAVE_DETAILS_TEXT]


async def test_the_agent_accepts_and_types_from_the_console_and_the_visitor_sees_it(site, tenant_a, bob):
    """The real ASGI app: visitor on the public chat socket, agent on the staff console socket."""
    from contactcenter.asgi import application as asgi_application
    from tests.tenants.test_websocket_door import session_cookie_for

    @database_sync_to_async
    def ready():
        make_ready(bob, now=timezone.now())

    await ready()
    visitor = WebsocketCommunicator(
        asgi_application, f"/ws/chat/{site.public_key}/", headers=[(b"origin", ORIGIN.encode())]
    )
    connected, _ = await visitor.connect()
    assert connected
    await visitor.send_json_to({"type": "start"})
    await opening(visitor)
    await say(visitor, "I want to speak to a person")
    await receive_until(visitor, lambda m: m.get("type") == "status")

    console = WebsocketCommunicator(
        asgi_application,
        "/ws/console/",
        headers=[(b"origin", b"http://127.0.0.1"), (b"cookie", await session_cookie_for(bob))],
    )
    connected, _ = await console.connect()
    assert connected

    @database_sync_to_async
    def escalation_id():
        with tenant_scope([tenant_a.id]):
            return Escalation.objects.get().pk

    eid = await escalation_id()
    await console.send_json_to({"type": "offer.accept", "escalation_id": eid})
    await console.send_json_to({"type": "chat.send", "escalation_id": eid, "text": "Hi, this is Bob."})
    for _ in range(20):
        reply = await console.receive_json_from(timeout=5)
        if reply.get("action") == "chat.send":
            break
        assert reply.get("type") != "error", reply
    seen = await receive_until(visitor, lambda m: m.get("from") == "agent")
    assert seen[-1]["text"] == "Hi, this is Bob."
    await console.send_json_to({"type": "chat.send", "escalation_id": eid + 999, "text": "nope"})
    for _ in range(20):
        reply = await console.receive_json_from(timeout=5)
        if reply.get("type") == "error":
            break
    assert reply["code"] == "not_found"
    await visitor.disconnect()
    await console.disconnect()


async def _waiting_chat(site, tabs: int = 1):
    """A visitor (in `tabs` tabs of one conversation) waiting for an agent."""
    first, connected, _ = await open_chat(site)
    assert connected
    session = await first.receive_json_from()
    while session.get("type") != "session":
        session = await first.receive_json_from()
    others = []
    for _ in range(tabs - 1):
        tab, ok, _ = await open_chat(site, token=session["token"])
        assert ok
        while (await tab.receive_json_from()).get("type") != "session":
            pass
        others.append(tab)

    @database_sync_to_async
    def escalate():
        from tests.factories import make_escalation

        with unscoped("test setup"):
            conversation = Conversation.objects.order_by("-id").first()
        with tenant_scope([site.tenant_id]):
            return make_escalation(site.tenant, conversation=conversation)

    return [first, *others], await escalate()


@database_sync_to_async
def _state(escalation):
    with unscoped("test assertions"):
        return Escalation.objects.get(pk=escalation.pk).state


async def test_a_visitor_who_closes_the_chat_while_waiting_is_abandoned(site):
    [tab], escalation = await _waiting_chat(site)
    await tab.disconnect()  # the check runs a minute later; tests run tasks at once
    assert await _state(escalation) == "abandoned"


async def test_closing_one_of_two_tabs_keeps_the_visitor_waiting(site):
    [first, second], escalation = await _waiting_chat(site, tabs=2)
    await first.disconnect()
    assert await _state(escalation) == "waiting"
    await second.disconnect()
    assert await _state(escalation) == "abandoned"


async def test_a_visitor_who_comes_back_in_time_keeps_the_place(site):
    [tab], escalation = await _waiting_chat(site)
    # Back before the check: the socket count is up again, so the check finds the visitor present.
    await database_sync_to_async(webchat.visitor_connected)(conversation_id=escalation.conversation_id)
    await tab.disconnect()
    assert await _state(escalation) == "waiting"
    assert await database_sync_to_async(webchat.chat_visitor_gone)(conversation_id=escalation.conversation_id) is False


async def test_the_gone_check_with_another_tenants_id_touches_nothing(site, tenant_b):
    from agents.tasks import chat_visitor_gone_task

    [tab], escalation = await _waiting_chat(site, tabs=1)
    await database_sync_to_async(webchat.visitor_connected)(conversation_id=escalation.conversation_id)
    await database_sync_to_async(cache.delete)(f"webchat:sockets:{escalation.conversation_id}")
    gone = await database_sync_to_async(chat_visitor_gone_task)(
        tenant_id=tenant_b.id, conversation_id=escalation.conversation_id
    )
    assert gone is False and await _state(escalation) == "waiting"
    await database_sync_to_async(webchat.visitor_connected)(conversation_id=escalation.conversation_id)
    await tab.disconnect()


async def test_one_address_cannot_open_chat_after_chat(site, monkeypatch):
    monkeypatch.setattr(webchat, "RATE_IP_CONNECTS_PER_MINUTE", 2)

    async def connect_from(ip):
        communicator = WebsocketCommunicator(
            application, f"/ws/chat/{site.public_key}/", headers=[(b"origin", ORIGIN.encode())]
        )
        communicator.scope["client"] = (ip, 50000)
        connected, _ = await communicator.connect()
        assert connected
        return communicator

    first, second = await connect_from("203.0.113.7"), await connect_from("203.0.113.7")
    third = await connect_from("203.0.113.7")
    refused = await third.receive_json_from()
    assert refused == {"type": "error", "code": "slow_down", "message": webchat.TOO_MANY_CHATS_MESSAGE}
    assert (await third.receive_output())["code"] == 4429
    other = await connect_from("198.51.100.9")  # another address is not affected
    await other.send_json_to({"type": "ping"})
    assert await other.receive_json_from() == {"type": "pong"}
    for c in (first, second, other):
        await c.disconnect()


async def test_one_address_cannot_flood_messages_across_chats(site, monkeypatch):
    monkeypatch.setattr(webchat, "RATE_IP_MESSAGES_PER_MINUTE", 2)
    tab, connected, _ = await open_chat(site, start=False)
    assert connected
    for _ in range(2):
        await tab.send_json_to({"type": "message", "text": "hello"})
    await tab.send_json_to({"type": "message", "text": "hello again"})
    seen = [await tab.receive_json_from() for _ in range(8)]
    assert {"type": "error", "code": "slow_down", "message": webchat.SLOW_DOWN_MESSAGE} in seen
    await tab.disconnect()
