"""The rollups against the hand-counted day (tests/reports/builders.py) and their edge cases:
repeat contacts, callbacks vs abandonment, out-of-hours escalations, DST days, idempotency,
recomputing a past day, today's undecided escalations, the funnel and the unmatched counts."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.management import call_command

from agents.models import EscalationState
from conversations.models import Conversation
from reports.models import (
    ROLLUP_MODELS,
    AgencyDaily,
    DailyQueueStats,
    DailyTenantStats,
    EscalationReasonDaily,
    FunnelStepDaily,
    HourlyContacts,
    OpenSpan,
    UnmatchedDaily,
)
from reports.rollup import day_window, rollup_day, rollup_tenants, unfinished_days
from tenants.scoping import tenant_scope
from tests.reports import builders as b

pytestmark = pytest.mark.django_db

NY = "America/New_York"


def roll(tenant, day=b.DAY, now=b.AFTER, tz=NY):
    with tenant_scope([tenant.id]):
        return rollup_day(tenant_ids=[tenant.id], day=day, tz_name=tz, now=now)


def snapshot(tenant) -> dict:
    """Every rollup row of the tenant, without ids and timestamps of the run."""
    with tenant_scope([tenant.id]):
        return {
            model.__name__: sorted(
                (tuple(sorted((k, v) for k, v in row.items() if k not in ("id", "computed_at"))))
                for row in model.objects.filter(tenant_id=tenant.id).values()
            )
            for model in ROLLUP_MODELS
        }


@pytest.fixture
def day(tenant_a, tenant_b, agency, nina):
    return b.build_day(tenant_a, other_tenant=tenant_b, agency=agency, agent=nina)


def test_contacts_containment_callbacks_and_counts_match_the_hand_count(tenant_a, day):
    roll(tenant_a)
    with tenant_scope([tenant_a.id]):
        stats = DailyTenantStats.objects.get(tenant=tenant_a, day=b.DAY)
    assert {f: getattr(stats, f) for f in b.EXPECTED_DAILY} == b.EXPECTED_DAILY
    assert stats.computed_at == b.AFTER


def test_queue_figures_match_the_hand_count(tenant_a, day):
    roll(tenant_a)
    with tenant_scope([tenant_a.id]):
        front = DailyQueueStats.objects.get(tenant=tenant_a, day=b.DAY, queue=day["front"])
        billing = DailyQueueStats.objects.get(tenant=tenant_a, day=b.DAY, queue=day["billing"])
    assert {f: getattr(front, f) for f in b.EXPECTED_FRONT_DESK} == b.EXPECTED_FRONT_DESK
    assert {f: getattr(billing, f) for f in b.EXPECTED_BILLING} == b.EXPECTED_BILLING


def test_hours_reasons_agency_and_open_spans(tenant_a, day, agency):
    roll(tenant_a)
    with tenant_scope([tenant_a.id]):
        hours = {(h.hour, h.channel): h.contacts for h in HourlyContacts.objects.filter(tenant=tenant_a)}
        reasons = {
            (r.queue.name, r.reason_code): r.escalations for r in EscalationReasonDaily.objects.filter(tenant=tenant_a)
        }
        work = AgencyDaily.objects.get(tenant=tenant_a, day=b.DAY)
        spans = list(OpenSpan.objects.filter(tenant=tenant_a).values_list("start", "end"))
    assert hours == b.EXPECTED_HOURS
    assert reasons == b.EXPECTED_REASONS
    assert (work.agency_id, work.handled, work.answered_within_sl) == (agency.pk, 1, 1)
    assert (work.wait_seconds, work.talk_seconds) == (60.0, 90.0)  # connected +10 s, wrapped +100 s
    assert spans == [(b.at(9), b.at(17))]


def test_repeat_contact_within_48_hours_is_not_contained_and_after_48_hours_is(tenant_a, day):
    roll(tenant_a)
    with tenant_scope([tenant_a.id]):
        stats = DailyTenantStats.objects.get(tenant=tenant_a, day=b.DAY)
        # Move c2's caller's next contact to exactly 48 h later: still a repeat (within 48 h, inclusive).
        Conversation.objects.filter(tenant=tenant_a, caller_number="+15550002").exclude(pk=day["c2"].pk).update(
            started_at=b.at(11) + dt.timedelta(hours=48)
        )
    assert (stats.resolved, stats.repeat_contacts, stats.ai_resolved) == (4, 1, 3)
    roll(tenant_a)
    with tenant_scope([tenant_a.id]):
        stats = DailyTenantStats.objects.get(tenant=tenant_a, day=b.DAY)
    assert (stats.repeat_contacts, stats.ai_resolved) == (2, 2)


def test_a_caller_who_chose_a_callback_is_not_abandoned(tenant_a, day):
    roll(tenant_a)
    with tenant_scope([tenant_a.id]):
        front = DailyQueueStats.objects.get(tenant=tenant_a, day=b.DAY, queue=day["front"])
        # Had e4's caller hung up instead, abandonment would count them.
        type(day["e4"]).objects.filter(pk=day["e4"].pk).update(state=EscalationState.ABANDONED)
    assert (front.abandoned, front.chose_callback) == (1, 1)
    roll(tenant_a)
    with tenant_scope([tenant_a.id]):
        front = DailyQueueStats.objects.get(tenant=tenant_a, day=b.DAY, queue=day["front"])
    assert (front.abandoned, front.chose_callback) == (2, 0)


def test_out_of_hours_escalations_are_not_on_the_service_level_clock(tenant_a, day):
    """e5 (20:00, closed) is not counted; a holiday makes the whole day closed."""
    from flows.models import Holiday

    roll(tenant_a)
    with tenant_scope([tenant_a.id]):
        front = DailyQueueStats.objects.get(tenant=tenant_a, day=b.DAY, queue=day["front"])
        Holiday.objects.create(tenant=tenant_a, date=b.DAY, name="Staff day")
    assert (front.sl_counted, front.sl_met, front.out_of_hours) == (5, 1, 1)
    roll(tenant_a)
    with tenant_scope([tenant_a.id]):
        front = DailyQueueStats.objects.get(tenant=tenant_a, day=b.DAY, queue=day["front"])
        assert not OpenSpan.objects.filter(tenant=tenant_a).exists()
    assert (front.sl_counted, front.sl_met, front.out_of_hours) == (0, 0, 6)


def test_funnel_counts(tenant_a, day):
    roll(tenant_a)
    with tenant_scope([tenant_a.id]):
        rows = {
            r.step: (r.reached, r.ended, r.escalated)
            for r in FunnelStepDaily.objects.filter(tenant=tenant_a, flow_version=day["version"])
        }
    assert rows == b.EXPECTED_FUNNEL


def test_unmatched_utterances_are_counted_by_text(tenant_a, day):
    roll(tenant_a)
    with tenant_scope([tenant_a.id]):
        rows = {
            r.text: (r.turns, r.out_of_scope, r.low_confidence, r.flow_id)
            for r in UnmatchedDaily.objects.filter(tenant=tenant_a)
        }
    flow = day["flow"].pk
    assert rows == {
        "do you do teeth whitening?": (1, 1, 0, flow),
        "do you do teeth whitening": (1, 1, 0, flow),  # trimmed
        "how much is teeth whitening": (1, 0, 1, flow),  # understood, confidence 0.3
        "can i bring my dog?": (1, 1, 0, flow),
    }


def test_running_twice_gives_the_same_rows(tenant_a, day):
    roll(tenant_a)
    first = snapshot(tenant_a)
    roll(tenant_a, now=b.AFTER + dt.timedelta(hours=3))
    assert snapshot(tenant_a) == first
    assert all(first[name] for name in ("DailyTenantStats", "DailyQueueStats", "FunnelStepDaily", "UnmatchedDaily"))


def test_other_tenants_rows_are_untouched(tenant_a, tenant_b, day):
    roll(tenant_a)
    roll(tenant_b)
    with tenant_scope([tenant_b.id]):
        other = DailyTenantStats.objects.get(tenant=tenant_b, day=b.DAY)
    assert (other.contacts, other.resolved) == (1, 1)
    roll(tenant_a)
    with tenant_scope([tenant_b.id]):
        assert DailyTenantStats.objects.filter(tenant=tenant_b).count() == 1


def test_recompute_a_past_day_with_the_command(tenant_a, tenant_b, day, capsys):
    roll(tenant_a)
    with tenant_scope([tenant_a.id]):
        b.conversation(tenant_a, b.at(16), number="+15550099", outcome="resolved")
    call_command("reports_rollup", "--day", "2030-01-08", "--tenant", tenant_a.slug)
    assert "Rolled up 1 day(s) for 1 business(es)" in capsys.readouterr().out
    with tenant_scope([tenant_a.id, tenant_b.id]):
        stats = DailyTenantStats.objects.get(tenant=tenant_a, day=b.DAY)
        assert not DailyTenantStats.objects.filter(tenant=tenant_b).exists()  # only the business asked for
    assert (stats.contacts, stats.ai_resolved) == (9, 4)


def test_the_command_explains_bad_input(tenant_a):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="YYYY-MM-DD"):
        call_command("reports_rollup", "--day", "08/01/2030")
    with pytest.raises(CommandError, match="No business with slug: nope"):
        call_command("reports_rollup", "--day", "2030-01-08", "--tenant", "nope")


def test_today_leaves_out_escalations_that_can_still_make_it(tenant_a):
    """Rolled up at 13:00:20: waiting 20 s of 30 is undecided; waiting 80 s is already missed."""
    from flows.models import BusinessHours, Queue

    now = b.at(13, 0, 20)
    with tenant_scope([tenant_a.id]):
        BusinessHours.objects.create(tenant=tenant_a, weekly={"tue": [["09:00", "17:00"]]})
        queue = Queue.objects.create(tenant=tenant_a, name="front-desk", service_level_seconds=30)
        conv = b.conversation(tenant_a, b.at(12, 55))
        b.escalation(tenant_a, conv, queue, b.at(13), state=EscalationState.WAITING)
        other = b.conversation(tenant_a, b.at(12, 55))
        b.escalation(tenant_a, other, queue, b.at(12, 59), state=EscalationState.OFFERED)
    roll(tenant_a, now=now)
    with tenant_scope([tenant_a.id]):
        front = DailyQueueStats.objects.get(tenant=tenant_a, day=b.DAY)
    assert (front.escalations, front.sl_counted, front.sl_met) == (2, 1, 0)


def test_spring_forward_day_has_23_hours_and_local_hours(tenant_a):
    day = dt.date(2030, 3, 10)  # clocks go from 02:00 to 03:00 in New York
    start, end = day_window(day, b.NY)
    assert end - start == dt.timedelta(hours=23)
    utc = dt.UTC
    with tenant_scope([tenant_a.id]):
        for moment in (
            dt.datetime(2030, 3, 10, 5, 30, tzinfo=utc),  # 00:30 EST
            dt.datetime(2030, 3, 10, 7, 30, tzinfo=utc),  # 03:30 EDT (there is no 02:30)
            dt.datetime(2030, 3, 11, 3, 30, tzinfo=utc),  # 23:30 EDT, still the 10th
            dt.datetime(2030, 3, 11, 4, 30, tzinfo=utc),  # 00:30 EDT on the 11th: next day
            dt.datetime(2030, 3, 10, 4, 30, tzinfo=utc),  # 23:30 EST on the 9th: day before
        ):
            b.conversation(tenant_a, moment, number="+15550123")
    roll(tenant_a, day=day, now=dt.datetime(2030, 3, 12, tzinfo=utc))
    with tenant_scope([tenant_a.id]):
        assert DailyTenantStats.objects.get(tenant=tenant_a, day=day).contacts == 3
        hours = dict(HourlyContacts.objects.filter(tenant=tenant_a, day=day).values_list("hour", "contacts"))
    assert hours == {0: 1, 3: 1, 23: 1}


def test_fall_back_day_has_25_hours_and_two_one_oclocks(tenant_a):
    day = dt.date(2030, 11, 3)
    start, end = day_window(day, b.NY)
    assert end - start == dt.timedelta(hours=25)
    with tenant_scope([tenant_a.id]):
        b.conversation(tenant_a, dt.datetime(2030, 11, 3, 5, 30, tzinfo=dt.UTC))  # 01:30 EDT
        b.conversation(tenant_a, dt.datetime(2030, 11, 3, 6, 30, tzinfo=dt.UTC))  # 01:30 EST
        b.conversation(tenant_a, dt.datetime(2030, 11, 4, 4, 30, tzinfo=dt.UTC))  # 23:30 EST
    roll(tenant_a, day=day, now=dt.datetime(2030, 11, 5, tzinfo=dt.UTC))
    with tenant_scope([tenant_a.id]):
        assert DailyTenantStats.objects.get(tenant=tenant_a, day=day).contacts == 3
        hours = dict(HourlyContacts.objects.filter(tenant=tenant_a, day=day).values_list("hour", "contacts"))
    assert hours == {1: 2, 23: 1}


def test_business_hours_on_a_dst_day_follow_the_wall_clock(tenant_a):
    from flows.models import BusinessHours

    day = dt.date(2030, 3, 10)
    with tenant_scope([tenant_a.id]):
        BusinessHours.objects.create(tenant=tenant_a, weekly={"sun": [["01:00", "05:00"]]})
    roll(tenant_a, day=day, now=dt.datetime(2030, 3, 12, tzinfo=dt.UTC))
    with tenant_scope([tenant_a.id]):
        (span,) = OpenSpan.objects.filter(tenant=tenant_a, day=day)
    assert span.end - span.start == dt.timedelta(hours=3)  # 01:00 EST to 05:00 EDT


def test_rollup_tenants_groups_by_time_zone_and_chunks(tenant_a, tenant_b):
    tenant_b.timezone = "Europe/London"
    tenant_b.save()
    with tenant_scope([tenant_a.id, tenant_b.id]):
        b.conversation(tenant_a, b.at(10))
        b.conversation(tenant_b, dt.datetime(2030, 1, 8, 23, 30, tzinfo=dt.UTC))  # 18:30 in New York
    result = rollup_tenants(tenants=[tenant_a, tenant_b], days_for=lambda t, now: [b.DAY], now=b.AFTER, chunk=1)
    assert (result.tenants, result.days) == (2, 2)
    with tenant_scope([tenant_a.id, tenant_b.id]):
        contacts = dict(DailyTenantStats.objects.values_list("tenant_id", "contacts"))
    assert contacts == {tenant_a.id: 1, tenant_b.id: 1}


def test_unfinished_days_finalise_yesterday_and_the_day_whose_repeat_window_closed(tenant_a):
    now = b.at(0, 30, day=dt.date(2030, 1, 11))  # just after midnight on Friday the 11th
    ids = [tenant_a.id]
    with tenant_scope(ids):
        assert unfinished_days(ids, NY, now) == {tenant_a.id: [dt.date(2030, 1, 8), dt.date(2030, 1, 10)]}
    roll(tenant_a, day=dt.date(2030, 1, 10), now=now)
    roll(tenant_a, day=dt.date(2030, 1, 8), now=b.at(23, day=dt.date(2030, 1, 10)))  # before its window closed
    with tenant_scope(ids):
        assert unfinished_days(ids, NY, now) == {tenant_a.id: [dt.date(2030, 1, 8)]}
    roll(tenant_a, day=dt.date(2030, 1, 8), now=now)
    with tenant_scope(ids):
        assert unfinished_days(ids, NY, now) == {}
