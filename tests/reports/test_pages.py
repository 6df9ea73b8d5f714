"""Report pages, the API and the CSV exports: the same figures everywhere, for the right people only."""

from __future__ import annotations

import csv
import io

import pytest

from reports.models import DailyTenantStats
from reports.rollup import rollup_day
from tenants.models import AgencyRole
from tenants.scoping import tenant_scope
from tests.factories import AgencyMembershipFactory, make_api_key
from tests.reports import builders as b

pytestmark = pytest.mark.django_db

ON_THE_DAY = "?start=2030-01-08&end=2030-01-08"


@pytest.fixture
def day(tenant_a, tenant_b, agency, nina):
    objs = b.build_day(tenant_a, other_tenant=tenant_b, agency=agency, agent=nina)
    with tenant_scope([tenant_a.id]):
        rollup_day(tenant_ids=[tenant_a.id], day=b.DAY, tz_name=tenant_a.timezone, now=b.AFTER)
    return objs


def url(tenant, name="", query=ON_THE_DAY):
    return f"/t/{tenant.slug}/reports/{name}{query}"


def read_csv(response) -> list[dict]:
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


def test_dashboard_shows_the_hand_counted_figures(client_for, sam, tenant_a, day):
    response = client_for(sam).get(url(tenant_a))
    assert response.status_code == 200
    totals = response.context["totals"]
    for key, value in b.EXPECTED_TOTALS.items():
        assert totals[key] == value, key
    html = response.content.decode()
    assert 'data-figure="containment_pct">37.5%' in html
    assert 'data-figure="service_level_pct">33.3%' in html
    assert 'id="report-data"' in html and "report_charts.js" in html
    assert "Asked for human" in html  # reasons, largest first


def test_queue_filter_narrows_escalation_figures_only(client_for, alice, tenant_a, day):
    response = client_for(alice).get(url(tenant_a, query=f"{ON_THE_DAY}&queue={day['billing'].pk}"))
    totals = response.context["totals"]
    assert (totals["escalations"], totals["sl_met"], totals["sl_counted"]) == (1, 1, 1)
    assert totals["contacts"] == 8  # the business's, whatever the queue
    assert [r["reason_code"] for r in response.context["summary"]["reasons"]] == ["urgent"]


def test_another_tenants_queue_is_a_404(client_for, alice, charlie, tenant_a, tenant_b, day):
    assert client_for(charlie).get(url(tenant_b, query=f"?queue={day['front'].pk}")).status_code == 404
    assert client_for(alice).get(url(tenant_a, query="?queue=abc")).status_code == 404


def test_period_switch_defaults_and_bad_periods(client_for, alice, tenant_a, day):
    client = client_for(alice)
    for key in ("today", "7d", "30d"):
        response = client.get(url(tenant_a, query=f"?period={key}"))
        assert response.status_code == 200 and response.context["period"].key == key
    response = client.get(url(tenant_a, query="?period=year"))
    assert response.status_code == 200 and response.context["period"].key == "7d"
    assert "is not a period" in response.content.decode()


def test_api_summary_equals_the_page(client_for, alice, tenant_a, day):
    page = client_for(alice).get(url(tenant_a)).context["summary"]
    api = client_for(alice).get(f"/api/v1/tenants/{tenant_a.slug}/reports/summary/{ON_THE_DAY}").json()
    for key, value in page["totals"].items():
        assert api["totals"][key] == value, key
    assert [d["contacts"] for d in api["days"]] == [d["contacts"] for d in page["days"]]
    assert [(q["name"], q["service_level_pct"]) for q in api["queues"]] == [
        (q["name"], q["service_level_pct"]) for q in page["queues"]
    ]
    assert api["period"] == {
        "key": "custom",
        "label": page["period"]["label"],
        "start": "2030-01-08",
        "end": "2030-01-08",
    }


