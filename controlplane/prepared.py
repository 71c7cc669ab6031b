"""Prepared querysets: a hot read's SQL built and compiled by the ORM once per process, run with each call's values.

Building a queryset and compiling it to SQL is most of what a small read costs in Python (~0.5–1 ms per query on
the project's machines: `add_q`, `setup_joins`, `get_select`, `as_sql`; issue 13), and for the API's hot reads (a
tunnel by id, its connections) the SQL is the same on every call; only the values differ. A `PreparedQuery` is
written as an ordinary queryset, in a function of its parameters. The first call on a database connection's alias
builds it twice with two sets of distinct stand-in values (sentinels), checks that the SQL text is the same both
times (its shape must not depend on the values: no `IN` list of varying length, no `None` turning `=` into
`IS NULL`), and finds where each parameter's value lands in the SQL's parameters. Every later call only puts its
values in those places, runs the SQL through the connection's ordinary cursor (query counting, the debug log and
transactions see it as any other query), and turns the rows into models, tuples, named tuples or dicts with the
compiler's own converters, exactly as the queryset's iterable would (tests/controlplane/test_prepared.py holds them
equal).

A `values_list` query's rows can be built as a named tuple of the caller's (`row_class=`, a `typing.NamedTuple`
whose fields are the values_list's names, in order): a small read model for a hot list, cheaper to build than a
model instance and read by attribute as one (`values_list(named=True)` gives Django's own `Row` class).

Scoping (controlplane/scoping.py) holds as for any queryset: the queryset is checked at preparation, outside any
`system_scope`, so a prepared read of an organisation-owned table is refused unless it is tied to organisations
(`.for_org(organisation)`: the organisation's id must then come from a parameter, never a constant), or says
`.unscoped(reason)`. Rows read through `for_org` come with the organisation the caller passed, as they do from the
queryset.

Parameters are declared with their kind: a model class (an instance is passed; its primary key is bound), `uuid.UUID`,
`int` or `str`, or a list of one of these written `[uuid.UUID]` (for `__in`): the SQL differs with the list's length,
so one plan is kept per length (a bounded number: `MAX_LIST_PLANS` per query). An empty list is compiled as the ORM
compiles it: a branch of an OR that can match nothing is dropped, and a query that can match nothing runs no SQL.
Prepared querysets have no `select_related` or `prefetch_related`.

A locked read (`select_for_update()`, the re-read of a row a write transaction is about to change) keeps its
`FOR UPDATE` where the database has one (PostgreSQL; SQLite's IMMEDIATE transactions lock the whole database at
BEGIN and the ORM writes no clause), and is refused outside a transaction on every call, on every database (the ORM
refuses it on PostgreSQL only: refusing it on SQLite too lets the SQLite tests catch a lock taken in autocommit).
"""

from __future__ import annotations

import datetime
import itertools
import operator
import sqlite3
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.conf import settings
from django.core.exceptions import EmptyResultSet
from django.db import DatabaseError, connections, models, router, transaction
from django.db.models import signals
from django.db.models.base import ModelState
from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
from django.db.models.query import (
    FlatValuesListIterable,
    ModelIterable,
    NamedValuesListIterable,
    ValuesIterable,
    ValuesListIterable,
)
from django.db.models.query_utils import DeferredAttribute
from django.db.models.utils import create_namedtuple_class
from django.db.transaction import TransactionManagementError
from django.utils.dateparse import parse_datetime

from controlplane.scoping import OrgQuerySet, _system_scope, check_row_organisation

Kind = Any  # a model class, uuid.UUID, int or str, or [one of these]

# Plans kept per query for the lengths of its list parameters; beyond, a call compiles without keeping its plan.
MAX_LIST_PLANS = 256

_counter = itertools.count(1)


class PreparationError(TypeError):
    """A queryset that cannot be prepared (its SQL depends on the values, or it uses what a plan cannot replay)."""


def _sentinel(kind: Kind) -> Any:
    """A value of `kind` that appears nowhere else in any SQL's parameters."""
    n = next(_counter)
    if kind is uuid.UUID:
        return uuid.uuid4()
    if kind is int:
        # Within a 32-bit integer column's range: PostgreSQL's backend turns a comparison with a value out of the
        # column's range into "no row" (EmptyResultSet), which compiles to no SQL at all.
        return 1_900_000_000 + (n * 7919) % 200_000_000
    if kind is str:
        return f"\x1fprepared-{uuid.uuid4().hex}"
    if isinstance(kind, type) and issubclass(kind, models.Model):
        # Built as a row read with only its key (every other field deferred): no default is computed.
        pk = _sentinel(uuid.UUID if isinstance(kind._meta.pk, models.UUIDField) else int)
        return kind.from_db(None, [kind._meta.pk.attname], [pk])
    raise PreparationError(f"a prepared parameter is a model class, uuid.UUID, int or str, not {kind!r}")


def _forms(value: Any) -> list[tuple[Any, Callable[[Any], Any]]]:
    """How a parameter's value can appear among the compiled SQL's parameters, each with the conversion that
    turns a call's value into that form."""
    if isinstance(value, models.Model):
        return [(form, _of_pk(convert)) for form, convert in _forms(value.pk)]
    if isinstance(value, uuid.UUID):
        return [
            (value, _as_uuid),
            (value.hex, lambda v: _as_uuid(v).hex),
            (str(value), lambda v: str(_as_uuid(v))),
        ]
    if isinstance(value, int):
        return [(value, int)]
    return [(value, str)]


