"""A call end to end through the real webhooks, as Vonage sends it: signed, retried, out of order,
and with our own server failing. Every NCCO returned is validated against the strict models."""

from __future__ import annotations

import json
import uuid

import pytest
from django.conf import settings
from django.db import DatabaseError, connection

from conversations.models import CallEvent, Conversation, Lead, Outcome, Voicemail
from flows.services import flow_publish
from telephony.ncco import validate_ncco
from telephony.signing import sign_request
from tenants.scoping import tenant_scope, unscoped
from tests.factories import make_flow, make_phone_number

NUMBER = "+15555550100"


@pytest.fixture
def line(tenant_a, alice):
    with tenant_scope([tenant_a.id]):
        flow = make_flow(tenant_a)
        flow_publish(flow=flow, user=alice)
        number = make_phone_number(tenant_a, flow=flow)
        number.number = NUMBER
        number.fallback_number = "+15555550199"
        number.save()
    return number


def signed_post(client, path, payload, *, secret=None, jti=None):
    body = json.dumps(payload).encode()
    auth = sign_request(body=body, secret=secret or settings.VONAGE_SIGNATURE_SECRET, jti=jti)
    return client.post(path, body, content_type="application/json", HTTP_AUTHORIZATION=auth)


def signed_get(client, path, params):
    auth = sign_request(body=b"", secret=settings.VONAGE_SIGNATURE_SECRET, query=list(params.items()))
    return client.get(path, params, HTTP_AUTHORIZATION=auth)


def ncco_of(response) -> list[dict]:
    assert response.status_code == 200, response.content
    ncco = response.json()
    validate_ncco(ncco)
    return ncco


def talk_text(ncco) -> str:
    return " ".join(a["text"] for a in ncco if a["action"] == "talk")


def input_url(ncco) -> str:
    return next(a for a in ncco if a["action"] == "input")["eventUrl"][0].replace(settings.SITE_URL, "")


def speech(text, confidence="0.91", call_uuid="leg-1"):
    return {
        "uuid": call_uuid,
        "conversation_uuid": "CON-1",
        "speech": {"results": [{"confidence": confidence, "text": text}]},
        "dtmf": {"digits": None, "timed_out": True},
    }


def answer(client, call_uuid="leg-1"):
    return signed_get(
        client,
        "/telephony/vonage/answer",
        {"to": NUMBER.lstrip("+"), "from": "15555550123", "uuid": call_uuid, "conversation_uuid": "CON-1"},
    )


def test_a_call_is_answered_understood_and_recorded(client, line, tenant_a):
    first = ncco_of(answer(client))
    assert "Hello, thanks for calling." in talk_text(first)
    speech_input = next(a for a in first if a["action"] == "input")
    assert set(speech_input["type"]) == {"speech", "dtmf"}
    assert "hours" in " ".join(speech_input["speech"]["context"]).lower() or speech_input["speech"]["context"]
    second = ncco_of(signed_post(client, input_url(first), speech("Is there parking?")))
    assert "Free parking is behind the building." in talk_text(second)
    with unscoped("test assertions"):
        conversation = Conversation.objects.get(vonage_uuid="leg-1")
        turns = list(conversation.turns.order_by("seq"))
    assert conversation.tenant_id == tenant_a.id and conversation.dialled_number == NUMBER
    assert conversation.caller_number == "15555550123"
    assert [t.event for t in turns] == ["start", "utterance"]
    assert turns[1].utterance == "Is there parking?" and turns[1].asr_confidence == pytest.approx(0.91)
    assert turns[1].intent == "faq:parking" and turns[1].reason_code and turns[1].latency_ms is not None


def test_silence_reprompts_and_dtmf_zero_escalates_to_a_held_conversation(client, line):
    first = ncco_of(answer(client))
    silence = {"uuid": "leg-1", "speech": {"timeout_reason": "start_timeout", "results": []}, "dtmf": {"digits": None}}
    again = ncco_of(signed_post(client, input_url(first), silence))
    assert any(a["action"] == "input" for a in again), "silence must be met with a reprompt, not dead air"
    held = ncco_of(
        signed_post(client, input_url(again), {"uuid": "leg-1", "dtmf": {"digits": "0", "timed_out": False}})
    )
    conversation_action = next(a for a in held if a["action"] == "conversation")
    assert conversation_action["name"].startswith("sb-") and conversation_action["musicOnHoldUrl"][0].endswith(
        "hold.mp3"
    )
    with unscoped("test assertions"):
        conversation = Conversation.objects.get(vonage_uuid="leg-1")
    assert conversation.outcome == Outcome.ESCALATED and conversation.escalation_reason == "caller_requested_human"


