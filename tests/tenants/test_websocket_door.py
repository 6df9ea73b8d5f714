"""The websocket door: session auth, origin check, and another tenant's stream is closed as 404."""

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore

from contactcenter.asgi import application
from tenants.consumers import CLOSE_NOT_FOUND, CLOSE_UNAUTHENTICATED, tenant_group

pytestmark = pytest.mark.django_db(transaction=True)
ORIGIN = (b"origin", b"http://127.0.0.1")


@database_sync_to_async
def session_cookie_for(user) -> bytes:
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    return f"sessionid={session.session_key}".encode()


async def connect(path, user=None, origin=ORIGIN):
    headers = [origin] if origin else []
    if user is not None:
        headers.append((b"cookie", await session_cookie_for(user)))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await communicator.connect()
    return communicator, connected, code


async def test_member_receives_their_tenants_events(alice, tenant_a):
    communicator, connected, _ = await connect(f"/ws/t/{tenant_a.slug}/events/", alice)
    assert connected
    assert (await communicator.receive_json_from())["type"] == "hello"
    await get_channel_layer().group_send(
        tenant_group(tenant_a.id), {"type": "tenant.event", "event": {"type": "ping.test", "n": 1}}
    )
    assert await communicator.receive_json_from(timeout=3) == {"type": "ping.test", "n": 1}
    await communicator.disconnect()


async def test_another_tenants_stream_is_closed_as_not_found(charlie, tenant_a):
    communicator, connected, code = await connect(f"/ws/t/{tenant_a.slug}/events/", charlie)
    assert not connected
    assert code == CLOSE_NOT_FOUND


async def test_agency_agent_reaches_covered_tenant_until_coverage_is_revoked(nina, tenant_a, coverage_a):
    from tenants.services import coverage_revoke

    communicator, connected, _ = await connect(f"/ws/t/{tenant_a.slug}/events/", nina)
    assert connected
    await communicator.disconnect()
    await database_sync_to_async(coverage_revoke)(coverage=coverage_a)
    _, connected, code = await connect(f"/ws/t/{tenant_a.slug}/events/", nina)
    assert not connected and code == CLOSE_NOT_FOUND


async def test_anonymous_socket_is_refused(tenant_a):
    _, connected, code = await connect(f"/ws/t/{tenant_a.slug}/events/")
    assert not connected and code == CLOSE_UNAUTHENTICATED


async def test_socket_without_origin_is_refused(alice, tenant_a):
    _, connected, _ = await connect(f"/ws/t/{tenant_a.slug}/events/", alice, origin=None)
    assert not connected


async def test_foreign_origin_is_refused(alice, tenant_a):
    _, connected, _ = await connect(
        f"/ws/t/{tenant_a.slug}/events/", alice, origin=(b"origin", b"https://evil.example")
    )
    assert not connected
