"""Two shortcuts for the few queries every call turn runs, where the ORM's own cost showed in profiles.

``PreparedLookup``: a queryset that is always the same but for the value it looks up (a conversation by
id, say) is compiled to SQL once per process and database, then run with the new value; rows become model
instances (``select_related`` included) exactly as the ORM builds them. Building and compiling a
``select_related`` + ``defer`` queryset cost more CPU than PostgreSQL took to answer it.

``insert_with_update``: save a new row and update another in one statement on PostgreSQL (a data-modifying
``WITH``): one round trip and its own transaction instead of BEGIN, INSERT, UPDATE, COMMIT. Elsewhere
(SQLite in development) the same writes run in one ``transaction.atomic`` block.

``insert_unless_exists``: save a new row unless one with the same unique key exists (``ON CONFLICT DO
NOTHING`` on PostgreSQL: one statement where a check, a savepoint and an insert were four).

Neither sends model signals (``pre_save``/``post_save``); use them only for models nothing listens to.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db import IntegrityError, connections, router, transaction
from django.db.models import Model, QuerySet
from django.db.models.query import get_related_populators

from tenants.scoping import unscoped


def _cursor(connection):
    """Django's cursor for these statements (query logging and error translation included), on PostgreSQL
    with server-side binding: the parameters travel apart from the SQL, and psycopg prepares a statement it
    has run five times on the connection (``prepare_threshold``), so PostgreSQL stops planning it again.
    Django's own cursors quote every parameter into the SQL text, in Python, and PostgreSQL plans every
    statement: for a turn's write that was 74-97 us of client CPU and 277-287 us of PostgreSQL against
    58-66 us and 177-187 us this way (``bench/turn_write_binding.py``)."""
    if connection.vendor != "postgresql":
        return connection.cursor()
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    with connection.wrap_database_errors:
        return connection._prepare_cursor(_server_binding_cursor_class()(connection.connection))


@functools.cache
def _server_binding_cursor_class() -> type:
    """Django's server-binding cursor that keeps the executed SQL for Django's query log: once psycopg
    runs a statement prepared, the cursor forgets its text (``_query`` is None), and Django's log (tests,
    DEBUG) would record None. Built on first use: only PostgreSQL needs the psycopg backend imported."""
    from django.db.backends.postgresql.base import ServerBindingCursor

    class LoggedServerBindingCursor(ServerBindingCursor):
        def execute(self, query, params=None, **kwargs):
            result = super().execute(query, params, **kwargs)
            if self._query is None:  # ran as a prepared statement
                self._query = _Sent(query.encode() if isinstance(query, str) else bytes(query))
            return result

    return LoggedServerBindingCursor


class _Sent:
    """What Django's query log reads of a statement psycopg ran prepared (``cursor._query.query``)."""

    __slots__ = ("query",)

    def __init__(self, query: bytes):
        self.query = query


class _Compiled:
    __slots__ = ("sql", "params", "positions", "converters", "model", "init_list", "start", "end", "related", "db")


class PreparedLookup:
    """``build(*keys)`` returns the queryset for those keys; ``get(*keys)`` runs it and returns the first row
    as a model instance (or None).

    The queryset is compiled unscoped (``reason`` says why, as for ``tenants.scoping.unscoped``): its keys
    must identify the row on their own, and no tenant filter can be baked into the SQL that all later
    calls reuse. The build is called with sentinel keys, each of which must appear once among the SQL's
    parameters; everything else in the SQL is constant."""

    _SENTINELS = (-7_301_231_187, -7_301_231_188, -7_301_231_189)

    def __init__(self, build: Callable[..., QuerySet], *, keys: int = 1, reason: str, sentinels: Sequence = ()):
        self.build = build
        self.reason = reason
        self.sentinels = tuple(sentinels) or self._SENTINELS[:keys]
        if len(self.sentinels) != keys:
            raise ValueError("one sentinel per key")
        self._compiled: dict[tuple[str, str], _Compiled] = {}
        self._model_cls: type[Model] | None = None
        self._lock = threading.Lock()

    def _compile(self, alias: str) -> _Compiled:
        connection = connections[alias]
        key = (alias, connection.vendor)
        compiled = self._compiled.get(key)
        if compiled is not None:
            return compiled
        with unscoped(self.reason):
            queryset = self.build(*self.sentinels)
        compiler = queryset.query.get_compiler(using=alias)
        try:
            sql, params = compiler.as_sql()
        except EmptyResultSet as exc:
            raise ValueError(f"the lookup's SQL cannot be compiled with sentinel keys {self.sentinels}") from exc
        params = list(params)
        positions = []
        for sentinel in self.sentinels:
            if params.count(sentinel) != 1:
                raise ValueError(f"each key must appear once in the lookup's SQL: {sql} {params}")
            positions.append(params.index(sentinel))
        klass_info, select = compiler.klass_info, compiler.select
        compiled = _Compiled()
        compiled.sql, compiled.params, compiled.positions = sql, params, positions
        compiled.converters = compiler.get_converters([column[0] for column in select[: compiler.col_count]])
        compiled.model = klass_info["model"]
        fields = klass_info["select_fields"]
        compiled.start, compiled.end = fields[0], fields[-1] + 1
        compiled.init_list = [column[0].target.attname for column in select[compiled.start : compiled.end]]
        compiled.related = get_related_populators(klass_info, select, alias)
        compiled.db = alias
        with self._lock:
            self._compiled[key] = compiled
        return compiled

    def get(self, *keys: Any) -> Model | None:
        if len(keys) != len(self.sentinels):
            raise TypeError(f"expected {len(self.sentinels)} key(s)")
        compiled = self._compile(router.db_for_read(self._model()))
        params = list(compiled.params)
        for position, value in zip(compiled.positions, keys, strict=True):
            params[position] = value
        connection = connections[compiled.db]
        with _cursor(connection) as cursor:
            cursor.execute(compiled.sql, params)
            row = cursor.fetchone()
        if row is None:
            return None
        if compiled.converters:
            row = list(row)
            for position, (converters, expression) in compiled.converters.items():
                value = row[position]
                for converter in converters:
                    value = converter(value, expression, connection)
                row[position] = value
        obj = compiled.model.from_db(compiled.db, compiled.init_list, row[compiled.start : compiled.end])
        for populator in compiled.related:
            populator.populate(row, obj)
        return obj

    def _model(self) -> type[Model]:
        if self._model_cls is None:
            with unscoped(self.reason):
                self._model_cls = self.build(*self.sentinels).model
        return self._model_cls