def test_unknown_or_inactive_number_gets_a_polite_message_and_hang_up(client, line):
    ncco = ncco_of(signed_get(client, "/telephony/vonage/answer", {"to": "15555559999", "from": "1555", "uuid": "x"}))
    assert "not in service" in talk_text(ncco) and len(ncco) == 1
    with unscoped("deactivate"):
        line.active = False
        line.save()
    ncco = ncco_of(answer(client, "leg-2"))
    assert "not in service" in talk_text(ncco)
    with unscoped("test assertions"):
        assert not Conversation.objects.exists()


@pytest.mark.parametrize("header", [None, "Bearer not-a-jwt"])
def test_unsigned_or_forged_requests_get_401_and_change_nothing(client, line, header):
    kwargs = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.get("/telephony/vonage/answer", {"to": NUMBER, "from": "1", "uuid": "forged"}, **kwargs)
    assert response.status_code == 401
    forged = signed_post(
        client, "/telephony/vonage/event", {"uuid": "forged", "status": "completed"}, secret="wrong-secret"
    )
    assert forged.status_code == 401
    with unscoped("test assertions"):
        assert not Conversation.objects.exists() and not CallEvent.objects.exists()


def test_a_tampered_body_is_rejected(client, line):
    body = json.dumps({"uuid": "leg-1", "status": "completed"}).encode()
    auth = sign_request(body=body, secret=settings.VONAGE_SIGNATURE_SECRET)
    response = client.post(
        "/telephony/vonage/event",
        body.replace(b"completed", b"answered"),
        content_type="application/json",
        HTTP_AUTHORIZATION=auth,
    )
    assert response.status_code == 401


def test_a_replayed_request_is_rejected(client, line):
    jti = str(uuid.uuid4())
    assert (
        signed_post(client, "/telephony/vonage/event", {"uuid": "a", "status": "ringing"}, jti=jti).status_code == 200
    )
    assert (
        signed_post(client, "/telephony/vonage/event", {"uuid": "a", "status": "ringing"}, jti=jti).status_code == 401
    )


def test_status_events_are_idempotent_and_never_go_backwards(client, line):
    first = ncco_of(answer(client))
    ncco_of(signed_post(client, input_url(first), speech("is there parking")))
    completed = {
        "uuid": "leg-1",
        "status": "completed",
        "timestamp": "2030-01-07T17:03:00.000Z",
        "duration": "180",
        "price": "0.012",
        "rate": "0.004",
    }
    for _ in range(2):  # Vonage retries
        assert signed_post(client, "/telephony/vonage/event", completed).status_code == 200
    late = {"uuid": "leg-1", "status": "answered", "timestamp": "2030-01-07T17:00:01.000Z"}
    assert signed_post(client, "/telephony/vonage/event", late).status_code == 200
    with unscoped("test assertions"):
        conversation = Conversation.objects.get(vonage_uuid="leg-1")
        assert CallEvent.objects.filter(status="completed").count() == 1
    assert conversation.status == "completed" and conversation.duration_seconds == 180
    assert conversation.outcome == Outcome.RESOLVED  # an FAQ was answered before the caller hung up
    assert str(conversation.price) == "0.01200"


def test_a_status_event_stays_within_its_query_budget(client, line, django_assert_max_num_queries):
    """The end of every call: the conversation by its Vonage uuid, then the event and the update in one
    transaction; a retried delivery stops at the event."""
    ncco_of(answer(client))
    completed = {"uuid": "leg-1", "status": "completed", "timestamp": "2030-01-07T17:03:00.000Z"}
    with django_assert_max_num_queries(8) as captured:
        assert signed_post(client, "/telephony/vonage/event", completed).status_code == 200
    # BEGIN / COMMIT are not captured (inside the test's own transaction they are a savepoint).
    queries = [q["sql"] for q in captured.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]
    with django_assert_max_num_queries(8) as again:  # SQLite (development) adds savepoints
        assert signed_post(client, "/telephony/vonage/event", completed).status_code == 200
    retried = [q["sql"].split()[0] for q in again.captured_queries if q["sql"].split()[0] in ("SELECT", "INSERT")]
    if connection.vendor == "postgresql":
        assert [sql.split()[0] for sql in queries] == ["SELECT", "INSERT", "SELECT", "UPDATE"], queries
        assert "ON CONFLICT" in queries[1] and queries[2].endswith("FOR UPDATE")
        assert retried == ["SELECT", "INSERT"], retried
    with unscoped("test assertions"):
        assert CallEvent.objects.filter(status="completed").count() == 1
        assert Conversation.objects.get(vonage_uuid="leg-1").status == "completed"


