"""Durable writes of route logs: one RouteLog row and its Attempt rows, atomically.

On PostgreSQL both go in one statement (data-modifying CTEs), which in autocommit mode is one
round trip including the commit, instead of BEGIN, two INSERTs and COMMIT through the ORM; the
statement is prepared once per connection and its parameters adapted without the ORM's
per-field machinery. This write sits on every routed call, so it is most of the router's
overhead. Elsewhere the ORM writes the rows in one transaction.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django.db import connection, transaction
import psycopg
from psycopg.types.json import Jsonb
from django.db.models import Field

from routing.models import Attempt, RouteLog


def save(route_log: RouteLog, attempts: list[Attempt]) -> None:
    if connection.vendor == "postgresql" and connection.get_autocommit():
        _save_postgresql(route_log, attempts)
        return
    with transaction.atomic():
        route_log.save(force_insert=True)
        for attempt in attempts:
            attempt.route_log = route_log
        Attempt.objects.bulk_create(attempts)


@cache
def _columns(model: type, *, skip: tuple[str, ...]) -> tuple[tuple[tuple[str, bool], ...], str, str]:
    """A model's insertable fields as (attname, is_json), its column list, and typed
    placeholders for them."""
    fields: list[Field] = [f for f in model._meta.concrete_fields if not f.primary_key and f.attname not in skip]
    for field in fields:
        # Values are passed as they are: only fields that need no conversion on the way in.
        if field.get_internal_type() not in _PLAIN_TYPES and field.get_internal_type() != "JSONField":
            raise TypeError(f"{model.__name__}.{field.name} needs the ORM to be written")
    quote = connection.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    # Explicit casts: a NULL or JSON parameter would otherwise reach the INSERT typed as text.
    placeholders = ", ".join(f"%s::{f.db_type(connection)}" for f in fields)
    return tuple((f.attname, f.get_internal_type() == "JSONField") for f in fields), columns, placeholders


_PLAIN_TYPES = {
    "CharField", "TextField", "BooleanField", "FloatField", "DecimalField", "DateTimeField",
    "PositiveIntegerField", "PositiveSmallIntegerField", "IntegerField", "BigIntegerField", "SlugField",
}


def _values(obj: Any, fields: tuple[tuple[str, bool], ...]) -> list[Any]:
    return [
        (None if value is None else Jsonb(value)) if is_json else value
        for value, is_json in ((getattr(obj, attname), is_json) for attname, is_json in fields)
    ]


def _save_postgresql(route_log: RouteLog, attempts: list[Attempt]) -> None:
    quote = connection.ops.quote_name
    log_fields, log_columns, log_placeholders = _columns(RouteLog, skip=())
    attempt_fields, attempt_columns, attempt_placeholders = _columns(Attempt, skip=("route_log_id",))
    log_table, attempt_table = quote(RouteLog._meta.db_table), quote(Attempt._meta.db_table)
    fk = quote(Attempt._meta.get_field("route_log").column)
    parts = [f"WITH r AS (INSERT INTO {log_table} ({log_columns}) VALUES ({log_placeholders}) RETURNING id)"]
    params = _values(route_log, log_fields)
    for index, attempt in enumerate(attempts):
        parts.append(
            f", a{index} AS (INSERT INTO {attempt_table} ({fk}, {attempt_columns}) SELECT r.id, {attempt_placeholders} FROM r)"
        )
        params += _values(attempt, attempt_fields)
    parts.append(" SELECT id FROM r")
    connection.ensure_connection()
    # The raw psycopg connection binds parameters on the server and prepares the statement,
    # so PostgreSQL parses and plans it once per connection (one per attempt count).
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        row = cursor.execute("".join(parts), params, prepare=True).fetchone()
    route_log.pk = row[0]
    route_log._state.adding = False
    route_log._state.db = connection.alias
    for attempt in attempts:
        attempt.route_log = route_log
