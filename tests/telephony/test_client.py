"""The outbound voice client: the real SDK wrapper (HTTP faked at the requests session) and the fake."""

from __future__ import annotations

import json
import threading
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from telephony import client as client_mod
from telephony.client import (
    AppUserTarget,
    CacheIdempotencyStore,
    CallResult,
    FakeVoiceClient,
    IdempotencyStore,
    InMemoryIdempotencyStore,
    MessageResult,
    PhoneTarget,
    TelephonyError,
    VoiceClient,
    VonageVoiceClient,
    get_voice_client,
    reset_fake_client,
)
from telephony.ncco import NccoError, apology_ncco

EVENT_URL = "https://sb.example.com/voice/event/agent-leg"
CALL_RESPONSE = {"uuid": "call-uuid-1", "status": "started", "direction": "outbound", "conversation_uuid": "CON-1"}


@pytest.fixture(scope="module")
def private_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


class FakeSession:
    """Stands in for the SDK HttpClient's requests.Session: records requests, answers from a queue."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: list[Any] = []

    def answer(self, status: int = 200, body: Any = None) -> None:
        self.answers.append((status, body))

    def raise_(self, exc: Exception) -> None:
        self.answers.append(exc)

    def request(self, **kw: Any) -> requests.Response:
        kw = dict(kw, headers=dict(kw["headers"]))
        if kw.get("json") is not None:
            kw["json"] = json.loads(json.dumps(kw["json"]))  # as it goes on the wire (enums -> strings)
        self.requests.append(kw)
        item = self.answers.pop(0) if self.answers else (200, {})
        if isinstance(item, Exception):
            raise item
        status, body = item
        response = requests.Response()
        response.status_code = status
        response._content = b"" if body is None else json.dumps(body).encode()
        response.url = kw["url"]
        response.headers["Content-Type"] = "application/json"
        return response


@pytest.fixture
def vonage(private_key):
    c = VonageVoiceClient(application_id="app-123", private_key=private_key)
    session = FakeSession()
    c.vonage.http_client._session = session
    return c, session


def test_protocols():
    assert isinstance(FakeVoiceClient(), VoiceClient)
    assert isinstance(InMemoryIdempotencyStore(), IdempotencyStore)
    assert isinstance(CacheIdempotencyStore(), IdempotencyStore)


# ---------------------------------------------------------------- VonageVoiceClient


def test_timeouts_are_always_set(vonage):
    c, session = vonage
    assert c.vonage.http_client.http_client_options.timeout == 7
    assert c.vonage.http_client._timeout == (3.0, 7.0)
    session.answer(200, CALL_RESPONSE)
    c.call_into_conversation(
        idempotency_key="k",
        to="+15550100000",
        from_number="+15550109999",
        conversation_name="room",
        event_url=EVENT_URL,
    )
    assert session.requests[0]["timeout"] == (3.0, 7.0)


def test_call_into_conversation_builds_the_create_call_request(vonage):
    c, session = vonage
    session.answer(200, CALL_RESPONSE)
    result = c.call_into_conversation(
        idempotency_key="esc-1-agent-7",
        to=PhoneTarget("+1 (555) 010-0000"),
        from_number="+15550109999",
        conversation_name="sb-acme-conv-1",
        event_url=EVENT_URL,
    )
    assert result == CallResult(uuid="call-uuid-1", status="started")
    req = session.requests[0]
    assert (req["method"], req["url"]) == ("POST", "https://api.nexmo.com/v1/calls")
    assert req["json"] == {
        "ncco": [{"name": "sb-acme-conv-1", "startOnEnter": True, "endOnExit": True, "action": "conversation"}],
        "to": [{"number": "15550100000", "type": "phone"}],
        "from": {"number": "15550109999", "type": "phone"},
        "event_url": [EVENT_URL],
        "event_method": "POST",
    }
    token = req["headers"]["Authorization"].decode().removeprefix("Bearer ")
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    assert jwt.decode(token, options={"verify_signature": False})["application_id"] == "app-123"


def test_call_into_conversation_is_idempotent(vonage):
    c, session = vonage
    session.answer(200, CALL_RESPONSE)
    kw = {"to": "+15550100000", "from_number": "15550109999", "conversation_name": "room", "event_url": EVENT_URL}
    first = c.call_into_conversation(idempotency_key="same", **kw)
    again = c.call_into_conversation(idempotency_key="same", **kw)
    assert first == again and len(session.requests) == 1
    session.answer(200, {**CALL_RESPONSE, "uuid": "call-uuid-2"})
    assert c.call_into_conversation(idempotency_key="other", **kw).uuid == "call-uuid-2"
    assert len(session.requests) == 2


def test_call_an_app_user(vonage):
    c, session = vonage
    session.answer(201, CALL_RESPONSE)
    result = c.call_into_conversation(
        idempotency_key="k",
        to=AppUserTarget("agent-7"),
        from_number="+15550109999",
        conversation_name="room",
        event_url=EVENT_URL,
    )
    assert result.uuid == "call-uuid-1"
    assert session.requests[0]["json"] == {
        "to": [{"type": "app", "user": "agent-7"}],
        "from": {"type": "phone", "number": "15550109999"},
        "ncco": [{"action": "conversation", "name": "room", "startOnEnter": True, "endOnExit": True}],
        "event_url": [EVENT_URL],
        "event_method": "POST",
    }


def test_transfer_sends_our_validated_ncco(vonage):
    c, session = vonage
    session.answer(204, None)
    ncco = apology_ncco(None, message="Sorry.", fallback_number="+15550100000")
    c.transfer(uuid="leg-1", ncco=ncco)
    req = session.requests[0]
    assert (req["method"], req["url"]) == ("PUT", "https://api.nexmo.com/v1/calls/leg-1")
    assert req["json"] == {"action": "transfer", "destination": {"type": "ncco", "ncco": ncco}}
    with pytest.raises(NccoError):
        c.transfer(uuid="leg-1", ncco=[{"action": "talk"}])
    assert len(session.requests) == 1


def test_hangup(vonage):
    c, session = vonage
    session.answer(204, None)
    c.hangup(uuid="leg-1")
    req = session.requests[0]
    assert (req["method"], req["url"], req["json"]) == (
        "PUT",
        "https://api.nexmo.com/v1/calls/leg-1",
        {"action": "hangup"},
    )


def test_send_sms_digits_without_plus_and_idempotent(vonage):
    c, session = vonage
    session.answer(202, {"message_uuid": "msg-1"})
    result = c.send_sms(idempotency_key="cb-9", to="+44 7700 900000", from_="+15550109999", text="We'll call you back.")
    assert result == MessageResult(message_uuid="msg-1")
    req = session.requests[0]
    assert (req["method"], req["url"]) == ("POST", "https://api.nexmo.com/v1/messages")
    assert req["json"] == {
        "to": "447700900000",
        "client_ref": "cb-9",
        "from": "15550109999",
        "text": "We'll call you back.",
        "channel": "sms",
        "message_type": "text",
    }
    assert c.send_sms(idempotency_key="cb-9", to="+447700900000", from_="15550109999", text="x") == result
    assert len(session.requests) == 1


def test_sms_alphanumeric_sender(vonage):
    c, session = vonage
    session.answer(202, {"message_uuid": "msg-2"})
    c.send_sms(idempotency_key="k", to="447700900000", from_="Acme", text="Hi")
    assert session.requests[0]["json"]["from"] == "Acme"
    with pytest.raises(TelephonyError):
        c.send_sms(idempotency_key="k2", to="447700900000", from_="Acme Dental Clinic!", text="Hi")


@pytest.mark.parametrize(
    ("answer", "retryable", "status"),
    [
        ((429, {"title": "Too Many Requests"}), True, 429),
        ((500, {"title": "Internal"}), True, 500),
        ((503, None), True, 503),
        ((400, {"title": "Bad Request", "invalid_parameters": []}), False, 400),
        ((401, {"title": "Unauthorized"}), False, 401),
        ((404, {"title": "Not found"}), False, 404),
        (requests.ReadTimeout("read timed out"), True, None),
        (requests.ConnectionError("refused"), True, None),
    ],
)
def test_errors_are_mapped(vonage, answer, retryable, status):
    c, session = vonage
    if isinstance(answer, Exception):
        session.raise_(answer)
    else:
        session.answer(*answer)
    with pytest.raises(TelephonyError) as exc:
        c.call_into_conversation(
            idempotency_key="k",
            to="15550100000",
            from_number="15550109999",
            conversation_name="room",
            event_url=EVENT_URL,
        )
    assert (exc.value.retryable, exc.value.status_code) == (retryable, status)
    # a failure is not remembered: the retry with the same key calls Vonage again
    session.answer(200, CALL_RESPONSE)
    kw = {"to": "15550100000", "from_number": "15550109999", "conversation_name": "room", "event_url": EVENT_URL}
    assert c.call_into_conversation(idempotency_key="k", **kw).uuid == "call-uuid-1"


def test_hangup_and_transfer_errors_are_mapped(vonage):
    c, session = vonage
    session.answer(429, {"title": "Too Many Requests"})
    with pytest.raises(TelephonyError) as exc:
        c.hangup(uuid="leg-1")
    assert exc.value.retryable
    session.answer(400, {"title": "Bad Request"})
    with pytest.raises(TelephonyError) as exc:
        c.transfer(uuid="leg-1", ncco=[{"action": "talk", "text": "hi"}])
    assert not exc.value.retryable


@pytest.mark.parametrize(
    ("to", "from_number"), [("12", "15550109999"), ("15550100000", "not-a-number"), ("", "15550109999")]
)
def test_bad_numbers_fail_before_calling(vonage, to, from_number):
    c, session = vonage
    with pytest.raises(TelephonyError) as exc:
        c.call_into_conversation(
            idempotency_key="k", to=to, from_number=from_number, conversation_name="room", event_url=EVENT_URL
        )
    assert not exc.value.retryable
    assert session.requests == []


def test_with_monkeypatched_sdk_objects(vonage, monkeypatch):
    from vonage_messages import Sms
    from vonage_voice import CreateCallRequest
    from vonage_voice.models.responses import CreateCallResponse

    c, session = vonage
    seen: dict[str, Any] = {}

    def create_call(request):
        seen["call"] = request
        return CreateCallResponse(**CALL_RESPONSE)

    def send(message):
        seen["sms"] = message
        return type("R", (), {"message_uuid": "m-1"})()

    monkeypatch.setattr(c.vonage.voice, "create_call", create_call)
    monkeypatch.setattr(c.vonage.messages, "send", send)
    c.call_into_conversation(
        idempotency_key="k",
        to="+15550100000",
        from_number="+15550109999",
        conversation_name="room",
        event_url=EVENT_URL,
    )
    c.send_sms(idempotency_key="k", to="+15550100000", from_="+15550109999", text="hi")
    assert isinstance(seen["call"], CreateCallRequest)
    assert seen["call"].to[0].number == "15550100000" and seen["call"].from_.number == "15550109999"
    assert isinstance(seen["sms"], Sms) and seen["sms"].to == "15550100000"
    assert session.requests == []


def test_cache_idempotency_store(settings, vonage):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "idem"}}
    c, session = vonage
    c._once.store = CacheIdempotencyStore()
    session.answer(202, {"message_uuid": "msg-1"})
    first = c.send_sms(idempotency_key="k", to="447700900000", from_="15550109999", text="x")
    assert c.send_sms(idempotency_key="k", to="447700900000", from_="15550109999", text="x") == first
    assert len(session.requests) == 1


# ---------------------------------------------------------------- FakeVoiceClient


def test_fake_records_and_deduplicates():
    fake = FakeVoiceClient()
    kw = {"to": "+15550100000", "from_number": "+15550109999", "conversation_name": "room", "event_url": EVENT_URL}
    a = fake.call_into_conversation(idempotency_key="k1", **kw)
    assert fake.call_into_conversation(idempotency_key="k1", **kw) == a
    b = fake.call_into_conversation(idempotency_key="k2", **{**kw, "to": AppUserTarget("agent-7")})
    assert a.uuid != b.uuid and a.status == "started"
    assert a.uuid == "00000000-0000-4000-8001-000000000001"  # deterministic
    assert fake.deduplicated == 1
    assert [c["method"] for c in fake.calls] == ["call_into_conversation", "call_into_conversation"]
    assert fake.calls[0]["to"] == PhoneTarget("15550100000")
    assert fake.calls[0]["from_number"] == "15550109999"
    assert fake.calls[0]["ncco"] == [
        {"action": "conversation", "name": "room", "startOnEnter": True, "endOnExit": True}
    ]
    assert fake.calls[1]["to"] == AppUserTarget("agent-7")

    m = fake.send_sms(idempotency_key="s1", to="+447700900000", from_="Acme", text="Hi")
    assert fake.send_sms(idempotency_key="s1", to="+447700900000", from_="Acme", text="Hi") == m
    fake.transfer(uuid=a.uuid, ncco=[{"action": "talk", "text": "Bye"}])
    fake.hangup(uuid=a.uuid)
    assert [c["method"] for c in fake.calls][2:] == ["send_sms", "transfer", "hangup"]
    assert fake.calls[2]["to"] == "447700900000"


def test_fake_validates_like_the_real_one():
    fake = FakeVoiceClient()
    with pytest.raises(TelephonyError):
        fake.transfer(uuid="x", ncco=[{"action": "talk", "text": "a" * 1501}])
    with pytest.raises(TelephonyError):
        fake.send_sms(idempotency_key="k", to="+1", from_="Acme", text="x")
    with pytest.raises(TelephonyError):
        fake.call_into_conversation(
            idempotency_key="k", to="15550100000", from_number="15550109999", conversation_name=" ", event_url=EVENT_URL
        )
    assert fake.calls == []


def test_fake_fail_next():
    fake = FakeVoiceClient()
    boom = TelephonyError("Vonage answered 429", retryable=True, status_code=429)
    fake.fail_next(boom)
    kw = {"to": "15550100000", "from_number": "15550109999", "conversation_name": "room", "event_url": EVENT_URL}
    with pytest.raises(TelephonyError) as exc:
        fake.call_into_conversation(idempotency_key="k", **kw)
    assert exc.value is boom
    assert fake.calls == [] and fake.failures[0]["error"] is boom
    assert fake.call_into_conversation(idempotency_key="k", **kw).status == "started"  # not remembered as done
    fake.fail_next(RuntimeError("down"))
    with pytest.raises(RuntimeError):
        fake.hangup(uuid="x")
    fake.hangup(uuid="x")
    assert [c["method"] for c in fake.calls] == ["call_into_conversation", "hangup"]


def test_fake_is_thread_safe():
    fake = FakeVoiceClient()
    kw = {"to": "15550100000", "from_number": "15550109999", "conversation_name": "room", "event_url": EVENT_URL}
    results: list[CallResult] = []
    start = threading.Barrier(16)

    def worker(i: int) -> None:
        start.wait()
        results.append(fake.call_into_conversation(idempotency_key=f"k{i % 4}", **kw))
        fake.hangup(uuid=f"leg-{i}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    calls = [c for c in fake.calls if c["method"] == "call_into_conversation"]
    assert len(calls) == 4 and fake.deduplicated == 12
    assert len({r.uuid for r in results}) == 4
    assert len([c for c in fake.calls if c["method"] == "hangup"]) == 16


# ---------------------------------------------------------------- configuration


def test_get_voice_client_defaults_to_the_fake(settings):
    settings.VONAGE_APPLICATION_ID = ""
    settings.VONAGE_CLIENT = ""
    fake = reset_fake_client()
    assert get_voice_client() is fake is get_voice_client()
    fake.hangup(uuid="x")
    assert reset_fake_client() is fake and fake.calls == []
    settings.VONAGE_CLIENT = "fake"
    settings.VONAGE_APPLICATION_ID = "app-123"
    assert get_voice_client() is fake


def test_get_voice_client_vonage(settings, monkeypatch, private_key):
    monkeypatch.setattr(client_mod, "_vonage", None)
    settings.VONAGE_CLIENT = ""
    settings.VONAGE_APPLICATION_ID = "app-123"
    settings.VONAGE_PRIVATE_KEY = private_key.replace("\n", "\\n")  # as it often arrives from an env var
    c = get_voice_client()
    assert isinstance(c, VonageVoiceClient) and get_voice_client() is c
    assert isinstance(c._once.store, CacheIdempotencyStore)
    assert c.vonage.http_client._timeout == (3.0, 7.0)
    monkeypatch.setattr(client_mod, "_vonage", None)
    settings.VONAGE_CLIENT = "twilio"
    with pytest.raises(ValueError, match="VONAGE_CLIENT"):
        get_voice_client()
