"""The call simulator (telephony/simulator.py), `manage.py call_simulate` and the dashboard's phone simulator.

Every call here goes through the real, signed webhook views: over the Django test client, or in-process
(the dashboard relay). This module is also the URLconf for its tests, so the dashboard pages are mounted
even before contactcenter/urls.py includes telephony.page_urls.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import include, path

import telephony.page_urls
from contactcenter import urls as root_urls
from conversations.models import CallEvent, Conversation, Outcome
from flows.services import flow_publish
from telephony.simulator import (
    COMPLETED,
    LISTENING,
    ON_HOLD,
    CallNotListening,
    CallSimulator,
    DjangoClientTransport,
    InProcessTransport,
    ServerUnreachable,
    SignatureRefused,
    UnknownNumber,
)
from tenants.scoping import tenant_scope, unscoped
from tests.factories import make_flow, make_phone_number

# --- this module doubles as the URLconf (root URLs + the dashboard pages, once) --------------------------------
urlpatterns = list(root_urls.urlpatterns)
if not any(getattr(p, "urlconf_name", None) is telephony.page_urls for p in urlpatterns):
    urlpatterns.append(path("", include("telephony.page_urls")))
handler404 = root_urls.handler404
handler403 = root_urls.handler403
handler500 = root_urls.handler500

pytestmark = pytest.mark.urls(__name__)

NUMBER = "+15555550100"
GREETING = "Hello, thanks for calling."
PARKING = "Free parking is behind the building."
ROOT = Path(__file__).resolve().parents[2]


def _line(tenant, user, number=NUMBER, *, fallback=""):
    with tenant_scope([tenant.id]):
        flow = make_flow(tenant)
        flow_publish(flow=flow, user=user)
        return make_phone_number(tenant, flow=flow, number=number, fallback_number=fallback)


@pytest.fixture
def line(tenant_a, alice):
    return _line(tenant_a, alice)


@pytest.fixture
def simulator(client):
    def make(secret=None):
        return CallSimulator(
            settings.SITE_URL, secret or settings.VONAGE_SIGNATURE_SECRET, DjangoClientTransport(client)
        )

    return make


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- CallSimulator ---------------------------------------------------------------------------------------------


def test_a_simulated_call_hears_the_greeting_gets_an_faq_answered_and_is_put_on_hold(line, simulator):
    call = simulator()
    first = call.answer(NUMBER, "+15555550123")
    assert GREETING in first.ai and first.state == LISTENING and first.invalid is None
    assert call.input_url and "/telephony/vonage/input/" in call.input_url

    faq = call.say("Is there parking?")
    assert PARKING in faq.ai and faq.caller == "Is there parking?" and faq.state == LISTENING

    held = call.press("0")  # the caller asks for a person
    assert held.state == ON_HOLD and call.state == ON_HOLD and not call.listening
    assert any(note.startswith("on hold") for note in held.notes)
    assert any(a["action"] == "conversation" for a in held.ncco)
    with pytest.raises(CallNotListening, match="on hold"):
        call.say("hello?")

    assert call.hang_up() is True and call.state == COMPLETED
    assert call.hang_up() is False  # once
    assert all(t.invalid is None for t in call.turns)
    with unscoped("test assertions"):
        conversation = Conversation.objects.get(vonage_uuid=call.uuid)
        turns = list(conversation.turns.order_by("seq"))
        assert CallEvent.objects.filter(conversation=conversation, status="completed").count() == 1
    assert call.uuid.startswith("sim-")
    assert conversation.dialled_number == NUMBER and conversation.caller_number == "15555550123"
    assert [t.event for t in turns] == ["start", "utterance", "dtmf"]
    assert turns[1].asr_confidence == pytest.approx(0.93)
    assert conversation.outcome == Outcome.ESCALATED and conversation.status == "completed"


def test_silence_is_met_with_a_reprompt(line, simulator):
    call = simulator()
    call.answer(NUMBER)
    again = call.silence()
    assert again.state == LISTENING and again.caller == "(says nothing)" and again.ai


def test_an_unknown_number_is_reported_after_the_polite_message(line, simulator):
    call = simulator()
    with pytest.raises(UnknownNumber) as caught:
        call.answer("+15555559999")
    assert "not in service" in caught.value.turn.ai
    assert call.state == COMPLETED  # Vonage hangs up and reports it; so does the simulator


def test_a_wrong_secret_is_refused_with_a_clear_message(line, simulator):
    with pytest.raises(SignatureRefused, match="VONAGE_SIGNATURE_SECRET the same on both sides"):
        simulator(secret="not-the-server-secret-0123456789abcdef").answer(NUMBER)
    with unscoped("test assertions"):
        assert not Conversation.objects.exists()


def test_nothing_listening_is_reported_not_raised_as_a_traceback():
    call = CallSimulator(f"http://127.0.0.1:{free_port()}", "s" * 32)
    with pytest.raises(ServerUnreachable, match=r"Nothing answers at http://127\.0\.0\.1:\d+ .*start it with make run"):
        call.answer(NUMBER)


def test_the_in_process_transport_reaches_only_the_webhooks(line):
    transport = InProcessTransport()
    assert transport.send("GET", "http://x/t/alpha-dental/", headers={}).status == 404
    call = CallSimulator(settings.SITE_URL, settings.VONAGE_SIGNATURE_SECRET, transport)
    assert GREETING in call.answer(NUMBER).ai
    assert PARKING in call.say("where do I park").ai
    unsigned = transport.send("POST", "http://x/telephony/vonage/event", headers={}, body=b"{}")
    assert unsigned.status == 401


# --- manage.py call_simulate -----------------------------------------------------------------------------------


@pytest.fixture
def via_test_client(monkeypatch, client):
    monkeypatch.setattr(
        "telephony.management.commands.call_simulate.transport_for", lambda url: DjangoClientTransport(client)
    )


def test_the_command_plays_the_steps_in_order(line, via_test_client):
    out, err = StringIO(), StringIO()
    call_command(
        "call_simulate", "--to", NUMBER, "--say", "Is there parking?", "--silence", "--press", "0",
        "--say", "anyone there?", stdout=out, stderr=err,
    )  # fmt: skip
    text = out.getvalue()
    expected = [
        f"AI: {GREETING}",
        "Caller: Is there parking?",
        PARKING,
        "Caller: (says nothing)",
        "Caller: (presses 0)",
        "[on hold: the caller hears hold music",
        'skipped: --say "anyone there?"',
        "Caller hangs up.",
        "Call completed after 4 turn(s)",
    ]
    positions = [text.find(piece) for piece in expected]
    assert -1 not in positions, text
    assert positions == sorted(positions), text
    assert "INVALID" not in err.getvalue()


def test_the_command_prints_json(line, via_test_client):
    out = StringIO()
    call_command("call_simulate", "--to", NUMBER, "--say", "Is there parking?", "--json", stdout=out)
    report = json.loads(out.getvalue())
    assert [t["kind"] for t in report["turns"]] == ["answer", "say"]
    assert PARKING in report["turns"][1]["ai"] and report["invalid_nccos"] == 0
    assert report["state"] == COMPLETED and report["turns"][0]["ncco"][-1]["action"] == "input"


def test_the_command_reports_invalid_nccos_loudly(line, via_test_client, monkeypatch):
    monkeypatch.setattr("telephony.services.call_input", lambda **kw: [{"action": "talk", "text": ""}])
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError, match=r"1 invalid NCCO"):
        call_command("call_simulate", "--to", NUMBER, "--say", "Is there parking?", stdout=out, stderr=err)
    assert "INVALID NCCO" in err.getvalue()


def test_the_command_reports_an_unknown_number(line, via_test_client):
    out = StringIO()
    with pytest.raises(CommandError, match="No business answers"):
        call_command("call_simulate", "--to", "+15555559999", stdout=out)
    assert "not in service" in out.getvalue()


def test_the_command_says_when_nothing_answers_without_a_traceback():
    url = f"http://127.0.0.1:{free_port()}"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "contactcenter.settings.test"}
    result = subprocess.run(
        [sys.executable, "manage.py", "call_simulate", "--to", NUMBER, "--say", "hi", "--url", url],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1, result
    assert f"Nothing answers at {url}" in result.stderr and "start it with make run" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_command_keeps_steps_in_order_in_its_arguments():
    from telephony.management.commands.call_simulate import Command

    parser = Command().create_parser("manage.py", "call_simulate")
    options = parser.parse_args(["--to", NUMBER, "--press", "1", "--say", "a", "--silence", "--say", "b"])
    assert options.steps == [("press", "1"), ("say", "a"), ("silence", ""), ("say", "b")]
    with pytest.raises(CommandError):
        parser.parse_args(["--to", NUMBER, "--press", "12x"])


# --- the dashboard page and its relay --------------------------------------------------------------------------


def page_url(tenant):
    return f"/t/{tenant.slug}/phone/"


def relay(client, tenant, **payload):
    return client.post(f"/t/{tenant.slug}/phone/relay/", json.dumps(payload), content_type="application/json")


def test_the_page_is_for_owners_and_supervisors(line, client_for, alice, sam, bob, charlie, tenant_a):
    for user in (alice, sam):
        response = client_for(user).get(page_url(tenant_a))
        assert response.status_code == 200
        body = response.content.decode()
        assert NUMBER in body and "js/phone_simulator.js" in body and 'id="phone-simulator"' in body
    assert client_for(bob).get(page_url(tenant_a)).status_code == 403
    assert client_for(charlie).get(page_url(tenant_a)).status_code == 404
    assert relay(client_for(bob), tenant_a, action="call", number=line.pk).status_code == 403
    assert relay(client_for(charlie), tenant_a, action="call", number=line.pk).status_code == 404


def test_the_relay_refuses_another_businesss_number(line, client_for, alice, charlie, tenant_a, tenant_b):
    theirs = _line(tenant_b, charlie, "+15555550177")
    response = relay(client_for(alice), tenant_a, action="call", number=theirs.pk)
    assert response.status_code == 404
    with unscoped("test assertions"):
        assert not Conversation.objects.exists()


def test_the_relay_drives_a_call_through_the_webhooks(line, client_for, alice, tenant_a):
    client = client_for(alice)
    assert relay(client, tenant_a, action="say", text="hello").status_code == 409  # no call yet

    answered = relay(client, tenant_a, action="call", number=line.pk, **{"from": "+1 555 555 0123"})
    assert answered.status_code == 200, answered.content
    data = answered.json()
    assert GREETING in data["turn"]["ai"] and data["call"]["listening"] and data["turn"]["ncco"]
    uuid = data["call"]["uuid"]
    assert client.session["phone_simulator"][str(tenant_a.id)]["uuid"] == uuid

    page = client.get(page_url(tenant_a)).content.decode()  # a reload knows the call is still on
    assert uuid in page

    faq = relay(client, tenant_a, action="say", text="Is there parking?", confidence=0.81).json()
    assert PARKING in faq["turn"]["ai"] and faq["turn"]["caller"] == "Is there parking?"
    assert relay(client, tenant_a, action="press", digits="12x").status_code == 400
    held = relay(client, tenant_a, action="press", digits="0").json()
    assert held["call"]["state"] == ON_HOLD and not held["call"]["listening"]
    assert relay(client, tenant_a, action="silence").status_code == 409

    ended = relay(client, tenant_a, action="hangup").json()
    assert ended["call"]["state"] == COMPLETED
    assert str(tenant_a.id) not in client.session.get("phone_simulator", {})
    with unscoped("test assertions"):
        conversation = Conversation.objects.get(vonage_uuid=uuid)
        utterance = conversation.turns.get(seq=2)
    assert conversation.tenant_id == tenant_a.id and conversation.caller_number == "15555550123"
    assert conversation.status == "completed" and conversation.outcome == Outcome.ESCALATED
    assert utterance.asr_confidence == pytest.approx(0.81)


def test_the_relay_is_csrf_protected(line, alice, tenant_a):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert relay(client, tenant_a, action="call", number=line.pk).status_code == 403


def test_the_simulator_sends_a_signed_webhook_in_one_write():
    from telephony.simulator import HttpTransport

    class Socket:
        def __init__(self):
            self.writes: list[bytes] = []

        def sendall(self, data):
            self.writes.append(bytes(data))

    transport = HttpTransport()
    connection = transport._connect("http://127.0.0.1:9/telephony/vonage/event")
    connection.sock = sock = Socket()
    body = json.dumps({"uuid": "leg-1", "status": "completed"}).encode()
    connection.request("POST", "/telephony/vonage/event", body=body, headers={"Content-Type": "application/json"})
    assert len(sock.writes) == 1
    head, _, sent = sock.writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /telephony/vonage/event HTTP/1.1") and sent == body
    connection = transport._connect("http://127.0.0.1:9/telephony/vonage/answer")
    connection.sock = sock = Socket()
    connection.request("GET", "/telephony/vonage/answer?to=1")  # no body: the headers alone, once
    assert len(sock.writes) == 1 and sock.writes[0].endswith(b"\r\n\r\n")
