"""Voicemails as work: e-mailed once, listened to on the business's page, handled from page or console.

The e-mail goes once per voicemail (a conditional UPDATE claims it), waits up to two minutes for a
transcript when the number transcribes, and failed sends are retried by the every-minute sweep. The
page and the console show only the businesses the person acts for; another business's voicemail is
404 / not_found exactly like a missing one.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import io
import smtplib
import threading
import wave

import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend
from django.db import connections
from django.utils import timezone

from agents import realtime
from agents.tasks import voicemail_email_sweep_task, voicemail_email_task
from agents.voicemails import (
    CLAIM_STALE_AFTER,
    EMAIL_CLAIMED,
    TRANSCRIPT_WAIT,
    VoicemailAlreadyHandled,
    voicemail_email_send,
    voicemail_handle,
)
from conversations.models import CallbackPolicy, Conversation, Voicemail
from conversations.services import voicemail_record, voicemail_transcript
from telephony.client import TelephonyError, reset_fake_client
from tenants.models import Role
from tenants.scoping import tenant_scope, unscoped
from tests.agents.test_console import console_for, in_scope, read, receive_until
from tests.factories import MembershipFactory, TenantFactory

requires_callbacks = pytest.mark.skipif(
    importlib.util.find_spec("conversations.callbacks") is None,
    reason="conversations.callbacks.callback_schedule (another engineer's work) does not exist yet",
)

MONDAY_NOON_NY = dt.datetime(2030, 1, 7, 17, 0, tzinfo=dt.UTC)  # 12:00 in America/New_York
CALLER = "15555550123"  # as Vonage sends it


# --- helpers ----------------------------------------------------------------------------------------
def make_conversation(tenant, caller=CALLER) -> Conversation:
    with tenant_scope([tenant.id]):
        return Conversation.objects.create(tenant=tenant, caller_number=caller, started_at=timezone.now())


def make_voicemail(tenant, *, caller=CALLER, transcript="", created_at=None, uuid=None, **extra) -> Voicemail:
    conversation = make_conversation(tenant, caller)
    with tenant_scope([tenant.id]):
        voicemail = Voicemail.objects.create(
            tenant=tenant,
            conversation=conversation,
            caller_number=caller,
            recording_url="https://api.nexmo.com/v1/files/" + (uuid or f"rec-{conversation.pk}"),
            recording_uuid=uuid or f"rec-{conversation.pk}",
            duration_seconds=extra.pop("duration_seconds", 42),
            transcript=transcript,
            **extra,
        )
        if created_at is not None:
            Voicemail.objects.filter(pk=voicemail.pk).update(created_at=created_at)  # auto_now_add
            voicemail.refresh_from_db()
    return voicemail


def record(tenant, conversation, *, uuid="rec-1", expected=False):
    """The record webhook's write, with its after-commit subscribers run (consoles, e-mail)."""
    payload = {
        "recording_uuid": uuid,
        "recording_url": f"https://api.nexmo.com/v1/files/{uuid}",
        "start_time": "2030-01-07T17:00:00Z",
        "end_time": "2030-01-07T17:00:42Z",
    }
    with tenant_scope([tenant.id]):
        return voicemail_record(conversation=conversation, payload=payload, transcript_expected=expected)


def change(voicemail, **fields) -> None:
    with unscoped("test setup"):
        Voicemail.objects.filter(pk=voicemail.pk).update(**fields)


def fresh(voicemail) -> Voicemail:
    with unscoped("test assertions"):
        return Voicemail.objects.get(pk=voicemail.pk)


@pytest.fixture
def published(monkeypatch):
    events: list[tuple[list[str], dict]] = []
    monkeypatch.setattr(realtime, "_send", lambda groups, message: events.append((groups, message["event"])))
    return events