def test_retried_answer_webhook_does_not_start_a_second_conversation(client, line):
    one = ncco_of(answer(client))
    two = ncco_of(answer(client))
    assert talk_text(one) == talk_text(two)
    with unscoped("test assertions"):
        assert Conversation.objects.count() == 1


def test_voicemail_recording_becomes_a_voicemail_once(client, line):
    first = ncco_of(answer(client))
    with unscoped("conversation id"):
        conversation = Conversation.objects.get()
    payload = {
        "recording_uuid": "rec-1",
        "recording_url": "https://api.nexmo.com/v1/files/rec-1",
        "start_time": "2030-01-07T17:00:00Z",
        "end_time": "2030-01-07T17:00:42Z",
        "uuid": "leg-1",
    }
    for _ in range(2):
        assert signed_post(client, f"/telephony/vonage/recording/{conversation.pk}/", payload).status_code == 200
    with unscoped("test assertions"):
        voicemail = Voicemail.objects.get()
        conversation.refresh_from_db()
    assert voicemail.duration_seconds == 42 and conversation.outcome == Outcome.VOICEMAIL
    assert first


# --- no dead air ----------------------------------------------------------------------------------
def test_engine_error_mid_call_still_answers_with_apology_and_fallback_number(client, line, monkeypatch):
    first = ncco_of(answer(client))

    def broken(*args, **kwargs):
        raise RuntimeError("engine exploded")

    monkeypatch.setattr("telephony.services.run_turn", broken)
    ncco = ncco_of(signed_post(client, input_url(first), speech("is there parking")))
    assert "sorry" in talk_text(ncco).lower()
    connect = next(a for a in ncco if a["action"] == "connect")
    assert connect["endpoint"][0]["number"] == "15555550199"


def test_database_down_on_answer_still_answers(client, line, monkeypatch):
    def db_down(*args, **kwargs):
        raise DatabaseError("could not connect to server")

    monkeypatch.setattr("telephony.services.number_for", db_down)
    ncco = ncco_of(answer(client))
    assert "sorry" in talk_text(ncco).lower()


def test_turn_over_the_time_budget_answers_with_apology(client, line, monkeypatch, settings):
    import time

    first = ncco_of(answer(client))
    settings.VONAGE_TURN_BUDGET_SECONDS = 0.2
    real = __import__("telephony.services", fromlist=["run_turn"]).run_turn

    def slow(*args, **kwargs):
        time.sleep(0.6)
        return real(*args, **kwargs)

    monkeypatch.setattr("telephony.services.run_turn", slow)
    ncco = ncco_of(signed_post(client, input_url(first), speech("is there parking")))
    assert "sorry" in talk_text(ncco).lower()


def test_fallback_endpoint_hands_the_caller_to_the_business(client, line):
    ncco = ncco_of(
        signed_post(client, "/telephony/vonage/fallback", {"to": NUMBER.lstrip("+"), "from": "1", "uuid": "z"})
    )
    assert next(a for a in ncco if a["action"] == "connect")["endpoint"][0]["number"] == "15555550199"


def test_lead_fields_captured_on_a_call_land_on_a_lead(client, tenant_a, alice):
    from flows.demo import load_example

    flow = load_example(tenant_a, "dental.yaml")
    with tenant_scope([tenant_a.id]):
        make_phone_number(tenant_a, flow=flow, number="+15555550177")
    call = signed_get(client, "/telephony/vonage/answer", {"to": "15555550177", "from": "15555550123", "uuid": "d-1"})
    ncco = ncco_of(call)
    texts = []
    for said in (
        "I'd like to book a cleaning",
        "Jane Doe",
        "six one seven, two zero one, four four five five",
        "next Tuesday at 10 am",
    ):
        if not any(a["action"] == "input" for a in ncco):
            break  # the office may be closed now; the after-hours branch takes a different path
        ncco = ncco_of(signed_post(client, input_url(ncco), speech(said, call_uuid="d-1")))
        texts.append(talk_text(ncco))
    with unscoped("test assertions"):
        conversation = Conversation.objects.get(vonage_uuid="d-1")
        leads = list(Lead.objects.filter(conversation=conversation))
        booked = conversation.turns.filter(step="ask_name").exists()
    if booked:
        assert leads and leads[0].name == "Jane Doe" and leads[0].phone.endswith("2014455"), texts


