"""contactcenter/sql.py: the call turn's compiled lookup and its one-statement write."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection
from django.test.utils import CaptureQueriesContext

from contactcenter.sql import PreparedLookup, insert_unless_exists, insert_with_update, update_row
from conversations.models import Conversation, Turn
from flows.services import flow_publish
from tenants.scoping import tenant_scope, unscoped
from tests.factories import make_conversation, make_flow


def _by_id():
    return PreparedLookup(
        lambda pk: (
            Conversation.objects.select_related("flow_version", "tenant")
            .defer("flow_version__nlu_model", "flow_version__definition")
            .filter(pk=pk)
            .order_by()
        ),
        reason="test",
    )


@pytest.fixture
def conversations(tenant_a, tenant_b):
    with tenant_scope([tenant_a.id]):
        version = flow_publish(flow=make_flow(tenant_a), user=None)
        mine = make_conversation(tenant_a, flow_version=version, state='{"step": "menu"}', turn_count=3)
    with tenant_scope([tenant_b.id]):
        theirs = make_conversation(tenant_b)
    return mine, theirs


def test_a_prepared_lookup_builds_the_same_instances_as_the_orm(conversations):
    mine, _ = conversations
    lookup = _by_id()
    got = lookup.get(mine.pk)
    with unscoped("compare"):
        expected = (
            Conversation.objects.select_related("flow_version", "tenant")
            .defer("flow_version__nlu_model", "flow_version__definition")
            .get(pk=mine.pk)
        )
    for field in Conversation._meta.concrete_fields:
        assert getattr(got, field.attname) == getattr(expected, field.attname), field.name
    assert got.started_at == mine.started_at and got.started_at.tzinfo is not None
    with CaptureQueriesContext(connection) as captured:
        assert got.tenant.slug == mine.tenant.slug
        assert got.flow_version.content_hash == expected.flow_version.content_hash
    assert not captured.captured_queries, "related rows come with the lookup"
    assert got.flow_version.get_deferred_fields() == {"nlu_model", "definition"}
    assert got._state.adding is False and got._state.db == "default"
    assert lookup.get(10**9) is None


def test_a_prepared_lookup_is_compiled_once_and_then_only_runs(conversations, monkeypatch):
    mine, theirs = conversations
    builds = []
    lookup = PreparedLookup(
        lambda pk: builds.append(pk) or Conversation.objects.filter(pk=pk).order_by(), reason="test"
    )
    assert lookup.get(mine.pk).pk == mine.pk
    with CaptureQueriesContext(connection) as captured:
        assert lookup.get(theirs.pk).pk == theirs.pk
    assert len(captured.captured_queries) == 1
    assert len(builds) == 2, "built once to learn its model and once to compile, not per lookup"


def test_a_prepared_lookup_never_bakes_the_callers_tenant_into_its_sql(conversations, tenant_a, tenant_b):
    """Compiled inside one tenant's scope, the SQL would filter every later lookup by that tenant."""
    mine, theirs = conversations
    lookup = PreparedLookup(lambda pk: Conversation.objects.filter(pk=pk).order_by(), reason="test")
    with tenant_scope([tenant_a.id]):
        assert lookup.get(mine.pk).pk == mine.pk
    with tenant_scope([tenant_b.id]):
        assert lookup.get(theirs.pk).pk == theirs.pk


def test_a_prepared_lookup_refuses_a_query_its_key_is_not_a_parameter_of(conversations):
    mine, _ = conversations
    constant = PreparedLookup(lambda pk: Conversation.objects.filter(pk=mine.pk), reason="test")
    with pytest.raises(ValueError, match="each key must appear once"):
        constant.get(mine.pk)
    twice = PreparedLookup(lambda pk: Conversation.objects.filter(pk=pk, tenant_id=pk), reason="test")
    with pytest.raises(ValueError, match="each key must appear once"):
        twice.get(mine.pk)


def _turn(conversation, seq):
    return Turn(tenant_id=conversation.tenant_id, conversation=conversation, seq=seq, utterance="hello", actions=[{}])