def _insert_parts(obj: Model, connection) -> tuple[str, list[Any]]:
    meta = obj._meta
    fields = [f for f in meta.local_concrete_fields if not (f is meta.auto_field and obj.pk is None)]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    values = [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields]
    placeholders = ", ".join(["%s"] * len(fields))
    # Identifiers come from the model's metadata, quoted; every value is a parameter.
    return f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES ({placeholders})", values  # noqa: S608


def _update_parts(model: type[Model], pk: Any, updates: dict[str, Any], connection) -> tuple[str, list[Any]]:
    meta = model._meta
    quote = connection.ops.quote_name
    assignments, values = [], []
    for name, value in updates.items():
        field = meta.get_field(name)
        assignments.append(f"{quote(field.column)} = %s")
        values.append(field.get_db_prep_save(value, connection))
    values.append(meta.pk.get_db_prep_value(pk, connection))
    table, pk_column = quote(meta.db_table), quote(meta.pk.column)
    return f"UPDATE {table} SET {', '.join(assignments)} WHERE {pk_column} = %s", values  # noqa: S608


def insert_with_update(obj: Model, model: type[Model], pk: Any, updates: dict[str, Any]) -> None:
    """Insert ``obj`` (a new row) and set ``updates`` on ``model``'s row ``pk``, both or neither.

    ``obj`` comes back saved (its primary key set). Raises the database's error (e.g. ``IntegrityError``)
    with nothing written, as a transaction around the two would."""
    alias = router.db_for_write(type(obj))
    connection = connections[alias]
    if connection.vendor != "postgresql":
        with transaction.atomic(using=alias):
            obj.save(force_insert=True, using=alias)
            model._base_manager.using(alias).filter(pk=pk).update(**updates)
        return
    insert, insert_values = _insert_parts(obj, connection)
    update, update_values = _update_parts(model, pk, updates, connection)
    pk_column = connection.ops.quote_name(obj._meta.pk.column)
    sql = f"WITH new AS ({insert} RETURNING {pk_column}), changed AS ({update}) SELECT {pk_column} FROM new"  # noqa: S608
    with _cursor(connection) as cursor:
        cursor.execute(sql, [*insert_values, *update_values])
        obj.pk = cursor.fetchone()[0]
    obj._state.adding = False
    obj._state.db = alias


def update_row(model: type[Model], pk: Any, updates: dict[str, Any]) -> None:
    """``model._base_manager.filter(pk=pk).update(**updates)`` without building a queryset: on PostgreSQL
    one UPDATE made from the model's metadata (columns quoted, every value a parameter)."""
    alias = router.db_for_write(model)
    connection = connections[alias]
    if connection.vendor != "postgresql" or not updates:
        model._base_manager.using(alias).filter(pk=pk).update(**updates)
        return
    sql, values = _update_parts(model, pk, updates, connection)
    with _cursor(connection) as cursor:
        cursor.execute(sql, values)


def insert_unless_exists(obj: Model, unique_field: str) -> bool:
    """Insert ``obj`` unless a row with the same ``unique_field`` exists. True (and ``obj`` saved) when it
    was inserted, False when the row was already there (a retried webhook); other errors raise."""
    alias = router.db_for_write(type(obj))
    connection = connections[alias]
    if connection.vendor != "postgresql":
        try:
            with transaction.atomic(using=alias):
                obj.save(force_insert=True, using=alias)
        except IntegrityError:
            if not type(obj)._base_manager.using(alias).filter(**{unique_field: getattr(obj, unique_field)}).exists():
                raise
            return False
        return True
    insert, values = _insert_parts(obj, connection)
    quote = connection.ops.quote_name
    column = quote(obj._meta.get_field(unique_field).column)
    sql = f"{insert} ON CONFLICT ({column}) DO NOTHING RETURNING {quote(obj._meta.pk.column)}"
    with _cursor(connection) as cursor:
        cursor.execute(sql, values)
        row = cursor.fetchone()
    if row is None:
        return False
    obj.pk = row[0]
    obj._state.adding = False
    obj._state.db = alias
    return True