def test_api_with_a_read_only_key_and_bad_input(client, tenant_a, day):
    _, key = make_api_key(tenant_a, "read")
    auth = {"HTTP_AUTHORIZATION": f"Api-Key {key}"}
    base = f"/api/v1/tenants/{tenant_a.slug}/reports"
    assert client.get(f"{base}/summary/{ON_THE_DAY}", **auth).json()["totals"]["contacts"] == 8
    bad = client.get(f"{base}/summary/?start=2030-01-08", **auth)
    assert bad.status_code == 400 and "YYYY-MM-DD" in bad.json()["error"]["message"]
    assert client.get(f"{base}/summary/?queue=999999", **auth).status_code == 404
    funnel = client.get(f"{base}/funnel/{ON_THE_DAY}", **auth).json()
    assert {s["step"]: s["reached"] for s in funnel[0]["steps"]} == {k: v[0] for k, v in b.EXPECTED_FUNNEL.items()}
    unmatched = client.get(f"{base}/unmatched/{ON_THE_DAY}", **auth).json()
    assert [(g["label"], g["turns"]) for g in unmatched] == [
        ("Do you do teeth whitening?", 3),
        ("Can I bring my dog?", 1),
    ]


def test_funnel_page_lists_steps_in_the_scripts_order(client_for, sam, tenant_a, day):
    response = client_for(sam).get(url(tenant_a, "funnel/"))
    assert response.status_code == 200
    (version,) = response.context["versions"]
    assert [s["step"] for s in version["steps"]] == ["greeting", "menu", "to_person", "bye"]
    assert version["conversations"] == 4 and version["live"]
    menu = version["steps"][1]
    assert (menu["reached"], menu["continued"], menu["ended_other"], menu["escalated"]) == (4, 3, 1, 0)


def test_daily_csv_has_the_hand_counted_figures(client_for, sam, tenant_a, day):
    response = client_for(sam).get(url(tenant_a, "export/daily.csv"))
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert 'filename="alpha-dental-daily-20300108-20300108.csv"' in response["Content-Disposition"]
    (row,) = read_csv(response)
    assert row["day"] == "2030-01-08"
    for key, value in b.EXPECTED_TOTALS.items():
        assert float(row[key]) == value, key


@pytest.mark.parametrize("table", ["queues", "hourly", "reasons", "funnel", "unmatched", "agencies"])
def test_every_table_exports(client_for, alice, tenant_a, day, table):
    response = client_for(alice).get(url(tenant_a, f"export/{table}.csv"))
    assert response.status_code == 200
    rows = read_csv(response)
    assert rows, table
    if table == "queues":
        assert {r["queue"]: r["service_level_pct"] for r in rows} == {"front-desk": "20.0", "billing": "100.0"}
    if table == "hourly":
        assert sum(int(r["contacts"]) for r in rows) == 8
    if table == "agencies":
        assert rows[0]["agency"] == "Night Desk" and rows[0]["talk_seconds"] == "90.0"


def test_conversations_csv_carries_transcripts_and_defuses_formulas(client_for, sam, tenant_a, day):
    from conversations.models import Conversation

    with tenant_scope([tenant_a.id]):
        Conversation.objects.filter(pk=day["c9"].pk).update(escalation_reason="=HYPERLINK(evil)")
    response = client_for(sam).get(url(tenant_a, "export/conversations.csv"))
    rows = {r["id"]: r for r in read_csv(response)}
    assert len(rows) == 8  # the conversations started on the day
    c1 = rows[str(day["c1"].pk)]
    assert c1["caller_number"] == "+15550001" and c1["flow"] == "Main line" and c1["version"] == "1"
    assert "Caller: Do you do teeth whitening?" in c1["transcript"]
    assert "AI:" not in c1["transcript"] and c1["transcript"].count("Caller:") == 2
    assert rows[str(day["c9"].pk)]["escalation_reason"] == "'=HYPERLINK(evil)"  # a spreadsheet shows it as text


def test_exports_of_another_tenant_are_404(client_for, charlie, tenant_a, day):
    for name in ("daily", "conversations", "unmatched"):
        assert client_for(charlie).get(url(tenant_a, f"export/{name}.csv")).status_code == 404