def test_a_caller_turn_stays_within_its_query_budget(client, line, django_assert_max_num_queries):
    """The hot path of a call: one read (the conversation) and one short write transaction per turn."""
    first = ncco_of(answer(client))
    ncco_of(signed_post(client, input_url(first), speech("is there parking")))  # warm the compiled flow
    with django_assert_max_num_queries(5) as captured:
        ncco_of(signed_post(client, input_url(first), speech("when are you open")))
    statements = [q["sql"].split()[0] for q in captured.captured_queries]
    if connection.vendor == "postgresql":
        # The read, then the transcript line and the new state in one statement (its own transaction).
        assert statements == ["SELECT", "WITH"], statements
    else:
        assert statements.count("SELECT") == 1, statements
    # The published version's trained model (about a megabyte) and script are compiled once per process;
    # reading them again with every turn cost more than the rest of the turn.
    select = next(q["sql"] for q in captured.captured_queries if q["sql"].startswith("SELECT"))
    assert "nlu_model" not in select and '"definition"' not in select, select


@pytest.mark.postgres
def test_a_caller_turn_updates_its_conversation_in_place_without_new_index_entries(client, line):
    """Every turn rewrites the conversation's row (its state). PostgreSQL can do that as a HOT update, with
    no new entry in any of the table's indexes, as long as no indexed column changes and the page has room
    (the table keeps 30% of each page free)."""
    first = ncco_of(answer(client))
    ncco_of(signed_post(client, input_url(first), speech("is there parking")))
    table = Conversation._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_stat_get_xact_tuples_updated(%s::regclass), pg_stat_get_xact_tuples_hot_updated(%s::regclass)",
            [table, table],
        )
        updated_before, hot_before = cursor.fetchone()
    for said in ("when are you open", "is there parking"):
        ncco_of(signed_post(client, input_url(first), speech(said)))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_stat_get_xact_tuples_updated(%s::regclass), pg_stat_get_xact_tuples_hot_updated(%s::regclass)",
            [table, table],
        )
        updated, hot = cursor.fetchone()
    assert updated > updated_before, "the turns updated the conversation"
    assert hot - hot_before == updated - updated_before, "every one of those updates was HOT"


@pytest.mark.postgres
def test_the_conversations_table_keeps_room_in_its_pages_for_those_updates(db):
    import importlib

    from django.apps import apps

    migration = importlib.import_module("conversations.migrations.0003_turn_index_and_hot_updates")
    table = Conversation._meta.db_table
    with connection.schema_editor(atomic=False) as editor:
        migration.set_fillfactor(apps, editor)
    with connection.cursor() as cursor:
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = %s", [table])
        assert cursor.fetchone()[0] == ["fillfactor=70"]
    with connection.schema_editor(atomic=False) as editor:
        migration.reset_fillfactor(apps, editor)
    with connection.cursor() as cursor:
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = %s", [table])
        assert cursor.fetchone()[0] is None


def test_the_answer_webhook_does_not_read_the_trained_model_of_a_compiled_script(
    client, line, django_assert_max_num_queries
):
    ncco_of(answer(client))  # compiles the script in this process
    with django_assert_max_num_queries(9) as captured:
        assert ncco_of(answer(client, call_uuid="second-call"))[0]["action"] == "talk"
    assert not [q["sql"] for q in captured.captured_queries if "nlu_model" in q["sql"]]
    if connection.vendor == "postgresql":
        # The number, the new conversation (unless Vonage retried), the opening turn with the state.
        assert [q["sql"].split()[0] for q in captured.captured_queries] == ["SELECT", "INSERT", "WITH"]


def test_the_hold_music_url_follows_the_static_files_settings_and_keeps_a_cdn_origin(settings):
    from conversations.models import Conversation as Conv
    from telephony.services import voice_context

    call = Conv(pk=5, tenant_id=1, dialled_number=NUMBER)
    first = voice_context(call, None, "en-US", None).hold_music_url
    assert first.endswith("/static/audio/hold.mp3"), first
    settings.STATIC_URL = "https://cdn.example/assets/"
    assert voice_context(call, None, "en-US", None).hold_music_url == "https://cdn.example/assets/audio/hold.mp3"
