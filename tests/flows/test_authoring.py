"""Authoring as a tenant admin does it: edit steps with field-level errors, check, publish, roll back,
compare versions, move flows as YAML, simulate, and keep business hours."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from flows import services
from flows.engine import ConversationState, Event
from flows.models import BusinessHours, Flow, FlowVersion, Holiday, Step
from flows.runtime import compiled_version, run_turn
from tenants.scoping import tenant_scope
from tests.factories import make_flow

NOON_MONDAY = dt.datetime(2030, 1, 7, 17, 0, tzinfo=dt.UTC)  # 12:00 in New York


@pytest.fixture
def scoped(tenant_a):
    with tenant_scope([tenant_a.id]):
        yield


@pytest.fixture
def flow(scoped, tenant_a):
    return make_flow(tenant_a)


def say_texts(actions) -> list[str]:
    return [getattr(a, "text", None) or getattr(a, "prompt", "") for a in actions]


def test_publish_freezes_a_validated_version_that_runs(flow, alice):
    version = services.flow_publish(flow=flow, user=alice, note="first")
    flow.refresh_from_db()
    assert flow.published_version == version and version.number == 1
    assert version.nlu_model  # trained at publish
    compiled = compiled_version(version)
    turn = run_turn(compiled, None, Event.start(NOON_MONDAY))
    assert "Hello, thanks for calling." in say_texts(turn.actions)
    turn = run_turn(compiled, turn.state, Event.utterance("um, is there parking?", NOON_MONDAY))
    assert "Free parking is behind the building." in say_texts(turn.actions)


def test_editing_the_draft_does_not_change_the_live_version(flow, alice):
    version = services.flow_publish(flow=flow, user=alice)
    Step.objects.filter(flow=flow, key="greeting").update(config={"text": "Changed!", "next": "menu"})
    turn = run_turn(compiled_version(version), None, Event.start(NOON_MONDAY))
    assert "Hello, thanks for calling." in say_texts(turn.actions)


def test_publish_refuses_a_broken_draft_with_a_readable_report_and_changes_nothing(flow, alice):
    Step.objects.filter(flow=flow, key="greeting").update(config={"text": "Hi", "next": "menuu"})
    with pytest.raises(services.PublishRefused) as refused:
        services.flow_publish(flow=flow, user=alice)
    messages = " ".join(p.message for p in refused.value.problems)
    assert "menuu" in messages and "menu" in messages  # names the bad reference and suggests the fix
    assert not FlowVersion.objects.filter(flow=flow).exists()


def test_publish_refuses_an_undefined_queue(flow, alice):
    Step.objects.filter(flow=flow, key="to_person").update(config={"queue": "billing", "text": "One moment."})
    with pytest.raises(services.PublishRefused) as refused:
        services.flow_publish(flow=flow, user=alice)
    assert any("billing" in p.message for p in refused.value.problems)


def test_rollback_makes_an_earlier_script_live_as_a_new_version(flow, alice):
    v1 = services.flow_publish(flow=flow, user=alice)
    Step.objects.filter(flow=flow, key="greeting").update(config={"text": "New greeting.", "next": "menu"})
    v2 = services.flow_publish(flow=flow, user=alice)
    assert any("New greeting." in line for line in services.version_diff(v1, v2))
    v3 = services.flow_rollback(flow=flow, version=v1, user=alice)
    flow.refresh_from_db()
    assert (v3.number, flow.published_version_id, v3.definition) == (3, v3.id, v1.definition)
    turn = run_turn(compiled_version(v3), None, Event.start(NOON_MONDAY))
    assert "Hello, thanks for calling." in say_texts(turn.actions)


def test_yaml_round_trip_and_bad_yaml_changes_nothing(flow, tenant_a):
    text = services.flow_export_yaml(flow)
    assert "greeting" in text and "Free parking" in text
    copy = services.flow_import_yaml(tenant=tenant_a, text=text.replace("name: Main line", "name: Copy"))
    assert sorted(copy.steps.values_list("key", flat=True)) == sorted(flow.steps.values_list("key", flat=True))
    before = list(flow.steps.values_list("key", "config"))
    with pytest.raises(services.ImportRefused) as refused:
        services.flow_import_yaml(tenant=tenant_a, flow=flow, text="name: x\nsteps:\n  - id: a\n    kind: sayy\n")
    assert any("line" in m for m in refused.value.messages)
    assert list(flow.steps.values_list("key", "config")) == before


def test_holiday_applies_to_live_flow_without_republishing(scoped, tenant_a, alice):
    flow = make_flow(tenant_a)
    Step.objects.filter(flow=flow, key="greeting").update(config={"text": "Hello.", "next": "hours"})
    Step.objects.create(
        tenant=tenant_a,
        flow=flow,
        key="hours",
        kind="hours_branch",
        config={"open": "menu", "closed": "bye", "holiday": "holiday_msg"},
    )
    Step.objects.create(
        tenant=tenant_a, flow=flow, key="holiday_msg", kind="end", config={"text": "Closed for the holiday."}
    )
    BusinessHours.objects.create(
        tenant=tenant_a, weekly={d: [["08:00", "18:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}
    )
    version = services.flow_publish(flow=flow, user=alice)
    assert "How can I help?" in say_texts(run_turn(compiled_version(version), None, Event.start(NOON_MONDAY)).actions)
    Holiday.objects.create(tenant=tenant_a, date=dt.date(2030, 1, 7), name="Staff day")
    assert "Closed for the holiday." in say_texts(
        run_turn(compiled_version(version), None, Event.start(NOON_MONDAY)).actions
    )


def test_a_calendar_change_made_by_another_process_reaches_this_one_within_a_second(
    scoped, tenant_a, alice, monkeypatch
):
    """A busy process re-reads the calendar's shared version at most once a second per tenant."""
    import uuid

    from django.core.cache import cache

    from flows import runtime

    flow = make_flow(tenant_a)
    Step.objects.filter(flow=flow, key="greeting").update(config={"text": "Hello.", "next": "hours"})
    Step.objects.create(
        tenant=tenant_a, flow=flow, key="hours", kind="hours_branch", config={"open": "menu", "closed": "bye"}
    )
    BusinessHours.objects.create(tenant=tenant_a, weekly={"mon": [["08:00", "18:00"]]})
    version = services.flow_publish(flow=flow, user=alice)
    clock = [1000.0]
    monkeypatch.setattr(runtime.time, "monotonic", lambda: clock[0])
    assert "How can I help?" in say_texts(run_turn(compiled_version(version), None, Event.start(NOON_MONDAY)).actions)
    # Another process closes Mondays: it writes the rows and bumps the shared version, not this process's memo.
    BusinessHours.objects.filter(tenant=tenant_a).update(weekly={"tue": [["08:00", "18:00"]]})  # no signal
    cache.set(runtime.CALENDAR_VERSION_KEY.format(tenant_id=tenant_a.id), uuid.uuid4().hex, timeout=None)
    clock[0] += 0.5
    assert "How can I help?" in say_texts(run_turn(compiled_version(version), None, Event.start(NOON_MONDAY)).actions)
    clock[0] += runtime.CALENDAR_RECHECK_SECONDS
    assert "How can I help?" not in say_texts(
        run_turn(compiled_version(version), None, Event.start(NOON_MONDAY)).actions
    )