@pytest.fixture
def commits(django_capture_on_commit_callbacks):
    """Run after-commit callbacks (hooks, publish, task enqueue) as a real commit would."""

    def run(fn, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return fn(*args, **kwargs)

    return run


class FlakyBackend(EmailBackend):
    """The locmem backend, failing while ``failures`` > 0 (an SMTP server refusing)."""

    failures = 0

    def send_messages(self, messages):
        if FlakyBackend.failures > 0:
            FlakyBackend.failures -= 1
            raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
        return super().send_messages(messages)


# --- the e-mail ---------------------------------------------------------------------------------------
def test_without_transcription_it_is_emailed_once_at_once_to_the_chosen_address(tenant_a, alice, commits, published):
    with tenant_scope([tenant_a.id]):
        CallbackPolicy.objects.create(tenant=tenant_a, voicemail_email="frontdesk@alpha.test")
    conversation = make_conversation(tenant_a)
    voicemail = commits(record, tenant_a, conversation)

    (message,) = mail.outbox
    assert message.to == ["frontdesk@alpha.test"]
    assert message.subject == "[Switchboard] New voicemail for Alpha Dental from +15555550123"
    body = message.body
    assert "New voicemail for Alpha Dental" in body and "+15555550123" in body
    assert "42 s" in body and "(no transcript)" in body
    assert f"{settings.SITE_URL}/t/alpha-dental/voicemails/?show={voicemail.pk}" in body
    row = fresh(voicemail)
    assert row.emailed_at is not None and row.email_error == ""
    assert [e["type"] for _, e in published] == ["voicemail.new"]
    assert published[0][0] == [f"tenant.{tenant_a.id}"]

    # Vonage delivers the recording again, the task runs again, the sweep runs: still one e-mail.
    commits(record, tenant_a, conversation)
    with tenant_scope([tenant_a.id]):
        assert voicemail_email_task(tenant_id=tenant_a.id, voicemail_id=voicemail.pk) == "done"
    change(voicemail, created_at=timezone.now() - dt.timedelta(minutes=5))
    voicemail_email_sweep_task()
    assert len(mail.outbox) == 1


def test_the_email_has_the_time_in_the_business_time_zone_and_the_transcript(tenant_a, alice):
    voicemail = make_voicemail(
        tenant_a, transcript="Hi, it's Pat.\nPlease call me about Tuesday.", created_at=MONDAY_NOON_NY
    )
    with tenant_scope([tenant_a.id]):
        assert voicemail_email_task(tenant_id=tenant_a.id, voicemail_id=voicemail.pk) == "sent"
    body = mail.outbox[0].body
    assert "Mon 7 Jan 2030, 12:00 (EST)" in body
    assert "Hi, it's Pat.\nPlease call me about Tuesday." in body and "no transcript" not in body


def test_without_a_chosen_address_it_goes_to_the_owners_and_admins(tenant_a, alice, bob, sam):
    admin = MembershipFactory(tenant=tenant_a, role=Role.ADMIN, user__email="adam@example.test").user
    MembershipFactory(tenant=tenant_a, role=Role.ADMIN, user__email="gone@example.test", user__is_active=False)
    with tenant_scope([tenant_a.id]):
        CallbackPolicy.objects.create(tenant=tenant_a, voicemail_email="")  # a policy without an address
    voicemail = make_voicemail(tenant_a)
    with tenant_scope([tenant_a.id]):
        voicemail_email_task(tenant_id=tenant_a.id, voicemail_id=voicemail.pk)
    assert sorted(mail.outbox[0].to) == sorted([alice.email, admin.email])  # not agents, supervisors, inactive


def test_with_transcription_it_waits_for_the_transcript(tenant_a, alice, commits, published):
    conversation = make_conversation(tenant_a)
    voicemail = commits(record, tenant_a, conversation, expected=True)
    assert mail.outbox == []  # the 2-minute task ran early (eager tests) and saw it is not due yet
    voicemail_email_sweep_task()
    assert mail.outbox == []

    with tenant_scope([tenant_a.id]):
        commits(voicemail_transcript, recording_uuid="rec-1", transcript="Please call me back about my crown.")
    (message,) = mail.outbox
    assert "Please call me back about my crown." in message.body
    assert [e["type"] for _, e in published] == ["voicemail.new", "voicemail.transcribed"]

    # A retried transcription callback changes nothing more.
    with tenant_scope([tenant_a.id]):
        commits(voicemail_transcript, recording_uuid="rec-1", transcript="Please call me back about my crown.")
    assert len(mail.outbox) == 1 and fresh(voicemail).emailed_at is not None


def test_a_transcript_that_never_comes_is_not_waited_for_longer_than_two_minutes(tenant_a, alice, commits):
    conversation = make_conversation(tenant_a)
    voicemail = commits(record, tenant_a, conversation, expected=True)
    change(voicemail, created_at=timezone.now() - TRANSCRIPT_WAIT + dt.timedelta(seconds=5))
    voicemail_email_sweep_task()
    assert mail.outbox == []
    change(voicemail, created_at=timezone.now() - TRANSCRIPT_WAIT)
    # The delayed task (due at 2 min) and the sweep both try: one e-mail.
    with tenant_scope([tenant_a.id]):
        assert (
            voicemail_email_task(tenant_id=tenant_a.id, voicemail_id=voicemail.pk, wait_for_transcript=True) == "sent"
        )
    voicemail_email_sweep_task()
    (message,) = mail.outbox
    assert "(no transcript)" in message.body
    # The transcript arriving late is kept, but not e-mailed again.
    with tenant_scope([tenant_a.id]):
        commits(voicemail_transcript, recording_uuid="rec-1", transcript="Late words.")
    assert len(mail.outbox) == 1 and fresh(voicemail).transcript == "Late words."


def test_the_sweep_sends_what_the_task_never_did(tenant_a, alice):
    voicemail = make_voicemail(tenant_a, created_at=timezone.now() - dt.timedelta(minutes=3))
    assert voicemail_email_sweep_task() == {"sent": 1, "released": 0}
    assert len(mail.outbox) == 1 and fresh(voicemail).emailed_at is not None


def test_a_failed_send_releases_the_claim_records_the_error_and_is_retried(tenant_a, alice, settings):
    settings.EMAIL_BACKEND = "tests.agents.test_voicemail.FlakyBackend"
    FlakyBackend.failures = 1
    voicemail = make_voicemail(tenant_a)
    with tenant_scope([tenant_a.id]):
        assert voicemail_email_task(tenant_id=tenant_a.id, voicemail_id=voicemail.pk) == "failed"
    row = fresh(voicemail)
    assert row.emailed_at is None and "SMTPServerDisconnected" in row.email_error
    assert mail.outbox == []

    # A failed one is retried at the next sweep (it does not wait two minutes again).
    assert voicemail_email_sweep_task()["sent"] == 1
    row = fresh(voicemail)
    assert len(mail.outbox) == 1 and row.emailed_at is not None and row.email_error == ""
    voicemail_email_sweep_task()
    assert len(mail.outbox) == 1


def test_no_address_at_all_is_recorded_as_the_error(tenant_a):
    voicemail = make_voicemail(tenant_a)  # no policy, and the business has no owner or admin
    with tenant_scope([tenant_a.id]):
        assert voicemail_email_task(tenant_id=tenant_a.id, voicemail_id=voicemail.pk) == "failed"
    assert fresh(voicemail).email_error.startswith("No address to send it to")
    assert mail.outbox == []


def test_a_claim_is_exclusive_and_a_claim_left_by_a_dead_worker_is_released(tenant_a, alice):
    now = timezone.now()
    voicemail = make_voicemail(tenant_a, created_at=now - dt.timedelta(minutes=30))
    # Another worker claimed it a moment ago: nobody else sends.
    change(voicemail, emailed_at=now, email_error=EMAIL_CLAIMED)
    with tenant_scope([tenant_a.id]):
        assert voicemail_email_send(voicemail_id=voicemail.pk, now=now) == "done"
    assert voicemail_email_sweep_task() == {}
    assert mail.outbox == []
    # That worker died mid-send: after CLAIM_STALE_AFTER the sweep releases the claim and sends.
    change(voicemail, emailed_at=now - CLAIM_STALE_AFTER)
    assert voicemail_email_sweep_task() == {"released": 1, "sent": 1}
    assert len(mail.outbox) == 1


def test_the_sweep_gives_up_after_a_day(tenant_a, alice):
    make_voicemail(tenant_a, created_at=timezone.now() - dt.timedelta(hours=25), email_error="SMTP down")
    assert voicemail_email_sweep_task() == {}
    assert mail.outbox == []


def test_the_sweep_runs_every_minute():
    entry = next(e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == "agents.tasks.voicemail_email_sweep")
    assert entry["schedule"] == 60.0
    assert voicemail_email_task.acks_late and voicemail_email_sweep_task.acks_late


def test_the_sweep_keeps_each_business_in_its_own_scope(tenant_a, tenant_b, alice, charlie):
    old = timezone.now() - dt.timedelta(minutes=3)
    make_voicemail(tenant_a, created_at=old)
    make_voicemail(tenant_b, created_at=old)
    assert voicemail_email_sweep_task()["sent"] == 2
    assert sorted(m.to[0] for m in mail.outbox) == sorted([alice.email, charlie.email])
    assert {m.subject.split(" for ")[1].split(" from ")[0] for m in mail.outbox} == {"Alpha Dental", "Beta Plumbing"}


def test_the_record_webhook_carries_the_transcription_setting(
    client, tenant_a, alice, django_capture_on_commit_callbacks
):
    """Through the signed webhooks: with tr=1 the e-mail waits for the transcription webhook."""
    from tests.telephony.test_webhooks import signed_post

    conversation = make_conversation(tenant_a)
    payload = {
        "recording_uuid": "rec-w",
        "recording_url": "https://api.nexmo.com/v1/files/rec-w",
        "start_time": "2030-01-07T17:00:00Z",
        "end_time": "2030-01-07T17:00:10Z",
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = signed_post(client, f"/telephony/vonage/recording/{conversation.pk}/?tr=1", payload)
    assert response.status_code == 200 and mail.outbox == []
    transcription = {"recording_uuid": "rec-w", "channels": [{"transcript": [{"sentence": "Call me at noon"}]}]}
    with django_capture_on_commit_callbacks(execute=True):
        response = signed_post(client, f"/telephony/vonage/transcription/{conversation.pk}/?tr=1", transcription)
    assert response.status_code == 200
    (message,) = mail.outbox
    assert "Call me at noon" in message.body and "10 s" in message.body


# --- the page -------------------------------------------------------------------------------------------
def page(client, query=""):
    response = client.get("/t/alpha-dental/voicemails/" + query)
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def test_the_page_lists_new_voicemails_newest_first_with_player_transcript_and_local_time(client_for, bob, tenant_a):
    older = make_voicemail(tenant_a, caller="15555550111", transcript="Older message", created_at=MONDAY_NOON_NY)
    newer = make_voicemail(
        tenant_a, caller="15555550122", transcript="Newer message", created_at=MONDAY_NOON_NY + dt.timedelta(hours=1)
    )
    done = make_voicemail(tenant_a, caller="15555550133", transcript="Already dealt with")
    change(done, handled_at=timezone.now(), handled_by=bob)

    html = page(client_for(bob))
    assert html.index("+15555550122") < html.index("+15555550111")  # newest first
    assert "Already dealt with" not in html
    assert "Mon 7 Jan 2030, 12:00" in html and "Mon 7 Jan 2030, 13:00" in html  # America/New_York
    assert f'src="/t/alpha-dental/voicemails/{older.pk}/recording"' in html
    assert "Older message" in html and "42 s" in html
    assert f'action="/t/alpha-dental/voicemails/{newer.pk}/handle/"' in html
    assert f'action="/t/alpha-dental/voicemails/{newer.pk}/callback/"' in html

    handled = page(client_for(bob), "?status=handled")
    assert "Already dealt with" in handled and "Older message" not in handled
    everything = page(client_for(bob), "?status=all")
    assert everything.index("Newer message") < everything.index("Older message") < everything.index("Already dealt")
    one = page(client_for(bob), f"?show={done.pk}")
    assert "Already dealt with" in one and "Newer message" not in one
    assert "Newer message" in page(client_for(bob), "?show=" + "9" * 30 + "&status=bogus")


def test_agency_agents_covering_the_business_see_its_voicemails(client_for, nina, tenant_a, tenant_b):
    make_voicemail(tenant_a, transcript="For Alpha")
    make_voicemail(tenant_b, transcript="For Beta")
    html = page(client_for(nina))
    assert "For Alpha" in html and "For Beta" not in html
    assert client_for(nina).get("/t/beta-plumbing/voicemails/").status_code == 404


def test_the_recording_plays_through_the_voice_client(client_for, bob, tenant_a):
    fake = reset_fake_client()
    voicemail = make_voicemail(tenant_a)
    response = client_for(bob).get(f"/t/alpha-dental/voicemails/{voicemail.pk}/recording")
    assert response.status_code == 200
    assert response["Content-Type"] == "audio/wav" and response["Accept-Ranges"] == "bytes"
    with wave.open(io.BytesIO(response.content)) as audio:
        assert audio.getnframes() / audio.getframerate() == pytest.approx(1.0)
    assert fake.calls == [{"method": "fetch_recording", "url": voicemail.recording_url}]

    # Browsers ask for ranges (Safari insists); served from a short cache, not from Vonage again.
    partial = client_for(bob).get(f"/t/alpha-dental/voicemails/{voicemail.pk}/recording", HTTP_RANGE="bytes=0-1")
    assert partial.status_code == 206 and partial.content == b"RI"
    assert partial["Content-Range"] == f"bytes 0-1/{len(response.content)}"
    assert len(fake.calls) == 1


def test_a_recording_that_cannot_be_fetched_gives_a_clear_502_page(client_for, bob, tenant_a):
    fake = reset_fake_client()
    voicemail = make_voicemail(tenant_a)
    fake.fail_next(TelephonyError("fetch_recording: Vonage answered 404", retryable=False, status_code=404))
    response = client_for(bob).get(f"/t/alpha-dental/voicemails/{voicemail.pk}/recording")
    assert response.status_code == 502
    html = response.content.decode()
    assert "The recording could not be fetched" in html and "Traceback" not in html and "404" not in html

    # A URL that is not Vonage's is never fetched (our credentials would go with it).
    change(voicemail, recording_url="https://evil.example/?x=api.nexmo.com")
    response = client_for(bob).get(f"/t/alpha-dental/voicemails/{voicemail.pk}/recording")
    assert response.status_code == 502 and fake.calls == []


def test_mark_handled_on_the_page(client_for, bob, sam, tenant_a, published, django_capture_on_commit_callbacks):
    voicemail = make_voicemail(tenant_a)
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(bob).post(f"/t/alpha-dental/voicemails/{voicemail.pk}/handle/", {"status": "new"})
    assert response.status_code == 302 and response["Location"] == "/t/alpha-dental/voicemails/"
    row = fresh(voicemail)
    assert row.handled_at is not None and row.handled_by_id == bob.pk
    ((groups, event),) = published
    assert event["type"] == "voicemail.handled" and event["handled_by"] == bob.pk and event["action"] == "handled"

    # Someone else a moment later: told, and the first person stays the one who handled it.
    response = client_for(sam).post(f"/t/alpha-dental/voicemails/{voicemail.pk}/handle/", follow=True)
    assert "Someone already dealt with this voicemail." in response.content.decode()
    assert fresh(voicemail).handled_by_id == bob.pk


@requires_callbacks
def test_call_back_on_the_page_schedules_a_callback_and_handles_it(client_for, nina, tenant_a):
    from conversations.models import Callback

    voicemail = make_voicemail(tenant_a, transcript="Hi, my crown fell out. Call me please.")
    response = client_for(nina).post(f"/t/alpha-dental/voicemails/{voicemail.pk}/callback/", follow=True)
    assert response.status_code == 200
    assert "Call back to +15555550123 scheduled" in response.content.decode()
    with unscoped("test assertions"):
        (callback,) = Callback.objects.all()
    assert callback.tenant_id == tenant_a.id and callback.phone == "+15555550123"
    assert callback.source == "voicemail" and callback.conversation_id == voicemail.conversation_id
    assert callback.reason == "Voicemail: Hi, my crown fell out. Call me please."
    row = fresh(voicemail)
    assert row.handled_by_id == nina.pk

    # Again: already handled, no second callback.
    client_for(nina).post(f"/t/alpha-dental/voicemails/{voicemail.pk}/callback/")
    with unscoped("test assertions"):
        assert Callback.objects.count() == 1


@requires_callbacks
def test_call_back_of_a_withheld_number_is_refused_and_leaves_it_unhandled(client_for, bob, tenant_a):
    from conversations.models import Callback

    voicemail = make_voicemail(tenant_a, caller="")
    response = client_for(bob).post(f"/t/alpha-dental/voicemails/{voicemail.pk}/callback/", follow=True)
    assert "withheld their number" in response.content.decode()
    assert fresh(voicemail).handled_at is None
    with unscoped("test assertions"):
        assert not Callback.objects.exists()


def test_call_back_rolls_back_the_handling_when_the_number_cannot_be_called(monkeypatch, client_for, bob, tenant_a):
    """Whatever callback_schedule refuses, the voicemail stays unhandled (one transaction)."""
    import sys
    import types

    class CallbackError(ValueError):
        pass

    def callback_schedule(**kwargs):
        raise CallbackError("phone: 'anonymous' is not a phone number we can call back")

    stub = types.ModuleType("conversations.callbacks")
    stub.CallbackError, stub.callback_schedule = CallbackError, callback_schedule
    monkeypatch.setitem(sys.modules, "conversations.callbacks", stub)
    voicemail = make_voicemail(tenant_a, caller="anonymous")
    response = client_for(bob).post(f"/t/alpha-dental/voicemails/{voicemail.pk}/callback/", follow=True)
    assert "Could not schedule a call back" in response.content.decode()
    assert fresh(voicemail).handled_at is None


def test_call_back_passes_the_voicemail_to_callback_schedule(monkeypatch, tenant_a, bob):
    """The exact call the callbacks engineer's function receives (runs without their module)."""
    import sys
    import types

    from agents.voicemails import voicemail_call_back

    calls = []

    def callback_schedule(**kwargs):
        calls.append(kwargs)
        return types.SimpleNamespace(pk=7, phone=kwargs["phone"], due_at=kwargs["now"])

    stub = types.ModuleType("conversations.callbacks")
    stub.CallbackError, stub.callback_schedule = ValueError, callback_schedule
    monkeypatch.setitem(sys.modules, "conversations.callbacks", stub)
    voicemail = make_voicemail(tenant_a, transcript="word " * 100)
    now = timezone.now()
    with tenant_scope([tenant_a.id]):
        voicemail_call_back(voicemail=voicemail, user=bob, now=now)
    (kwargs,) = calls
    assert kwargs["tenant_id"] == tenant_a.id and kwargs["phone"] == CALLER and kwargs["source"] == "voicemail"
    assert kwargs["conversation"].pk == voicemail.conversation_id and kwargs["now"] == now
    assert kwargs["reason"].startswith("Voicemail: word word") and len(kwargs["reason"]) <= 300
    assert fresh(voicemail).handled_by_id == bob.pk


def test_of_two_people_handling_at_once_one_wins(tenant_a, bob, sam):
    """Both loaded it unhandled; the conditional UPDATE lets only the first through."""
    voicemail = make_voicemail(tenant_a)
    seen_by_bob, seen_by_sam = fresh(voicemail), fresh(voicemail)
    now = timezone.now()
    with tenant_scope([tenant_a.id]):
        voicemail_handle(voicemail=seen_by_bob, user=bob, now=now)
        with pytest.raises(VoicemailAlreadyHandled):
            voicemail_handle(voicemail=seen_by_sam, user=sam, now=now)
    assert fresh(voicemail).handled_by_id == bob.pk


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_of_ten_concurrent_handlers_exactly_one_wins():
    tenant = TenantFactory()
    agents = [MembershipFactory(tenant=tenant, role=Role.AGENT).user for _ in range(10)]
    voicemail = make_voicemail(tenant)
    barrier = threading.Barrier(len(agents))
    outcomes: list[str] = []
    lock = threading.Lock()

    def handle(agent):
        try:
            barrier.wait(timeout=30)
            with tenant_scope([tenant.id]):
                voicemail_handle(voicemail=voicemail, user=agent, now=timezone.now())
            outcome = "won"
        except VoicemailAlreadyHandled:
            outcome = "lost"
        except Exception as exc:
            outcome = f"error: {exc!r}"
        finally:
            connections.close_all()
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=handle, args=(agent,)) for agent in agents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["lost"] * 9 + ["won"]


def test_another_business_gets_404_for_the_page_the_recording_and_the_actions(client_for, charlie, tenant_a, tenant_b):
    fake = reset_fake_client()
    voicemail = make_voicemail(tenant_a)
    outsider = client_for(charlie)
    for slug in ("alpha-dental", "beta-plumbing"):  # their URL, or their own business with our id
        base = f"/t/{slug}/voicemails/{voicemail.pk}"
        assert outsider.get(f"{base}/recording").status_code == 404
        assert outsider.post(f"{base}/handle/").status_code == 404
        assert outsider.post(f"{base}/callback/").status_code == 404
    assert outsider.get("/t/alpha-dental/voicemails/").status_code == 404
    own = outsider.get(f"/t/beta-plumbing/voicemails/?show={voicemail.pk}").content.decode()
    assert f"voicemail-{voicemail.pk}" not in own and "No voicemails yet." in own
    assert fresh(voicemail).handled_at is None and fake.calls == []


def test_no_role_is_read_only_here_every_role_may_act(client_for, bob, sam, alice, nina, tenant_a, client):
    """Handling voicemails is agents' work: agents, agency agents, supervisors and owners all may."""
    for user in (bob, nina, sam, alice):
        voicemail = make_voicemail(tenant_a)
        response = client_for(user).post(f"/t/alpha-dental/voicemails/{voicemail.pk}/handle/")
        assert response.status_code == 302, user.email
        assert fresh(voicemail).handled_by_id == user.pk
    voicemail = make_voicemail(tenant_a)
    anonymous = client.post(f"/t/alpha-dental/voicemails/{voicemail.pk}/handle/")
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]
    assert fresh(voicemail).handled_at is None


