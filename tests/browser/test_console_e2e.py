"""An agency agent takes a real escalation in a real browser.

A simulated call (signed webhooks, over HTTP) to Bright Smile Dental asks for a person; the
escalation is routed by the server's Celery worker to the agency agent, whose console (chromium,
websocket) shows the offer with the business's name; the agent accepts, sees the transcript and the
AI summary, wraps up, and the database says wrapped. Screenshots: artifacts/console-e2e*.png.
"""

from __future__ import annotations

import time

import pytest

from telephony.simulator import CallSimulator
from tests.browser.conftest import (
    AGENT_EMAIL,
    ARTIFACTS,
    DENTAL_NUMBER,
    SIGNATURE_SECRET,
    TENANT_NAME,
    choose_presence,
    open_console,
)

pytestmark = pytest.mark.browser

REQUEST = "I need to speak to a real person"


def test_agency_agent_accepts_an_escalation_in_the_console(switchboard_server, browser_page):
    from playwright.sync_api import expect

    started = time.monotonic()
    page = browser_page
    base = switchboard_server.base_url

    open_console(page, base)
    # Available through the UI; wait until the server has it (the snapshot re-renders the radios).
    choose_presence(page, switchboard_server, "available")

    # The call: the dental line answers, the caller asks for a person.
    call = CallSimulator(base, SIGNATURE_SECRET)
    first = call.answer(DENTAL_NUMBER)
    assert "Bright Smile Dental" in first.ai, first
    handover = call.say(REQUEST)
    assert handover.state == "on_hold", handover  # waits in a conversation for the agent

    # The offer reaches the console, naming the business.
    offer = page.locator("#offers li.offer")
    expect(offer).to_have_count(1, timeout=20_000)
    expect(offer.locator(".business-name")).to_have_text(TENANT_NAME)
    expect(offer.locator(".greeting")).to_contain_text("Bright Smile Dental, this is Nora.")
    expect(offer).to_contain_text("Caller asked for a person")

    offer.get_by_role("button", name="Accept").click()
    card = page.locator("#active article.active-call")
    expect(card).to_have_count(1)
    expect(page.locator("#offers li.offer")).to_have_count(0)
    expect(card.locator(".business-name")).to_have_text(TENANT_NAME)
    expect(card.locator("ol.transcript")).to_contain_text(REQUEST)
    expect(card).to_contain_text("AI summary")
    summary = card.locator("section", has=page.get_by_role("heading", name="AI summary"))
    expect(summary).to_contain_text("Caller asked for a person")
    expect(summary).to_contain_text("(caller_requested_human)")
    page.screenshot(path=str(ARTIFACTS / "console-e2e.png"), full_page=True)

    # Wrap up: disposition and notes.
    escalation_id = card.get_attribute("data-escalation-id")
    card.locator("select[name=disposition]").select_option("callback_needed")
    card.locator("textarea[name=notes]").fill("Caller wants a cleaning; call back tomorrow morning.")
    card.get_by_role("button", name="Wrap up").click()
    expect(page.locator("#active article.active-call")).to_have_count(0)
    expect(page.locator("#active-empty")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "console-e2e-wrapped.png"), full_page=True)

    row = switchboard_server.shell(ESCALATION_ROW.format(pk=int(escalation_id)))
    assert row == "wrapped|callback_needed|Caller wants a cleaning; call back tomorrow morning.|" + AGENT_EMAIL, row
    assert time.monotonic() - started < 90


ESCALATION_ROW = (
    "from agents.models import Escalation; from tenants.scoping import unscoped\n"
    "with unscoped('browser test assertion'):\n"
    "    e = Escalation.objects.select_related('agent').get(pk={pk})\n"
    "    print('|'.join([e.state, e.disposition, e.notes, e.agent.email]))"
)


def test_the_console_applies_new_and_finished_work_without_re_reading_its_state(switchboard_server, browser_page):
    """Waiting work appears and leaves the list from the events alone: the page sends no snapshot request
    (each console re-reading on every event made one escalation cost a snapshot per connected agent)."""
    from playwright.sync_api import expect

    page = browser_page
    base = switchboard_server.base_url
    page.add_init_script("window.__consoleRefreshMs = 3600000")  # no periodic re-read during the test
    frames: list[str] = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: frames.append(str(payload))))

    open_console(page, base)
    choose_presence(page, switchboard_server, "away")  # nobody is offered the calls: they stay waiting
    page.wait_for_timeout(1000)  # (lets Playwright deliver the frames sent so far)
    before = len(frames)

    first, second = CallSimulator(base, SIGNATURE_SECRET), CallSimulator(base, SIGNATURE_SECRET)
    first.answer(DENTAL_NUMBER, "+15555550161")
    assert first.say(REQUEST).state == "on_hold"
    waiting = page.locator("#waiting li.work")
    expect(waiting).to_have_count(1, timeout=20_000)
    expect(waiting.first.locator(".business-name")).to_have_text(TENANT_NAME)
    expect(waiting.first).to_contain_text("Caller asked for a person")
    expect(waiting.first).to_contain_text("#1")

    second.answer(DENTAL_NUMBER, "+15555550162")
    assert second.say(REQUEST).state == "on_hold"
    expect(waiting).to_have_count(2, timeout=20_000)
    expect(waiting.nth(1)).to_contain_text("#2")
    later = waiting.nth(1).get_attribute("data-escalation-id")

    first.hang_up()  # the first caller gives up: their escalation is abandoned
    expect(waiting).to_have_count(1, timeout=20_000)
    expect(waiting.first).to_have_attribute("data-escalation-id", later)
    expect(waiting.first).to_contain_text("#1")  # moved up the line
    page.screenshot(path=str(ARTIFACTS / "console-e2e-waiting.png"), full_page=True)

    asked = [f for f in frames[before:] if '"snapshot"' in f]
    assert not asked, f"the page re-read its state for events it can apply: {asked}"
    second.hang_up()
    expect(waiting).to_have_count(0, timeout=20_000)