def test_reports_are_linked_for_supervisors_not_agents(client_for, sam, bob, tenant_a, day):
    assert f"/t/{tenant_a.slug}/reports/" in client_for(sam).get(f"/t/{tenant_a.slug}/").content.decode()
    assert f"/t/{tenant_a.slug}/reports/" not in client_for(bob).get(f"/t/{tenant_a.slug}/").content.decode()
    assert client_for(bob).get(url(tenant_a)).status_code == 403


def test_agency_view_per_client_business(client_for, agency, nina, tenant_a, tenant_b, day, monkeypatch):
    from reports import views

    monkeypatch.setattr(views.timezone, "now", lambda: b.AFTER)
    boss = AgencyMembershipFactory(agency=agency, role=AgencyRole.SUPERVISOR).user
    response = client_for(boss).get(f"/agency/{agency.slug}/reports/?period=7d")
    assert response.status_code == 200
    (row,) = response.context["report"]["rows"]  # tenant_b is not a client
    assert (row["tenant"], row["handled"], row["talk_minutes"], row["within_sl_pct"]) == (tenant_a.slug, 1, 1.5, 100.0)
    assert row["business_service_level_pct"] == 33.3
    exported = read_csv(client_for(boss).get(f"/agency/{agency.slug}/reports/export.csv?period=7d"))
    assert exported[0]["business"] == tenant_a.name and exported[0]["handled"] == "1"
    assert client_for(nina).get(f"/agency/{agency.slug}/reports/").status_code == 403  # agents: no


def test_dashboard_before_any_rollup_says_so(client_for, alice, tenant_a):
    response = client_for(alice).get(url(tenant_a, query=""))
    assert response.status_code == 200
    assert "No figures yet" in response.content.decode()
    with tenant_scope([tenant_a.id]):
        assert not DailyTenantStats.objects.exists()


def test_update_today_now_rolls_up_this_business_only(client_for, sam, tenant_a, tenant_b):
    from django.utils import timezone

    with tenant_scope([tenant_a.id, tenant_b.id]):
        b.conversation(tenant_a, timezone.now())
        b.conversation(tenant_b, timezone.now())
    client = client_for(sam)
    response = client.post(f"/t/{tenant_a.slug}/reports/refresh/", {"period": "today"})
    assert response.status_code == 302 and response["Location"].endswith("/reports/?period=today")
    with tenant_scope([tenant_a.id, tenant_b.id]):
        assert list(DailyTenantStats.objects.values_list("tenant_id", "contacts")) == [(tenant_a.id, 1)]
    page = client.get(response["Location"])
    assert page.context["totals"]["contacts"] == 1 and "up to date" in page.content.decode()


@pytest.mark.django_db(transaction=True)
async def test_csv_streams_under_asgi(async_client, tenant_a, alice):
    """Under ASGI the body is an async iterator (really streamed), each batch read in the tenant's scope."""
    from channels.db import database_sync_to_async

    @database_sync_to_async  # closes its thread's connection, so the test database can be dropped
    def make_data():
        with tenant_scope([tenant_a.id]):
            for n in range(3):
                conv = b.conversation(tenant_a, b.at(10 + n), number=f"+1555000{n}", outcome="resolved")
                b.turns(conv, {"step": "menu", "utterance": f"question {n}", "reply": f"answer {n}"})

    await make_data()
    await async_client.aforce_login(alice)
    response = await async_client.get(f"/t/{tenant_a.slug}/reports/export/conversations.csv{ON_THE_DAY}")
    assert response.status_code == 200 and response.is_async
    body = b"".join([chunk async for chunk in response.streaming_content]).decode()
    rows = list(csv.DictReader(io.StringIO(body)))
    assert [r["transcript"] for r in rows] == [f"Caller: question {n}\nAI: answer {n}" for n in range(3)]
    # The test client keeps the sync thread's connection open (it disconnects close_old_connections);
    # close it so the test database can be dropped on PostgreSQL.
    from asgiref.sync import sync_to_async
    from django.db import connections

    await sync_to_async(connections.close_all)()