def test_the_business_nav_links_to_the_voicemails(client_for, bob, tenant_a):
    html = client_for(bob).get("/t/alpha-dental/").content.decode()
    assert 'href="/t/alpha-dental/voicemails/"' in html


# --- the console ------------------------------------------------------------------------------------------
async def collect(communicator, *predicates, limit=30):
    """The first message matching each predicate, in whatever order they arrive."""
    found: list[dict | None] = [None] * len(predicates)
    for _ in range(limit):
        message = await communicator.receive_json_from(timeout=3)
        for index, predicate in enumerate(predicates):
            if found[index] is None and predicate(message):
                found[index] = message
                break
        if all(m is not None for m in found):
            return found
    raise AssertionError(f"not every expected message arrived: {found}")


@pytest.mark.django_db(transaction=True)
async def test_the_snapshot_lists_the_unhandled_voicemails_of_the_businesses_you_act_for(
    nina, charlie, tenant_a, tenant_b
):
    def setup():
        old = make_voicemail(
            tenant_a, transcript="Old one " + "blah " * 80, created_at=timezone.now() - dt.timedelta(hours=2)
        )
        new = make_voicemail(tenant_a, caller="", transcript="")
        done = make_voicemail(tenant_a)
        change(done, handled_at=timezone.now())
        in_b = make_voicemail(tenant_b)
        return old, new, in_b

    old, new, in_b = await database_sync_to_async(setup)()
    communicator, snapshot = await console_for(nina)
    assert [v["voicemail_id"] for v in snapshot["voicemails"]] == [old.pk, new.pk]  # oldest first
    assert snapshot["voicemails_total"] == 2
    first, second = snapshot["voicemails"]
    assert first["tenant_name"] == "Alpha Dental" and first["caller_number"] == "+15555550123"
    assert first["duration_seconds"] == 42 and first["age_seconds"] >= 7199
    assert first["transcript_excerpt"].startswith("Old one") and len(first["transcript_excerpt"]) <= 200
    assert first["recording_url"] == f"/t/alpha-dental/voicemails/{old.pk}/recording"
    assert first["can_call_back"] is True
    assert second["caller_number"] == "Withheld number" and second["can_call_back"] is False
    assert second["transcript_excerpt"] == ""
    await communicator.disconnect()

    communicator, snapshot = await console_for(charlie)
    assert [v["voicemail_id"] for v in snapshot["voicemails"]] == [in_b.pk]
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_a_new_voicemail_is_pushed_after_commit(bob, tenant_a):
    communicator, snapshot = await console_for(bob)
    assert snapshot["voicemails"] == []
    conversation = await database_sync_to_async(make_conversation)(tenant_a)
    voicemail = await database_sync_to_async(lambda: record(tenant_a, conversation, uuid="rec-push"))()
    event = await receive_until(communicator, lambda m: m["type"] == "voicemail.new")
    assert event["voicemail_id"] == voicemail.pk and event["caller_number"] == "+15555550123"
    assert event["duration_seconds"] == 42
    await communicator.send_json_to({"type": "snapshot"})
    snapshot = await receive_until(communicator, lambda m: m["type"] == "snapshot")
    assert [v["voicemail_id"] for v in snapshot["voicemails"]] == [voicemail.pk]
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_handling_from_the_console_one_agent_wins(bob, nina, tenant_a):
    voicemail = await database_sync_to_async(make_voicemail)(tenant_a)
    bob_socket, _ = await console_for(bob)
    nina_socket, _ = await console_for(nina)

    # Both click at once; whichever arrives first wins, the other is told.
    await bob_socket.send_json_to({"type": "voicemail.handle", "voicemail_id": voicemail.pk, "ref": "b"})
    await nina_socket.send_json_to({"type": "voicemail.handle", "voicemail_id": voicemail.pk, "ref": "n"})
    seen = {
        user: await collect(
            socket,
            lambda m: m["type"] in ("ok", "error"),
            lambda m: m["type"] == "voicemail.handled",
            lambda m: m["type"] == "snapshot" and m["voicemails"] == [],
        )
        for user, socket in ((bob, bob_socket), (nina, nina_socket))
    }
    answers = {user: messages[0] for user, messages in seen.items()}
    (winner,) = [user for user, answer in answers.items() if answer["type"] == "ok"]
    (loser,) = [user for user, answer in answers.items() if answer["type"] == "error"]
    assert answers[winner] == {
        "type": "ok",
        "action": "voicemail.handle",
        "voicemail_id": voicemail.pk,
        "ref": "b" if winner == bob else "n",
    }
    assert answers[loser] == {
        "type": "error",
        "code": "already_handled",
        "message": "Someone already dealt with this voicemail.",
        "ref": "b" if loser == bob else "n",
    }
    for _, event, _ in seen.values():  # both consoles hear who handled it, and re-read an empty list
        assert event["voicemail_id"] == voicemail.pk and event["handled_by"] == winner.pk

    row = await read(lambda: Voicemail.objects.get(pk=voicemail.pk))
    assert row.handled_by_id == winner.pk
    await bob_socket.disconnect()
    await nina_socket.disconnect()


