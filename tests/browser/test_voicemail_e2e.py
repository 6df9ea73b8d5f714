"""A caller leaves a voicemail; the agency agent's console shows it as work, plays it, handles it.

Real server (`manage.py serve`, fake telephony client), real signed webhooks over HTTP: the record
webhook stores the voicemail, the console (chromium) receives ``voicemail.new`` and shows it with the
business's name, the recording plays through our proxy (the fake client's one-second WAV), the
transcription arrives and shows, "Mark handled" empties the list, the business's voicemails page
lists it as handled, and the e-mail went to the business's voicemail address.
Screenshots: artifacts/voicemail-e2e*.png.
"""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from telephony.signing import sign_request
from telephony.simulator import CallSimulator
from tests.browser.conftest import (
    AGENT_EMAIL,
    ARTIFACTS,
    DENTAL_NUMBER,
    SIGNATURE_SECRET,
    TENANT_NAME,
    open_console,
)

pytestmark = pytest.mark.browser

SETUP = (
    "from conversations.models import CallbackPolicy, Conversation; from tenants.models import Tenant\n"
    "from tenants.scoping import tenant_scope\n"
    "t = Tenant.objects.get(slug='bright-smile-dental')\n"
    "with tenant_scope([t.id]):\n"
    "    CallbackPolicy.objects.update_or_create(tenant=t, defaults={'voicemail_email': 'desk@e2e.test'})\n"
    "    print(Conversation.objects.latest('started_at').pk)"
)
VOICEMAIL_ROW = (
    "from conversations.models import Voicemail; from tenants.scoping import unscoped\n"
    "with unscoped('browser test assertion'):\n"
    "    v = Voicemail.objects.select_related('handled_by').get()\n"
    "    print('|'.join([v.handled_by.email if v.handled_by else '-', str(bool(v.emailed_at)), v.email_error]))"
)


def signed_post(base: str, path: str, payload: dict) -> int:
    body = json.dumps(payload).encode()
    request = urllib.request.Request(
        base + path,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": sign_request(body=body, secret=SIGNATURE_SECRET)},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


def test_a_voicemail_reaches_the_console_plays_and_is_handled(switchboard_server, browser_page):
    from playwright.sync_api import expect

    page = browser_page
    base = switchboard_server.base_url
    open_console(page, base)
    expect(page.locator("#voicemails-empty")).to_be_visible()

    # A caller reaches the dental line and leaves a 12-second message (the number transcribes: tr=1).
    call = CallSimulator(base, SIGNATURE_SECRET)
    call.answer(DENTAL_NUMBER, from_="+15555550177")
    conversation_id = int(switchboard_server.shell(SETUP))
    recording = {
        "recording_uuid": "e2e-rec-1",
        "recording_url": "https://api.nexmo.com/v1/files/e2e-rec-1",
        "start_time": "2030-01-07T17:00:00Z",
        "end_time": "2030-01-07T17:00:12Z",
    }
    assert signed_post(base, f"/telephony/vonage/recording/{conversation_id}/?tr=1", recording) == 200

    item = page.locator("#voicemails li.voicemail")
    expect(item).to_have_count(1, timeout=15_000)
    expect(item.locator(".business-name")).to_have_text(TENANT_NAME)
    expect(item).to_contain_text("+15555550177")
    expect(item).to_contain_text("12 s")
    expect(item).to_contain_text("No transcript (yet).")

    # The recording plays through our proxy: one second of audio.
    audio = item.locator("audio")
    duration = audio.evaluate(
        "a => new Promise((ok, fail) => { a.addEventListener('loadedmetadata', () => ok(a.duration));"
        " a.addEventListener('error', () => fail('audio error')); a.preload = 'auto'; a.load(); })"
    )
    assert duration == pytest.approx(1.0, abs=0.05)

    # The transcript arrives: the console shows it, and the e-mail goes (with it) to the chosen address.
    transcription = {"recording_uuid": "e2e-rec-1", "channels": [{"transcript": [{"sentence": "My crown fell out"}]}]}
    assert signed_post(base, f"/telephony/vonage/transcription/{conversation_id}/?tr=1", transcription) == 200
    expect(item).to_contain_text("My crown fell out", timeout=15_000)
    page.screenshot(path=str(ARTIFACTS / "voicemail-e2e-console.png"), full_page=True)

    item.get_by_role("button", name="Mark handled").click()
    expect(page.locator("#voicemails li.voicemail")).to_have_count(0)
    expect(page.locator("#voicemails-empty")).to_be_visible()

    deadline = time.monotonic() + 15
    while (row := switchboard_server.shell(VOICEMAIL_ROW)) != f"{AGENT_EMAIL}|True|":
        assert time.monotonic() < deadline, row
        time.sleep(0.3)
    log = switchboard_server.server_log()
    assert "desk@e2e.test" in log and "My crown fell out" in log

    page.goto(base + "/t/bright-smile-dental/voicemails/?status=handled")
    listed = page.locator("li.voicemail")
    expect(listed).to_have_count(1)
    expect(listed).to_contain_text("My crown fell out")
    expect(listed).to_contain_text("Handled")
    page.screenshot(path=str(ARTIFACTS / "voicemail-e2e-page.png"), full_page=True)