# --- the admin, as a tenant admin uses it -------------------------------------------------------
def test_step_form_errors_name_the_field_and_the_fix(client_for, alice, flow):
    client = client_for(alice)
    url = reverse("admin:flows_step_add") + "?kind=ask"
    response = client.post(
        url,
        {
            "flow": flow.pk,
            "key": "ask_age",
            "kind": "ask",
            "position": 50,
            "setting_slot": "age",
            "setting_slot_type": "numbr",
            "setting_prompt": "",
            "setting_max_attempts": 3,
        },
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "setting_prompt" in errors and "setting_slot_type" in errors
    assert not Step.objects.filter(flow=flow, key="ask_age").exists()
    response = client.post(
        url,
        {
            "flow": flow.pk,
            "key": "ask_age",
            "kind": "ask",
            "position": 50,
            "setting_slot": "age",
            "setting_slot_type": "number",
            "setting_prompt": "How old are you?",
            "setting_max_attempts": 3,
            "setting_next": "bye",
            "setting_required": "on",
        },
    )
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    step = Step.objects.get(flow=flow, key="ask_age")
    assert step.config["slot_type"] == "number" and step.tenant_id == flow.tenant_id


def test_menu_routes_are_edited_as_lines(client_for, alice, flow):
    step = Step.objects.get(flow=flow, key="menu")
    url = reverse("admin:flows_step_change", args=[step.pk])
    page = client_for(alice).get(url)
    assert "hours = bye" in page.content.decode()
    response = client_for(alice).post(
        url,
        {
            "flow": flow.pk,
            "key": "menu",
            "kind": "menu",
            "position": 10,
            "setting_prompt": "What can I do for you?",
            "setting_routes": "hours = bye\nbroken line",
            "setting_max_attempts": 3,
        },
    )
    assert response.status_code == 200
    assert "write it as 'key = value'" in response.context["adminform"].form.errors["setting_routes"][0]


def test_admin_check_and_publish(client_for, alice, flow):
    client = client_for(alice)
    Step.objects.filter(flow=flow, key="greeting").update(config={"text": "Hi", "next": "nowhere"})
    report = client.get(reverse("admin:flows_flow_check", args=[flow.pk]))
    assert "nowhere" in report.content.decode() and "Publish now" not in report.content.decode()
    refused = client.post(reverse("admin:flows_flow_publish", args=[flow.pk]))
    assert refused.status_code == 400 and "nowhere" in refused.content.decode()
    Step.objects.filter(flow=flow, key="greeting").update(config={"text": "Hi", "next": "menu"})
    done = client.post(reverse("admin:flows_flow_publish", args=[flow.pk]), {"note": "launch"}, follow=True)
    assert "Published Main line v1" in done.content.decode()


def test_admin_simulator_shows_reply_intent_and_reasons(client_for, alice, flow):
    client = client_for(alice)
    url = reverse("admin:flows_flow_simulate", args=[flow.pk])
    client.post(url, {"target": "draft", "action": "restart"})
    page = client.post(url, {"target": "draft", "action": "say", "text": "when are you open today"})
    body = page.content.decode()
    assert "Goodbye." in body and "hours" in body and "Why:" in body
    client.post(url, {"target": "draft", "action": "restart"})
    client.post(url, {"target": "draft", "action": "say", "text": "what is the capital of france"})
    page = client.post(url, {"target": "draft", "action": "say", "text": "how tall is mount everest"})
    body = page.content.decode()
    assert "front-desk" in body and "repeated_misunderstanding" in body
    empty = client.post(url, {"target": "draft", "action": "say", "text": "   "})
    assert empty.status_code == 400 and "Type what the caller says" in empty.content.decode()


def test_admin_import_export_and_version_rollback(client_for, alice, flow):
    client = client_for(alice)
    exported = client.get(reverse("admin:flows_flow_export", args=[flow.pk]))
    assert exported.status_code == 200 and b"steps:" in exported.content
    bad = client.post(reverse("admin:flows_flow_import", args=[flow.pk]), {"text": "name: [unclosed"})
    assert bad.status_code == 400 and "line" in bad.content.decode()
    v1 = services.flow_publish(flow=flow, user=alice)
    services.flow_publish(flow=flow, user=alice)
    response = client.post(reverse("admin:flows_flowversion_rollback", args=[v1.pk]))
    assert response.status_code == 302
    flow.refresh_from_db()
    assert flow.published_version.rolled_back_from_id == v1.pk


def test_business_hours_form_accepts_split_shifts_and_names_the_bad_day(client_for, alice, tenant_a, scoped):
    client = client_for(alice)
    url = reverse("admin:flows_businesshours_add")
    bad = client.post(url, {"mon": "17:00-08:00", "tue": "", "wed": "", "thu": "", "fri": "", "sat": "", "sun": ""})
    assert bad.status_code == 200
    assert "mon" in bad.context["adminform"].form.errors
    ok = client.post(
        url, {"mon": "08:00-12:00, 13:00-17:00", "tue": "", "wed": "", "thu": "", "fri": "", "sat": "", "sun": ""}
    )
    assert ok.status_code == 302
    assert BusinessHours.objects.get(tenant=tenant_a).weekly == {"mon": [["08:00", "12:00"], ["13:00", "17:00"]]}


def test_demo_dental_flow_is_published_and_escalates_emergencies(settings, db):
    settings.SWITCHBOARD_DEMO_DATA = True
    from contactcenter.demo import load_demo
    from tenants.models import Tenant

    assert load_demo() is True
    dental = Tenant.objects.get(slug="bright-smile-dental")
    with tenant_scope([dental.id]):
        flow = Flow.objects.get()
        compiled = compiled_version(flow.published_version)
        state = None
        when = dt.datetime(2030, 1, 8, 15, 0, tzinfo=dt.UTC)  # Tuesday 10:00 in New York
        turn = run_turn(compiled, state, Event.start(when))
        turn = run_turn(
            compiled, turn.state, Event.utterance("I think I have a dental emergency, my face is swollen", when)
        )
        transfer = [a for a in turn.actions if a.type == "transfer"]
        assert transfer and transfer[0].queue == "urgent" and transfer[0].summary.reason_code == "urgent_keyword"
    assert load_demo() is False  # loads once
    from telephony.models import PhoneNumber

    with tenant_scope([dental.id]):
        assert PhoneNumber.objects.get(number="+15555550100").flow.published_version is not None
    plumbing = Tenant.objects.get(slug="northside-plumbing")
    with tenant_scope([plumbing.id]):
        assert Flow.objects.get().published_version is not None


def test_conversation_state_round_trips(flow, alice):
    version = services.flow_publish(flow=flow, user=alice)
    turn = run_turn(compiled_version(version), None, Event.start(NOON_MONDAY))
    assert ConversationState.from_json(turn.state.to_json()) == turn.state


def test_a_new_business_gets_a_starter_script_that_publishes(db):
    from tenants.models import Tenant
    from tenants.services import tenant_create
    from tests.factories import UserFactory

    owner = UserFactory()
    tenant = tenant_create(name="Corner Bakery", timezone_name="Europe/London", owner=owner)
    tenant = Tenant.objects.get(pk=tenant.pk)
    with tenant_scope([tenant.id]):
        flow = Flow.objects.get()
        assert flow.published_version is None  # a draft: the owner approves the answers first
        greeting = flow.steps.get(key="greeting")
        assert greeting.config["text"] == "Thanks for calling Corner Bakery."
        version = services.flow_publish(flow=flow, user=owner)
        assert version.definition["hours"]["timezone"] == "Europe/London"