@requires_callbacks
@pytest.mark.django_db(transaction=True)
async def test_call_back_from_the_console_schedules_a_callback(bob, tenant_a):
    from conversations.models import Callback

    voicemail = await database_sync_to_async(make_voicemail)(tenant_a, transcript="Call me about my bill")
    communicator, _ = await console_for(bob)
    await communicator.send_json_to({"type": "voicemail.callback", "voicemail_id": voicemail.pk})
    ok = await receive_until(communicator, lambda m: m["type"] in ("ok", "error"))
    assert ok["type"] == "ok" and ok["action"] == "voicemail.callback" and ok["callback_id"]
    callback = await read(lambda: Callback.objects.get(pk=ok["callback_id"]))
    assert callback.source == "voicemail" and callback.reason == "Voicemail: Call me about my bill"
    row = await read(lambda: Voicemail.objects.get(pk=voicemail.pk))
    assert row.handled_by_id == bob.pk
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_console_call_back_of_a_withheld_number_is_a_readable_error(bob, tenant_a):
    voicemail = await database_sync_to_async(make_voicemail)(tenant_a, caller="")
    communicator, _ = await console_for(bob)
    await communicator.send_json_to({"type": "voicemail.callback", "voicemail_id": voicemail.pk})
    error = await receive_until(communicator, lambda m: m["type"] == "error")
    assert error["code"] == "invalid" and "withheld" in error["message"]
    row = await read(lambda: Voicemail.objects.get(pk=voicemail.pk))
    assert row.handled_at is None
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_another_businesss_voicemail_is_not_found_like_a_missing_one(bob, tenant_a, tenant_b):
    foreign = await in_scope(tenant_b, lambda: make_voicemail(tenant_b))
    communicator, _ = await console_for(bob)
    answers = []
    for kind in ("voicemail.handle", "voicemail.callback"):
        for voicemail_id in (foreign.pk, 999_999):
            await communicator.send_json_to({"type": kind, "voicemail_id": voicemail_id})
            answers.append(await receive_until(communicator, lambda m: m["type"] == "error"))
    assert {a["code"] for a in answers} == {"not_found"}
    assert len({a["message"] for a in answers}) == 1
    row = await read(lambda: Voicemail.objects.get(pk=foreign.pk))
    assert row.handled_at is None
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_invalid_voicemail_messages_get_readable_errors(bob, tenant_a):
    communicator, _ = await console_for(bob)
    await communicator.send_json_to({"type": "voicemail.handle"})
    error = await receive_until(communicator, lambda m: m["type"] == "error")
    assert error["code"] == "invalid" and "'voicemail_id' is required" in error["message"]
    await communicator.disconnect()