def test_insert_with_update_writes_both(conversations, tenant_a):
    mine, _ = conversations
    turn = _turn(mine, 4)
    with CaptureQueriesContext(connection) as captured:
        insert_with_update(turn, Conversation, mine.pk, {"turn_count": 4, "state": '{"step": "end"}'})
    if connection.vendor == "postgresql":
        assert len(captured.captured_queries) == 1
    assert turn.pk is not None and turn._state.adding is False
    with tenant_scope([tenant_a.id]):
        saved = Turn.objects.get(pk=turn.pk)
        assert (saved.seq, saved.utterance, saved.actions) == (4, "hello", [{}])
        assert saved.created_at is not None
        mine.refresh_from_db()
    assert (mine.turn_count, mine.state) == (4, '{"step": "end"}')


def test_update_row_sets_the_fields_of_that_row_only(conversations, tenant_a, tenant_b):
    import datetime as dt
    from decimal import Decimal

    mine, theirs = conversations
    ended = dt.datetime(2026, 12, 5, 9, 30, tzinfo=dt.UTC)
    with CaptureQueriesContext(connection) as captured:
        update_row(Conversation, mine.pk, {"ended_at": ended, "price": Decimal("0.0125"), "status": "completed"})
    if connection.vendor == "postgresql":
        assert len(captured.captured_queries) == 1
    with unscoped("test: read both tenants' rows"):
        mine.refresh_from_db()
        theirs.refresh_from_db()
    assert (mine.ended_at, mine.price, mine.status) == (ended, Decimal("0.0125"), "completed")
    assert theirs.ended_at is None and theirs.status != "completed"


def test_insert_with_update_writes_neither_when_the_insert_fails(conversations, tenant_a, django_db_blocker):
    mine, _ = conversations
    insert_with_update(_turn(mine, 4), Conversation, mine.pk, {"turn_count": 4})
    from django.db import transaction

    with pytest.raises(IntegrityError), transaction.atomic():  # the test's own transaction survives
        insert_with_update(_turn(mine, 4), Conversation, mine.pk, {"turn_count": 5, "state": "lost"})
    with tenant_scope([tenant_a.id]):
        mine.refresh_from_db()
        assert (mine.turn_count, mine.state) == (4, '{"step": "menu"}')
        assert Turn.objects.filter(conversation=mine).count() == 1


def test_insert_unless_exists_inserts_once_per_key(tenant_a):
    from django.utils import timezone

    def call(caller):
        return Conversation(
            tenant_id=tenant_a.id, vonage_uuid="call-1", caller_number=caller, started_at=timezone.now()
        )

    first = call("+15555550001")
    assert insert_unless_exists(first, "vonage_uuid") is True
    assert first.pk is not None and first._state.adding is False
    again = call("+15555550002")
    assert insert_unless_exists(again, "vonage_uuid") is False
    assert again.pk is None
    with tenant_scope([tenant_a.id]):
        assert list(Conversation.objects.values_list("vonage_uuid", "caller_number")) == [("call-1", "+15555550001")]


@pytest.mark.postgres
def test_the_turns_statements_send_their_parameters_apart_and_are_prepared_once_repeated(conversations, tenant_a):
    """On PostgreSQL the turn's statements bind server-side: no parameter is quoted into the SQL text (a
    turn's long texts and JSON were escaped in Python), and psycopg prepares what it has run five times on
    a connection, so PostgreSQL stops planning it."""
    mine, _ = conversations
    lookup = _by_id()
    with CaptureQueriesContext(connection) as captured:
        lookup.get(mine.pk)
        insert_with_update(_turn(mine, 4), Conversation, mine.pk, {"turn_count": 4, "state": '{"step": "O\'Brien"}'})
    for query in captured.captured_queries:
        assert "$1" in query["sql"] and "O''Brien" not in query["sql"], query["sql"]
    with CaptureQueriesContext(connection) as repeated:
        for _ in range(6):
            lookup.get(mine.pk)
    assert all(q["sql"] and q["sql"].startswith("SELECT") for q in repeated.captured_queries), "still logged"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s", ["%conversations_conversation%"]
        )
        assert cursor.fetchone()[0] >= 1
