"""Small SQL expressions the rollups need that Django does not ship, written for SQLite and PostgreSQL."""

from __future__ import annotations

from django.db.models import FloatField, Func


class SecondsBetween(Func):
    """``end - start`` in seconds (a float; NULL when either is NULL), rounded to the millisecond.

    Rounding keeps a wait of exactly the threshold on the right side of ``<=`` on SQLite, whose
    julianday() arithmetic is off by a few microseconds.
    """

    arity = 2
    output_field = FloatField()

    def __init__(self, end, start, **extra):
        super().__init__(end, start, **extra)

    def as_sql(self, compiler, connection, **extra_context):  # pragma: no cover - every backend overrides
        raise NotImplementedError(f"SecondsBetween is not written for {connection.vendor}")

    def as_sqlite(self, compiler, connection, **extra_context):
        return super().as_sql(
            compiler,
            connection,
            template="ROUND((julianday(%(expressions)s)) * 86400.0, 3)",
            arg_joiner=") - julianday(",
            **extra_context,
        )

    def as_postgresql(self, compiler, connection, **extra_context):
        return super().as_sql(
            compiler,
            connection,
            template="ROUND(EXTRACT(EPOCH FROM (%(expressions)s))::numeric, 3)::double precision",
            arg_joiner=" - ",
            **extra_context,
        )