def _of_pk(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda instance: convert(instance.pk)


def _wrapped(wrapper: type, convert: Callable[[Any], Any], value: Any) -> Any:
    return wrapper(convert(value))


def _as_uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: plans key per-connection caches
class _Plan:
    sql: str
    qmark_sql: str | None  # SQLite's: placeholders already `?` (what its cursor wrapper converts on every call)
    params: tuple[Any, ...]
    slots: tuple[tuple[int, str, Callable[[Any], Any]], ...]  # (position, parameter, conversion)
    converters: tuple[tuple[int, tuple[Callable[..., Any], ...], Any], ...]
    col_count: int
    shape: str  # "model", "tuple", "named", "flat", "dict", "count", or "empty" (no query: matches nothing)
    names: tuple[str, ...] = ()  # of dict rows
    row_class: type[tuple] | None = None  # of named rows
    model: type[models.Model] | None = None  # of model rows: what ModelIterable would build
    init_list: tuple[str, ...] = ()
    model_slice: tuple[int, int] = (0, 0)
    annotations: tuple[tuple[str, int], ...] = ()
    known: tuple[tuple[Any, str, Callable[[Any], Any]], ...] = ()  # (field, parameter, row's related id getter)
    plain_build: Callable[[Any], models.Model] | None = None  # when rows may be built by filling their attributes
    for_update: bool = False  # a locked read: only inside a transaction (the ORM's check, on every call)


def _qmark(connection: Any, sql: str) -> str | None:
    """SQLite's form of the SQL (what SQLiteCursorWrapper.convert_query does on every call)."""
    if connection.vendor != "sqlite":
        return None
    from django.db.backends.sqlite3.base import FORMAT_QMARK_REGEX

    return FORMAT_QMARK_REGEX.sub("?", sql).replace("%%", "%")


def _raw_execute(connection: Any, sql: str, qmark_sql: str | None, params: list[Any]) -> Any:
    """What `connection.cursor()` + `execute` do, without the wrappers that only log: the same checks, the driver's
    own cursor (the backend's `create_cursor`, with its time zone set up; one kept per open connection), errors
    translated to Django's; on SQLite, the SQL already in the driver's `?` style. Returns the cursor, executed."""
    connection.close_if_health_check_failed()
    if connection.connection is None:
        connection.ensure_connection()
    connection.validate_thread_sharing()
    connection.validate_no_broken_transaction()
    with connection.wrap_database_errors:
        # Kept per open connection and time zone (a cursor holds the zone its datetimes are read in, on PostgreSQL).
        # On PostgreSQL, where the backend offers it (controlplane/backends/postgresql), a cursor that binds on the
        # server and prepares each plan's statement once per connection.
        kept, zone = getattr(connection, "_prepared_cursor", None), connection.timezone
        if kept is None or kept[0] is not connection.connection or kept[1] != zone:
            server = getattr(connection, "prepared_cursor", None)
            cursor = server() if server is not None else None
            kept = (connection.connection, zone, cursor or connection.create_cursor(), cursor is not None)
            connection._prepared_cursor = kept
        cursor = kept[2]
        if qmark_sql is not None:
            sqlite3.Cursor.execute(cursor, qmark_sql, params)
        elif kept[3]:
            cursor.execute(sql, params, prepare=True)
        else:
            cursor.execute(sql, params)
        return cursor


def _fetch_raw(connection: Any, plan: _Plan, params: list[Any]) -> list[Any]:
    """The rows of a plan, read through the driver's own cursor (`_raw_execute`)."""
    cursor = _raw_execute(connection, plan.sql, plan.qmark_sql, params)
    with connection.wrap_database_errors:
        return cursor.fetchall()


def _value_converter(converters: tuple[Callable[..., Any], ...], expression: Any, connection: Any) -> Any:
    """One column's converters as a function of the value. SQLite's UUID and datetime converters (Django 5.2's
    `DatabaseOperations.convert_uuidfield_value` / `convert_datetimefield_value`) are replaced by the same steps
    with `settings.USE_TZ` and the connection's time zone read once per query instead of once per value."""
    if len(converters) == 1 and connection.vendor == "sqlite":
        from django.db.backends.sqlite3.operations import DatabaseOperations  # loaded: the connection is SQLite's

        func = getattr(converters[0], "__func__", None)
        if func is DatabaseOperations.convert_uuidfield_value:
            return _uuid_or_none
        if func is DatabaseOperations.convert_datetimefield_value:
            if not settings.USE_TZ:
                return _naive_datetime
            return partial(_aware_datetime, connection.timezone)

    def convert(value: Any) -> Any:
        for converter in converters:
            value = converter(value, expression, connection)
        return value

    return convert


_new_uuid = uuid.UUID.__new__
_set = object.__setattr__


def _uuid_or_none(value: Any) -> uuid.UUID | None:
    """uuid.UUID(value) for the 32 hex digits SQLite holds, built as UUID.__init__ ends (its string clean-up and
    checks are for other inputs, which still go through it)."""
    if value is None:
        return None
    if len(value) != 32:
        return uuid.UUID(value)
    made = _new_uuid(uuid.UUID)
    _set(made, "int", int(value, 16))
    _set(made, "is_safe", uuid.SafeUUID.unknown)
    return made


# From this many rows, a read converts each distinct UUID or datetime of a column once and shares the (immutable)
# result between its rows: the live connections of a tunnel repeat their tunnel's id on every row and each
# connector's id and start time on each of its connections (a status snapshot of 1,000 connections, issue 13).
MEMO_ROWS = 16


def _memoised(step: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """`step` with a memo for one read (dropped with it: bounded by the rows read)."""
    memo: dict[Any, Any] = {}

    def run(value: Any) -> Any:
        try:
            return memo[value]
        except KeyError:
            made = memo[value] = step(value)
            return made

    return run


def _memoisable(step: Callable[[Any], Any]) -> bool:
    """SQLite's UUID and datetime steps: their results are immutable, the same for the same value."""
    return step is _uuid_or_none or step is _naive_datetime or getattr(step, "func", None) is _aware_datetime


def _naive_datetime(value: Any) -> datetime.datetime | None:
    if value is None or isinstance(value, datetime.datetime):
        return value
    return parse_datetime(value)


def _aware_datetime(zone: Any, value: Any) -> datetime.datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime.datetime):
        value = parse_datetime(value)
    if value.utcoffset() is None:  # timezone.make_aware(value, zone), which checks the same
        value = value.replace(tzinfo=zone)
    return value


def _plain_init(model: type[models.Model], attnames: tuple[str, ...]) -> bool:
    """Whether `from_db` can be done by filling the instance's attributes: Django's own `from_db` and `__init__`, and
    plain field descriptors (their `__set__` on a new instance only stores the value)."""
    if model.from_db.__func__ is not models.Model.from_db.__func__ or model.__init__ is not models.Model.__init__:  # type: ignore[attr-defined]
        return False
    return all(
        type(getattr(model, name, None)) in (DeferredAttribute, ForeignKeyDeferredAttribute) for name in attnames
    )


def _plain_builder(model: type[models.Model], attnames: tuple[str, ...]) -> Callable[[Any], models.Model]:
    """`from_db` without `Model.__init__`'s generic work (~16 → ~3 µs a row here): what it leaves in the instance is
    the same (a field not read is deferred: absent from `__dict__`, read on first access)."""
    new = model.__new__

    def build(values: Any) -> models.Model:
        obj = new(model)
        obj.__dict__.update(zip(attnames, values, strict=True))
        state = obj._state = ModelState()
        state.adding = False
        return obj

    return build


class PreparedQuery:
    """A queryset of fixed shape, compiled once per database alias: `rows(**values)`, `first(**values)`."""

    def __init__(
        self, build: Callable[..., models.QuerySet], *, row_class: type[tuple] | None = None, **kinds: Kind
    ) -> None:
        self.build = build
        self.row_class = row_class
        self.kinds = kinds
        self.name = getattr(build, "__qualname__", repr(build))
        self.lists = tuple(name for name, kind in kinds.items() if isinstance(kind, list))
        self._plans: dict[tuple[str, str, tuple[int, ...], str], _Plan] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<PreparedQuery {self.name}>"

    # -- running ------------------------------------------------------------------------------------------------

    def rows(self, *, using: str = "default", **values: Any) -> list[Any]:
        return self._run("rows", using, values)

    def first(self, *, using: str = "default", **values: Any) -> Any:
        rows = self._run("rows", using, values)
        return rows[0] if rows else None

    def bind(self, *, using: str = "default", **values: Any) -> BoundQuery:
        """The query with its values, for a paginator: `count()`, and a slice reads one page (LIMIT/OFFSET bound as
        parameters: one plan for every page)."""
        self._check_names(values)
        return BoundQuery(self, using, values)

    def _check_names(self, values: dict[str, Any]) -> None:
        if values.keys() != self.kinds.keys():
            raise TypeError(f"{self.name} takes {sorted(self.kinds)}, got {sorted(values)}")

    def _run(self, variant: str, using: str, values: dict[str, Any], page: tuple[int, int] = (0, 0)) -> Any:
        self._check_names(values)
        connection = connections[using]
        lengths = tuple(len(values[name]) for name in self.lists)
        plan = self._plans.get((using, connection.vendor, lengths, variant)) or self._prepare(using, lengths, variant)
        if plan.shape == "empty":  # the ORM's EmptyResultSet (`__in` an empty list, not under OR): no query
            return 0 if variant == "count" else []
        if plan.for_update and connection.get_autocommit():
            raise TransactionManagementError("select_for_update cannot be used outside of a transaction.")
        params = list(plan.params)
        for position, name, convert in plan.slots:
            params[position] = convert(self._value(values, name))
        if variant == "page":
            params += page
        if connection.queries_logged or connection.execute_wrappers:
            with connection.cursor() as cursor:  # Django's wrapped cursor: logged, counted, wrapped
                cursor.execute(plan.sql, params)
                rows = cursor.fetchall()
        else:
            rows = _fetch_raw(connection, plan, params)
        if variant == "count":
            return int(rows[0][0]) if rows else 0
        if plan.converters:
            rows = self._convert_all(rows, plan, connection)
        return self._shape(rows, plan, using, values)

    @staticmethod
    def _value(values: dict[str, Any], name: str) -> Any:
        """A parameter's value; `name[3]` is the fourth item of a list parameter."""
        if name in values:
            return values[name]
        name, _, index = name.rpartition("[")
        return values[name][int(index[:-1])]

    @staticmethod
    def _convert_all(rows: list[Any], plan: _Plan, connection: Any) -> list[Any]:
        """Every row through the compiler's converters; SQLite's UUID and datetime converters, the common ones, are
        run as one function each of the value alone (the same steps, with the settings they read taken once)."""
        # Built once per plan, connection, USE_TZ and zone (tests change them), kept on the connection (one per
        # thread).
        cache = connection.__dict__.setdefault("_prepared_steps", {})
        key = (plan, settings.USE_TZ, connection.timezone)
        steps = cache.get(key)
        if steps is None:
            if len(cache) >= MAX_LIST_PLANS * 4:
                cache.clear()
            steps = cache[key] = [
                (position, _value_converter(converters, expression, connection))
                for position, converters, expression in plan.converters
            ]
        if len(rows) >= MEMO_ROWS:
            steps = [(position, _memoised(step) if _memoisable(step) else step) for position, step in steps]
        out = []
        for row in rows:
            row = list(row)
            for position, step in steps:
                row[position] = step(row[position])
            out.append(row)
        return out

    @staticmethod
    def _shape(rows: list[Any], plan: _Plan, using: str, values: dict[str, Any]) -> list[Any]:
        count = plan.col_count
        if plan.shape == "tuple":
            return [tuple(row[:count]) for row in rows]
        if plan.shape == "named":  # as NamedValuesListIterable builds them
            new, row_class = tuple.__new__, plan.row_class
            if rows and len(rows[0]) == count:  # no column beyond the values (most queries): no slice
                return [new(row_class, row) for row in rows]
            return [new(row_class, row[:count]) for row in rows]
        if plan.shape == "flat":
            return [row[0] for row in rows]
        if plan.shape == "dict":
            return [dict(zip(plan.names, row[:count], strict=True)) for row in rows]
        assert plan.model is not None
        start, end = plan.model_slice
        model, init_list = plan.model, list(plan.init_list)
        if plan.plain_build and not (signals.pre_init.has_listeners(model) or signals.post_init.has_listeners(model)):
            build = plan.plain_build
        else:
            build = partial(model.from_db, using, init_list)
        out = []
        for row in rows:
            obj = build(row[start:end])
            if obj._state.db is None:
                obj._state.db = using
            for attr, position in plan.annotations:
                setattr(obj, attr, row[position])
            for field, name, getter in plan.known:
                related = values[name]
                if getter(obj) == related.pk:  # as the related descriptor would cache it, without its checks
                    obj._state.fields_cache[field.cache_name] = related
            out.append(obj)
        return out

    # -- preparing ----------------------------------------------------------------------------------------------

    def _prepare(self, using: str, lengths: tuple[int, ...], variant: str) -> _Plan:
        with self._lock:
            key = (using, connections[using].vendor, lengths, variant)
            plan = self._plans.get(key)
            if plan is None:
                plan = self._compile(using, dict(zip(self.lists, lengths, strict=True)), variant)
                if not lengths or len(self._plans) < MAX_LIST_PLANS:
                    self._plans[key] = plan
            return plan

    def _sentinels(self, lengths: dict[str, int]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The build's arguments, and the same flattened (`ids[0]`, `ids[1]`, ... for a list)."""
        arguments: dict[str, Any] = {}
        flat: dict[str, Any] = {}
        for name, kind in self.kinds.items():
            if isinstance(kind, list):
                if len(kind) != 1:
                    raise PreparationError(f"{self.name}: a list parameter is declared as [its items' kind]")
                items = arguments[name] = [_sentinel(kind[0]) for _ in range(lengths[name])]
                flat.update({f"{name}[{index}]": item for index, item in enumerate(items)})
            else:
                arguments[name] = flat[name] = _sentinel(kind)
        return arguments, flat

    def _compile(self, using: str, lengths: dict[str, int], variant: str) -> _Plan:
        arguments, first = self._sentinels(lengths)
        arguments_again, second = self._sentinels(lengths)
        token = _system_scope.set(None)  # the scope is checked as written, whatever the caller's context
        try:
            qs, compiler, sql, params = self._build(arguments, using, variant)
            _, _, sql_again, params_again = self._build(arguments_again, using, variant)
        finally:
            _system_scope.reset(token)
        if sql != sql_again or len(params) != len(params_again):
            raise PreparationError(f"{self.name}: its SQL depends on the values; it cannot be prepared")
        if not sql:  # matches nothing whatever the values, as the ORM decided: nothing to run
            return _Plan(sql="", qmark_sql=None, params=(), slots=(), converters=(), col_count=0, shape="empty")
        slots = []
        for position, (value, other) in enumerate(zip(params, params_again, strict=True)):
            slot = self._slot(position, value, other, first, second)
            if slot is not None:
                slots.append(slot)
            elif value != other:
                raise PreparationError(f"{self.name}: parameter {position} of its SQL comes from no parameter")
        bound = {name for _, name, _ in slots}
        if isinstance(qs, OrgQuerySet) and qs._scope_reason == "organisation":
            scope_ids = {pk for pk in (qs._scope_org_ids or ())}
            if not any(isinstance(first[name], models.Model) and first[name].pk in scope_ids for name in bound):
                raise PreparationError(f"{self.name}: for_org() must take its organisation from a parameter")
        if variant == "count":
            return _Plan(sql=sql, qmark_sql=_qmark(compiler.connection, sql), params=params, slots=tuple(slots),
                         converters=(), col_count=1, shape="count")  # fmt: skip
        if variant == "page":
            sql += " LIMIT %s OFFSET %s"
        return self._plan(qs, compiler, sql, params, tuple(slots), first)

    def _build(self, arguments: dict[str, Any], using: str, variant: str) -> tuple[Any, Any, str, tuple[Any, ...]]:
        qs: Any = self.build(**arguments)
        if not isinstance(qs, models.QuerySet):
            raise PreparationError(f"{self.name} must return a queryset")
        if getattr(qs, "_prefetch_related_lookups", ()) or qs.query.select_related:
            raise PreparationError(f"{self.name}: select_related and prefetch_related are not kept")
        if qs.db != using:
            qs = qs.using(using)
        if isinstance(qs, OrgQuerySet):
            qs._check_scoped()
        if variant != "rows" and qs.query.select_for_update:
            raise PreparationError(f"{self.name}: a locked read is read whole, not counted or by pages")
        if variant != "rows" and qs.query.is_sliced:
            raise PreparationError(f"{self.name}: a query read by pages or counted is not sliced")
        compiler = qs.query.get_compiler(using=using)
        if variant == "count":
            # The ORM's own COUNT query (a subquery when the query needs one), caught as it runs with the stand-in
            # values (it matches no row).
            caught: list[tuple[str, tuple[Any, ...]]] = []

            def catch(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
                caught.append((sql, tuple(params or ())))
                return execute(sql, params, many, context)

            with compiler.connection.execute_wrapper(catch):
                qs.count()
            if not caught:  # the ORM counted without a query (EmptyResultSet)
                return qs, compiler, "", ()
            if len(caught) != 1:
                raise PreparationError(f"{self.name}: counting it ran {len(caught)} queries")
            return qs, compiler, *caught[0]
        try:
            sql, params = compiler.as_sql()
        except EmptyResultSet:  # e.g. `pk__in=[]`: the ORM runs no query and reads no row
            return qs, compiler, "", ()
        return qs, compiler, sql, tuple(params)

    @staticmethod
    def _slot(
        position: int, value: Any, other: Any, first: dict[str, Any], second: dict[str, Any]
    ) -> tuple[int, str, Callable[[Any], Any]] | None:
        for name, sentinel in first.items():
            for (form, convert), (form_again, _) in zip(_forms(sentinel), _forms(second[name]), strict=True):
                if type(value) is type(form) and value == form:
                    if other != form_again:
                        raise PreparationError(f"parameter {name!r} does not land in one place of the SQL")
                    return position, name, convert
                if type(form) is int and isinstance(value, int) and not isinstance(value, bool) and value == form:
                    # psycopg's sized integer (Int4, Int8: the backend's form of an integer column's value), kept
                    if other != form_again:
                        raise PreparationError(f"parameter {name!r} does not land in one place of the SQL")
                    return position, name, partial(_wrapped, type(value), convert)
        for name, sentinel in first.items():
            text = str(sentinel.pk if isinstance(sentinel, models.Model) else sentinel)
            if isinstance(value, str) and (text in value or text.replace("-", "") in value):
                raise PreparationError(f"parameter {name!r} is used inside a pattern (LIKE?): not prepared")
        return None

    @staticmethod
    def _names(qs: Any, *, named: bool = False) -> tuple[str, ...]:
        """The names of a values() query's columns as ValuesIterable names them, or (`named`) a values_list()'s as
        NamedValuesListIterable does."""
        query = qs.query
        if named:
            if qs._fields:
                return tuple(qs._fields)
        elif query.selected:
            return tuple(query.selected)
        return (*query.extra_select, *query.values_select, *query.annotation_select)

    def _plan(
        self, qs: Any, compiler: Any, sql: str, params: tuple[Any, ...], slots: tuple[Any, ...], first: dict[str, Any]
    ) -> _Plan:
        select = compiler.select
        fields = [s[0] for s in select[: compiler.col_count]]
        if compiler.has_composite_fields(fields):
            raise PreparationError(f"{self.name}: composite fields are not kept")
        converters = tuple(
            (position, tuple(convs), expression)
            for position, (convs, expression) in compiler.get_converters(fields).items()
        )
        iterable = qs._iterable_class
        common: dict[str, Any] = {
            "sql": sql,
            "qmark_sql": _qmark(compiler.connection, sql),
            "params": params,
            "slots": slots,
            "converters": converters,
            "col_count": compiler.col_count,
            "for_update": bool(qs.query.select_for_update),
        }
        if self.row_class is not None or iterable is NamedValuesListIterable:
            if iterable not in (ValuesListIterable, NamedValuesListIterable):
                raise PreparationError(f"{self.name}: a row class builds the rows of a values_list() query")
            names = self._names(qs, named=True)
            row_class = self.row_class or create_namedtuple_class(*names)
            if tuple(getattr(row_class, "_fields", ())) != names or not issubclass(row_class, tuple):
                raise PreparationError(f"{self.name}: its row class's fields are not the query's columns {names}")
            return _Plan(**common, shape="named", names=names, row_class=row_class)
        if iterable is ValuesListIterable:
            return _Plan(**common, shape="tuple")
        if iterable is FlatValuesListIterable:
            return _Plan(**common, shape="flat")
        if iterable is ValuesIterable:
            return _Plan(**common, shape="dict", names=self._names(qs))
        if iterable is not ModelIterable:
            raise PreparationError(f"{self.name}: rows of {iterable.__name__} are not kept")
        klass_info = compiler.klass_info
        select_fields = klass_info["select_fields"]
        start, end = select_fields[0], select_fields[-1] + 1
        known = []
        for field, related in qs._known_related_objects.items():
            owners = [name for name, value in first.items() if any(value is obj for obj in related.values())]
            if len(owners) != 1 or len(field.from_fields) != 1:
                raise PreparationError(f"{self.name}: a known related object must be one parameter")
            from_field = field.from_fields[0]
            attname = field.attname if from_field == "self" else qs.model._meta.get_field(from_field).attname
            known.append((field, owners[0], operator.attrgetter(attname)))
        return _Plan(
            **common,
            shape="model",
            model=klass_info["model"],
            init_list=(init_list := tuple(f[0].target.attname for f in select[start:end])),
            plain_build=_plain_builder(klass_info["model"], init_list)
            if _plain_init(klass_info["model"], init_list)
            else None,
            model_slice=(start, end),
            annotations=tuple(compiler.annotation_col_map.items()),
            known=tuple(known),
        )


class BoundQuery:
    """A prepared query with its values, as a paginator reads a queryset: `count()` and one page by a slice."""

    def __init__(self, query: PreparedQuery, using: str, values: dict[str, Any]) -> None:
        self.query, self.using, self.values = query, using, values

    def count(self) -> int:
        return int(self.query._run("count", self.using, self.values))

    def __iter__(self) -> Any:
        return iter(self.query._run("rows", self.using, self.values))

    def __getitem__(self, item: slice) -> list[Any]:
        if not isinstance(item, slice) or item.step is not None or (item.start or 0) < 0 or item.stop is None:
            raise TypeError("a prepared query is read by pages: [start:stop]")
        start = item.start or 0
        if item.stop <= start:
            return []
        return list(self.query._run("page", self.using, self.values, page=(item.stop - start, start)))


# -- writes ---------------------------------------------------------------------------------------------------------
#
# An ORM INSERT or UPDATE of one row costs ~0.3–0.4 ms of Python (Model.save's checks, the InsertQuery or UpdateQuery,
# its compiler, each value's preparation) where the statement itself costs ~35 µs (issue 13). A prepared write
# compiles the statement once per database alias, as a read is compiled: built by the ORM's own compiler with
# stand-in values (one per column, `_Slot`; and the WHERE of an update from its queryset with sentinels, as a read's),
# built twice, refused if the SQL text differs or a value lands nowhere. Each call then does what Model.save does
# around the statement (the related-field checks, `pre_save` — auto_now — and `get_db_prep_save` of each field, the
# save signals when someone listens, `mark_for_rollback_on_error`, the instance's state after) and runs the SQL with
# the call's values. tests/controlplane/test_prepared.py holds the SQL, the values and the rows equal to the ORM's.


class _Slot:
    """A stand-in for one column's value in a write's compiled SQL: an expression that compiles to one placeholder
    whose parameter is itself, so that its position among the SQL's parameters can be found."""

    contains_aggregate = False
    contains_over_clause = False
    contains_column_references = False

    def resolve_expression(self, *args: Any, **kwargs: Any) -> _Slot:
        return self

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        return "%s", [self]


class _StandIn:
    """The row an INSERT is compiled from (read as a raw insert reads it: attribute by attribute, no pre_save)."""


@dataclass(frozen=True, eq=False)
class _WritePlan:
    sql: str
    qmark_sql: str | None
    params: tuple[Any, ...]  # the WHERE's constants; each value's position is in `columns` or `slots`
    columns: tuple[tuple[int, Any], ...]  # (position, field) of each value written
    slots: tuple[tuple[int, str, Callable[[Any], Any]], ...] = ()  # the WHERE's parameters, as a read's
    returning: tuple[Any, ...] = ()  # fields read back (an auto-incremented key)
    converters: tuple[tuple[int, tuple[Callable[..., Any], ...], Any], ...] = ()


def _execute_write(connection: Any, plan: _WritePlan, params: list[Any]) -> tuple[int, Any]:
    """(rows changed, the row RETURNING gave or None): through Django's cursor when something watches the queries
    (logged, counted, wrapped), else the driver's own cursor as a prepared read's (`_raw_execute`)."""
    if connection.queries_logged or connection.execute_wrappers:
        with connection.cursor() as cursor:
            cursor.execute(plan.sql, params)
            return cursor.rowcount, cursor.fetchone() if plan.returning else None
    cursor = _raw_execute(connection, plan.sql, plan.qmark_sql, params)
    with connection.wrap_database_errors:
        return cursor.rowcount, cursor.fetchone() if plan.returning else None


def _check_plain_model(model: type[models.Model], own_save: str | None) -> None:
    meta = model._meta
    if meta.parents or meta.proxy or meta.order_with_respect_to or meta.auto_created:
        raise PreparationError(f"{model.__name__}: a prepared write is of one plain table")
    if model.save is not models.Model.save and not own_save:
        raise PreparationError(
            f"{model.__name__} has its own save(): say what the prepared write does in its place (own_save=...)"
        )


def _columns(params: tuple[Any, ...], slots: dict[_Slot, Any], name: str) -> tuple[tuple[int, Any], ...]:
    found = {id(value): position for position, value in enumerate(params) if isinstance(value, _Slot)}
    if len(found) != len(slots):
        raise PreparationError(f"{name}: a value lands twice, or not as one parameter, in its SQL")
    columns = []
    for slot, field in slots.items():
        position = found.get(id(slot))
        if position is None:
            raise PreparationError(f"{name}: the value of {field.name} lands nowhere in its SQL")
        columns.append((position, field))
    return tuple(sorted(columns, key=lambda column: column[0]))


# Types of plain values (most of a row's): no expression, no model instance, without asking.
_PLAIN_VALUES = frozenset({str, int, bool, float, type(None), uuid.UUID, datetime.datetime, datetime.date, dict, list})


def _value(field: Any, value: Any, connection: Any) -> Any:
    """`field.get_db_prep_save(value)`, for a value (an expression or a model instance would change the SQL)."""
    if type(value) not in _PLAIN_VALUES and (
        hasattr(value, "resolve_expression") or hasattr(value, "prepare_database_save")
    ):
        raise TypeError(f"a prepared write takes values, not {type(value).__name__} ({field.name})")
    return field.get_db_prep_save(value, connection=connection)


def _org_owned(model: type[models.Model]) -> bool:
    manager = getattr(model, "objects", None)
    return isinstance(manager, models.Manager) and issubclass(manager._queryset_class, OrgQuerySet)


def _check_organisation(model: type[models.Model], org_owned: bool, obj: models.Model, organisation: Any) -> None:
    """As `OrgQuerySet.create` checks a row (controlplane/scoping.py): an organisation-owned row has an organisation,
    and with `organisation`, that one (as written through `for_org(organisation)`)."""
    if not org_owned:
        if organisation is not None:
            raise TypeError(f"{model.__name__} is not organisation-owned")
        return
    scope = None if organisation is None else frozenset((organisation.pk,))
    check_row_organisation(model, getattr(obj, "organisation_id", None), scope)


class PreparedInsert:
    """`Model.save()` of a new row (`force_insert`), its INSERT compiled once per database alias: `save(obj)`.

    An organisation-owned row is checked as `OrgQuerySet.create` checks it (it has an organisation; with
    `organisation=`, that one). A model with its own save() says, in `own_save`, why the prepared insert may stand
    in for it (its checks then belong to the caller, as the audit service's do)."""

    def __init__(self, model: type[models.Model], *, own_save: str | None = None) -> None:
        _check_plain_model(model, own_save)
        self.model = model
        self.org_owned = _org_owned(model)
        self.name = f"PreparedInsert({model.__name__})"
        self._plans: dict[tuple[str, str, bool], _WritePlan] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<{self.name}>"

    def save(self, obj: models.Model, *, organisation: Any = None, using: str | None = None) -> None:
        model, meta = self.model, self.model._meta
        if type(obj) is not model:
            raise TypeError(f"{self.name} saves {model.__name__} rows, not {type(obj).__name__}")
        if not obj._state.adding:
            raise TypeError(f"{self.name} inserts new rows; this one was read or saved already")
        obj._prepare_related_fields_for_save(operation_name="save")
        _check_organisation(model, self.org_owned, obj, organisation)
        using = using or router.db_for_write(model, instance=obj)
        connection = connections[using]
        if not obj._is_pk_set(meta):
            setattr(obj, meta.pk.attname, meta.pk.get_pk_value_on_save(obj))
        pk_set = obj._is_pk_set(meta)
        if signals.pre_save.has_listeners(model):
            signals.pre_save.send(sender=model, instance=obj, raw=False, using=using, update_fields=None)
        key = (using, connection.vendor, pk_set)
        plan = self._plans.get(key) or self._prepare(key)
        params = list(plan.params)
        for position, field in plan.columns:
            params[position] = _value(field, field.pre_save(obj, True), connection)
        with transaction.mark_for_rollback_on_error(using):
            _, returned = _execute_write(connection, plan, params)
        if plan.returning:
            values = list(returned)
            for position, converters, expression in plan.converters:
                for converter in converters:
                    values[position] = converter(values[position], expression, connection)
            for field, value in zip(plan.returning, values, strict=True):
                setattr(obj, field.attname, value)
        obj._state.db = using
        obj._state.adding = False
        if signals.post_save.has_listeners(model):
            signals.post_save.send(sender=model, instance=obj, created=True, update_fields=None, raw=False, using=using)

    def _prepare(self, key: tuple[str, str, bool]) -> _WritePlan:
        with self._lock:
            plan = self._plans.get(key)
            if plan is None:
                plan = self._plans[key] = self._compile(*key)
            return plan

    def _build(self, using: str, pk_set: bool) -> tuple[Any, str, tuple[Any, ...], dict[_Slot, Any]]:
        from django.db.models.sql import InsertQuery

        meta = self.model._meta
        fields = [f for f in meta.local_concrete_fields if not f.generated and (pk_set or f is not meta.auto_field)]
        for field in fields:
            if hasattr(field, "get_placeholder"):
                raise PreparationError(f"{self.name}: {field.name} has its own placeholder")
        stand_in = _StandIn()
        slots = {}
        for field in fields:
            slot = _Slot()
            slots[slot] = field
            setattr(stand_in, field.attname, slot)
        query = InsertQuery(self.model)
        query.insert_values(fields, [stand_in], raw=True)  # raw: the values as they are (each call does pre_save)
        compiler = query.get_compiler(using=using)
        connection = compiler.connection
        returning = meta.db_returning_fields
        if returning and not connection.features.can_return_columns_from_insert:
            raise PreparationError(f"{self.name}: this database cannot return the inserted row's key")
        compiler.returning_fields = returning
        statements = compiler.as_sql()
        if len(statements) != 1:
            raise PreparationError(f"{self.name}: its insert is {len(statements)} statements")
        sql, params = statements[0]
        return compiler, sql, tuple(params), slots

    def _compile(self, using: str, vendor: str, pk_set: bool) -> _WritePlan:
        compiler, sql, params, slots = self._build(using, pk_set)
        _, sql_again, params_again, _ = self._build(using, pk_set)
        if sql != sql_again or len(params) != len(params_again):
            raise PreparationError(f"{self.name}: its SQL depends on the values; it cannot be prepared")
        columns = _columns(params, slots, self.name)
        constants = tuple(None if isinstance(value, _Slot) else value for value in params)
        if any(constant is not None for constant in constants) or len(columns) != len(params):
            raise PreparationError(f"{self.name}: parameters of its SQL come from no value")
        returning = tuple(compiler.returning_fields or ())
        converters: tuple[Any, ...] = ()
        if returning:
            table = self.model._meta.db_table
            converters = tuple(
                (position, tuple(convs), expression)
                for position, (convs, expression) in compiler.get_converters(
                    [field.get_col(table) for field in returning]
                ).items()
            )
        return _WritePlan(
            sql=sql,
            qmark_sql=_qmark(compiler.connection, sql),
            params=constants,
            columns=columns,
            returning=returning,
            converters=converters,
        )


class PreparedUpdate:
    """`Model.save(update_fields=fields)` of a row, its UPDATE compiled once per database alias, the row found by a
    queryset of fixed shape as a `PreparedQuery` is written (an organisation-owned table's tied to organisations by
    `for_org(organisation)`, the organisation from a parameter): `save(obj, **values)`. Raises DatabaseError, as
    the ORM does, when no row was changed (here also: a row outside the queryset, e.g. of another organisation)."""

    def __init__(
        self,
        build: Callable[..., models.QuerySet],
        *,
        fields: tuple[str, ...],
        own_save: str | None = None,
        **kinds: Kind,
    ) -> None:
        self.where = PreparedQuery(build, **kinds)
        if self.where.lists:
            raise PreparationError(f"{self.where.name}: a prepared update takes no list parameter")
        self.field_names = tuple(fields)
        self.update_fields = frozenset(fields)
        self.name = f"PreparedUpdate({self.where.name})"
        self._own_save = own_save
        self._fields: tuple[Any, ...] | None = None
        self._plans: dict[tuple[str, str, tuple[bool, ...]], _WritePlan] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<{self.name}>"

    def save(self, obj: models.Model, *, using: str | None = None, **values: Any) -> None:
        self.where._check_names(values)
        model = type(obj)
        fields = self._fields_of(model)
        obj._prepare_related_fields_for_save(operation_name="save")
        using = using or router.db_for_write(model, instance=obj)
        connection = connections[using]
        if signals.pre_save.has_listeners(model):
            signals.pre_save.send(sender=model, instance=obj, raw=False, using=using, update_fields=self.update_fields)
        prepared = [_value(field, field.pre_save(obj, False), connection) for field in fields]
        nulls = tuple(value is None for value in prepared)  # the ORM writes `= NULL` for these, not a parameter
        key = (using, connection.vendor, nulls)
        plan = self._plans.get(key) or self._prepare(key, model)
        params = list(plan.params)
        written = iter(value for value in prepared if value is not None)
        for position, _field in plan.columns:
            params[position] = next(written)
        for position, name, convert in plan.slots:
            params[position] = convert(values[name])
        with transaction.mark_for_rollback_on_error(using):
            changed, _ = _execute_write(connection, plan, params)
        if not changed:
            raise DatabaseError("Save with update_fields did not affect any rows.")
        obj._state.db = using
        obj._state.adding = False
        if signals.post_save.has_listeners(model):
            signals.post_save.send(
                sender=model, instance=obj, created=False, update_fields=self.update_fields, raw=False, using=using
            )

    def _fields_of(self, model: type[models.Model]) -> tuple[Any, ...]:
        fields = self._fields
        if fields is None or fields[0].model is not model:
            _check_plain_model(model, self._own_save)
            by_name = {f.name: f for f in model._meta.local_concrete_fields} | {
                f.attname: f for f in model._meta.local_concrete_fields
            }
            missing = [name for name in self.field_names if name not in by_name or by_name[name].primary_key]
            if missing or not self.field_names:
                raise PreparationError(f"{self.name}: {missing or 'no field'} cannot be updated")
            # In the model's order, as Model._save_table lists them.
            chosen = {by_name[name] for name in self.field_names}
            fields = self._fields = tuple(f for f in model._meta.local_concrete_fields if f in chosen)
        return fields

    def _prepare(self, key: tuple[str, str, tuple[bool, ...]], model: type[models.Model]) -> _WritePlan:
        with self._lock:
            plan = self._plans.get(key)
            if plan is None:
                if len(self._plans) >= MAX_LIST_PLANS:
                    self._plans.clear()
                plan = self._plans[key] = self._compile(key[0], key[2], model)
            return plan

    def _build(
        self, arguments: dict[str, Any], using: str, nulls: tuple[bool, ...], model: type[models.Model]
    ) -> tuple[Any, str, tuple[Any, ...], dict[_Slot, Any]]:
        from django.db.models.sql import UpdateQuery

        qs: Any = self.where.build(**arguments)
        if not isinstance(qs, models.QuerySet) or qs.model is not model:
            raise PreparationError(f"{self.name} must return a queryset of {model.__name__}")
        if qs.query.is_sliced or qs.query.select_for_update or qs.query.combinator:
            raise PreparationError(f"{self.name}: an update's queryset is not sliced, locked or combined")
        if isinstance(qs, OrgQuerySet):
            qs._check_scoped()  # as OrgQuerySet.update checks it
        slots: dict[_Slot, Any] = {}
        values = []
        for field, null in zip(self._fields_of(model), nulls, strict=True):
            if hasattr(field, "get_placeholder"):
                raise PreparationError(f"{self.name}: {field.name} has its own placeholder")
            slot = None if null else _Slot()
            if slot is not None:
                slots[slot] = field
            values.append((field, None, slot))
        query = qs.query.chain(UpdateQuery)
        query.add_update_fields(values)
        query.annotations = {}
        if query.related_updates:
            raise PreparationError(f"{self.name}: an update of one table")
        compiler = query.get_compiler(using=using)
        sql, params = compiler.as_sql()
        return compiler, sql, tuple(params), slots

    def _compile(self, using: str, nulls: tuple[bool, ...], model: type[models.Model]) -> _WritePlan:
        arguments, first = self.where._sentinels({})
        arguments_again, second = self.where._sentinels({})
        token = _system_scope.set(None)  # the scope is checked as written, whatever the caller's context
        try:
            compiler, sql, params, slots = self._build(arguments, using, nulls, model)
            qs = self.where.build(**arguments)
            _, sql_again, params_again, _ = self._build(arguments_again, using, nulls, model)
        finally:
            _system_scope.reset(token)
        if sql != sql_again or len(params) != len(params_again):
            raise PreparationError(f"{self.name}: its SQL depends on the values; it cannot be prepared")
        columns = _columns(params, slots, self.name)
        written = {position for position, _ in columns}
        where_slots = []
        for position, (value, other) in enumerate(zip(params, params_again, strict=True)):
            if position in written:
                continue
            slot = PreparedQuery._slot(position, value, other, first, second)
            if slot is not None:
                where_slots.append(slot)
            elif value != other:
                raise PreparationError(f"{self.name}: parameter {position} of its SQL comes from no parameter")
        if isinstance(qs, OrgQuerySet) and qs._scope_reason == "organisation":
            scope_ids = set(qs._scope_org_ids or ())
            bound = {name for _, name, _ in where_slots}
            if not any(isinstance(first[name], models.Model) and first[name].pk in scope_ids for name in bound):
                raise PreparationError(f"{self.name}: for_org() must take its organisation from a parameter")
        return _WritePlan(
            sql=sql,
            qmark_sql=_qmark(compiler.connection, sql),
            params=tuple(None if position in written else value for position, value in enumerate(params)),
            columns=columns,
            slots=tuple(where_slots),
        )
