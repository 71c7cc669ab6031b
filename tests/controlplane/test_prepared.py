"""Prepared querysets (controlplane/prepared.py) give what the queryset gives, on the same scoping rules."""

from __future__ import annotations

import datetime
import uuid
from typing import NamedTuple

import pytest
from django.db import connection
from django.db.models import Max
from django.test.utils import CaptureQueriesContext

from controlplane.actors import Actor
from controlplane.models import Organisation
from controlplane.prepared import PreparationError, PreparedInsert, PreparedQuery, PreparedUpdate
from controlplane.scoping import UnscopedQueryError, system_scope
from tunnels.models import Connection, Tunnel, TunnelConfiguration
from tunnels.services import tunnel_config_update, tunnel_create

pytestmark = pytest.mark.django_db

BY_ID = PreparedQuery(
    lambda organisation, tunnel_id: (
        Tunnel.objects.for_org(organisation).filter(pk=tunnel_id, deleted_at__isnull=True).order_by()[:1]
    ),
    organisation=Organisation,
    tunnel_id=uuid.UUID,
)


def model_state(row):
    return {field.attname: getattr(row, field.attname) for field in row._meta.concrete_fields}


@pytest.fixture
def tunnels(org_a, org_b):
    mine = tunnel_create(organisation=org_a, name="mine", actor=Actor.cli())
    tunnel_config_update(
        tunnel=mine,
        config={"ingress": [{"service": "http_status:404"}], "warp-routing": {"enabled": False}},
        actor=Actor.cli(),
    )
    theirs = tunnel_create(organisation=org_b, name="theirs", actor=Actor.cli())
    return mine, theirs


def test_a_model_row_equals_the_querysets_with_every_field_converted(org_a, tunnels):
    mine, _ = tunnels
    expected = Tunnel.objects.for_org(org_a).get(pk=mine.pk)
    with CaptureQueriesContext(connection) as queries:
        got = BY_ID.first(organisation=org_a, tunnel_id=mine.pk)
        assert got.organisation is org_a  # the caller's organisation, as for_org gives it: no query
    assert len(queries) == 1
    assert model_state(got) == model_state(expected)
    assert isinstance(got.pk, uuid.UUID) and got.created_at.tzinfo is not None
    assert got.config["ingress"] == [{"service": "http_status:404"}]  # JSON decoded
    assert got._state.adding is False and got._state.db == "default"
    got.name = "renamed"
    got.save(update_fields=["name"])  # a usable model instance
    assert Tunnel.objects.for_org(org_a).get(pk=mine.pk).name == "renamed"


def test_the_scope_holds_for_another_tenants_row_and_a_missing_one(org_a, org_b, tunnels):
    mine, theirs = tunnels
    assert BY_ID.first(organisation=org_a, tunnel_id=theirs.pk) is None
    assert BY_ID.first(organisation=org_b, tunnel_id=mine.pk) is None
    assert BY_ID.first(organisation=org_a, tunnel_id=uuid.uuid4()) is None
    assert BY_ID.first(organisation=org_b, tunnel_id=str(theirs.pk)).pk == theirs.pk  # a UUID's text is taken too
    with pytest.raises(ValueError):
        BY_ID.first(organisation=org_a, tunnel_id="not-a-uuid")


def test_values_rows_equal_the_querysets(org_a, tunnels):
    mine, _ = tunnels

    def build(organisation, tunnel_id):
        return Tunnel.objects.for_org(organisation).filter(pk=tunnel_id)

    shapes = {
        "tuples": lambda qs: qs.values_list("id", "name", "created_at", "config"),
        "flat": lambda qs: qs.values_list("created_at", flat=True),
        "dicts": lambda qs: qs.values("id", "name").annotate(latest=Max("created_at")),
    }
    for shape in shapes.values():
        prepared = PreparedQuery(
            lambda organisation, tunnel_id, shape=shape: shape(build(organisation, tunnel_id)),
            organisation=Organisation,
            tunnel_id=uuid.UUID,
        )
        assert prepared.rows(organisation=org_a, tunnel_id=mine.pk) == list(shape(build(org_a, mine.pk)))


class TunnelLine(NamedTuple):
    id: uuid.UUID
    name: str
    created_at: datetime.datetime
    deleted_at: datetime.datetime | None


def test_named_rows_equal_the_querysets_and_take_the_callers_row_class(org_a, org_b, tunnels):
    for n in range(4):
        tunnel_create(organisation=org_a, name=f"t{n}", actor=Actor.cli())

    def build(organisation):
        return Tunnel.objects.for_org(organisation).order_by("-created_at", "-pk")

    named = PreparedQuery(
        lambda organisation: build(organisation).values_list("id", "name", "created_at", named=True),
        organisation=Organisation,
    )
    expected = list(build(org_a).values_list("id", "name", "created_at", named=True))
    got = named.rows(organisation=org_a)
    assert got == expected and len(got) == 5
    assert [type(row) for row in got] == [type(row) for row in expected]  # Django's own Row class
    assert [row.name for row in got] == [row.name for row in expected]

    lines = PreparedQuery(
        lambda organisation: build(organisation).values_list(*TunnelLine._fields),
        row_class=TunnelLine,
        organisation=Organisation,
    )
    expected = [TunnelLine(*row) for row in build(org_a).values_list(*TunnelLine._fields)]
    got = lines.rows(organisation=org_a)
    assert got == expected and all(type(row) is TunnelLine for row in got)
    assert isinstance(got[0].id, uuid.UUID) and got[0].created_at.tzinfo is not None and got[0].deleted_at is None
    bound = lines.bind(organisation=org_a)
    assert bound.count() == 5 and bound[1:3] == expected[1:3] and all(type(row) is TunnelLine for row in bound[1:3])
    assert [row.name for row in lines.rows(organisation=org_b)] == ["theirs"]  # scoped as any prepared read


def test_a_row_class_must_fit_a_values_list_query(org_a):
    class Wrong(NamedTuple):
        id: uuid.UUID
        title: str

    cases = [
        (lambda organisation: Tunnel.objects.for_org(organisation).values_list("id", "name"), Wrong),  # names
        (
            lambda organisation: Tunnel.objects.for_org(organisation).values_list(
                "name", "id", "created_at", "deleted_at"
            ),
            TunnelLine,
        ),  # order
        (lambda organisation: Tunnel.objects.for_org(organisation), TunnelLine),  # model rows
        (lambda organisation: Tunnel.objects.for_org(organisation).values("id", "name"), Wrong),  # dicts
    ]
    for build, row_class in cases:
        with pytest.raises(PreparationError):
            PreparedQuery(build, row_class=row_class, organisation=Organisation).rows(organisation=org_a)


def test_rows_of_a_child_table_with_a_join(org_a, tunnels):
    prepared = PreparedQuery(
        lambda organisation, tunnel_id: (
            Connection.objects.for_org(organisation)
            .filter(tunnel_id=tunnel_id, closed_at__isnull=True)
            .values_list("id", "connector__connector_id", "connector__features")
        ),
        organisation=Organisation,
        tunnel_id=uuid.UUID,
    )
    assert prepared.rows(organisation=org_a, tunnel_id=tunnels[0].pk) == []


def test_an_unscoped_read_of_an_organisation_owned_table_is_refused_even_inside_a_system_scope(org_a):
    prepared = PreparedQuery(lambda tunnel_id: Tunnel.objects.filter(pk=tunnel_id), tunnel_id=uuid.UUID)
    with system_scope("a caller's own reason"), pytest.raises(UnscopedQueryError):
        prepared.rows(tunnel_id=uuid.uuid4())
    named = PreparedQuery(lambda tunnel_id: Tunnel.objects.unscoped("test").filter(pk=tunnel_id), tunnel_id=uuid.UUID)
    assert named.rows(tunnel_id=uuid.uuid4()) == []


def test_the_organisation_must_come_from_a_parameter(org_a):
    prepared = PreparedQuery(lambda tunnel_id: Tunnel.objects.for_org(org_a).filter(pk=tunnel_id), tunnel_id=uuid.UUID)
    with pytest.raises(PreparationError, match="organisation from a parameter"):
        prepared.rows(tunnel_id=uuid.uuid4())


def test_sql_that_depends_on_the_values_is_refused(org_a):
    pattern = PreparedQuery(
        lambda organisation, name: Tunnel.objects.for_org(organisation).filter(name__contains=name),
        organisation=Organisation,
        name=str,
    )
    with pytest.raises(PreparationError):
        pattern.rows(organisation=org_a, name="x")
    shape = PreparedQuery(
        lambda organisation, n: Tunnel.objects.for_org(organisation).filter(conns_active_at__isnull=n % 2 == 0),
        organisation=Organisation,
        n=int,
    )
    with pytest.raises(PreparationError):
        shape.rows(organisation=org_a, n=1)
    constant = PreparedQuery(
        lambda organisation, name: Tunnel.objects.for_org(organisation).filter(name=f"{name}-suffix"),
        organisation=Organisation,
        name=str,
    )
    with pytest.raises(PreparationError):
        constant.rows(organisation=org_a, name="x")


def test_parameters_are_named_as_declared(org_a):
    with pytest.raises(TypeError):
        BY_ID.rows(organisation=org_a)
    with pytest.raises(PreparationError):
        PreparedQuery(lambda organisation: Tunnel.objects.for_org(organisation), organisation=float).rows(
            organisation=1.0
        )


def test_a_list_parameter_has_a_plan_per_length_and_an_empty_list_reads_nothing(org_a, org_b, tunnels):
    mine, theirs = tunnels
    other = tunnel_create(organisation=org_a, name="other", actor=Actor.cli())
    prepared = PreparedQuery(
        lambda organisation, ids: Tunnel.objects.for_org(organisation).filter(pk__in=ids).order_by("name"),
        organisation=Organisation,
        ids=[uuid.UUID],
    )
    for ids in ([mine.pk], [other.pk, mine.pk, theirs.pk], [theirs.pk]):
        expected = list(Tunnel.objects.for_org(org_a).filter(pk__in=ids).order_by("name"))
        got = prepared.rows(organisation=org_a, ids=ids)
        assert [model_state(t) for t in got] == [model_state(t) for t in expected]
    assert [t.name for t in prepared.rows(organisation=org_a, ids=[mine.pk, other.pk])] == ["mine", "other"]
    with CaptureQueriesContext(connection) as queries:
        assert prepared.rows(organisation=org_a, ids=[]) == []
    assert len(queries) == 0
    assert {key[2] for key in prepared._plans} == {(0,), (1,), (2,), (3,)}  # the empty one: a plan of no query


def test_the_drivers_own_cursor_and_djangos_logged_cursor_read_the_same(org_a, tunnels):
    mine, _ = tunnels
    assert not connection.queries_logged  # the path a server takes: the driver's cursor, SQL converted once
    fast = BY_ID.first(organisation=org_a, tunnel_id=mine.pk)
    with CaptureQueriesContext(connection) as queries:
        logged = BY_ID.first(organisation=org_a, tunnel_id=mine.pk)
    assert len(queries) == 1
    assert model_state(fast) == model_state(logged)


def test_a_database_error_is_djangos_and_a_broken_transaction_is_refused(org_a, tunnels):
    from django.db import DatabaseError, transaction
    from django.db.transaction import TransactionManagementError

    with transaction.atomic():
        with pytest.raises(DatabaseError):
            with transaction.atomic():  # a savepoint keeps the outer block usable on PostgreSQL
                with connection.cursor() as cursor:
                    cursor.execute("SELECT * FROM no_such_table")
        assert BY_ID.first(organisation=org_a, tunnel_id=tunnels[0].pk) is not None
    with transaction.atomic():
        connection.needs_rollback = True
        with pytest.raises(TransactionManagementError):
            BY_ID.first(organisation=org_a, tunnel_id=tunnels[0].pk)
        connection.needs_rollback = False


def test_a_bound_query_counts_and_reads_pages_as_the_queryset_does(org_a, org_b, tunnels):
    for n in range(7):
        tunnel_create(organisation=org_a, name=f"t{n}", actor=Actor.cli())
    listed = PreparedQuery(
        lambda organisation: (
            Tunnel.objects.for_org(organisation).filter(deleted_at__isnull=True).order_by("-created_at", "-pk")
        ),
        organisation=Organisation,
    )
    queryset = Tunnel.objects.for_org(org_a).filter(deleted_at__isnull=True).order_by("-created_at", "-pk")
    bound = listed.bind(organisation=org_a)
    assert bound.count() == queryset.count() == 8
    assert listed.bind(organisation=org_b).count() == 1
    for start, stop in ((0, 3), (3, 6), (6, 9), (8, 20), (2, 2)):
        assert [t.pk for t in bound[start:stop]] == [t.pk for t in queryset[start:stop]]
    assert [t.pk for t in bound] == [t.pk for t in queryset]
    assert all(t.organisation is org_a for t in bound[0:3])
    with CaptureQueriesContext(connection) as queries:
        bound.count()
        bound[0:2]
    assert len(queries) == 2 and "COUNT" in queries[0]["sql"].upper() and "LIMIT" in queries[1]["sql"].upper()
    for bad in (slice(None, None), slice(-1, 2), slice(0, 4, 2)):
        with pytest.raises(TypeError):
            bound[bad]
    sliced = PreparedQuery(lambda organisation: Tunnel.objects.for_org(organisation)[:5], organisation=Organisation)
    with pytest.raises(PreparationError):
        sliced.bind(organisation=org_a).count()


def test_converted_values_equal_the_orms_with_and_without_time_zones(org_a, tunnels, settings):
    mine, _ = tunnels
    Tunnel.objects.for_org(org_a).filter(pk=mine.pk).update(conns_active_at=mine.created_at)
    for use_tz in (True, False):
        settings.USE_TZ = use_tz
        expected = Tunnel.objects.for_org(org_a).get(pk=mine.pk)
        got = BY_ID.first(organisation=org_a, tunnel_id=mine.pk)
        assert model_state(got) == model_state(expected)
        assert (got.conns_active_at.tzinfo is not None) is use_tz
        assert got.conns_inactive_at is None and isinstance(got.id, uuid.UUID)


def test_uuids_read_from_sqlite_equal_the_orms():
    from controlplane.prepared import _uuid_or_none

    for value in (uuid.uuid4(), uuid.UUID(int=0), uuid.UUID(int=2**128 - 1)):
        made = _uuid_or_none(value.hex)
        assert made == value and str(made) == str(value) and hash(made) == hash(value) and made.int == value.int
        assert made.is_safe == uuid.SafeUUID.unknown and made.version == value.version
    assert _uuid_or_none(None) is None
    assert _uuid_or_none(str(uuid.UUID(int=5))) == uuid.UUID(int=5)  # any other spelling goes through UUID()
    with pytest.raises(ValueError):
        _uuid_or_none("not a uuid")
    with pytest.raises(ValueError):
        _uuid_or_none("z" * 32)


LOCKED = PreparedQuery(
    lambda organisation, tunnel_id: (
        Tunnel.objects.for_org(organisation).select_for_update().defer("config").filter(pk=tunnel_id).order_by()[:1]
    ),
    organisation=Organisation,
    tunnel_id=uuid.UUID,
)


def test_a_locked_read_keeps_its_lock_clause_and_reads_what_the_queryset_reads(org_a, tunnels):
    from django.db import transaction

    mine, _ = tunnels
    with transaction.atomic():
        expected = Tunnel.objects.for_org(org_a).select_for_update().defer("config").get(pk=mine.pk)
        with CaptureQueriesContext(connection) as queries:
            got = LOCKED.first(organisation=org_a, tunnel_id=mine.pk)
        assert got.get_deferred_fields() == {"config"}
        assert model_state(got) == model_state(expected)  # the deferred configuration read on access, as the ORM's
    # FOR UPDATE where the database locks rows (PostgreSQL); SQLite locks the database at BEGIN IMMEDIATE instead
    assert ("FOR UPDATE" in queries[0]["sql"]) == connection.features.has_select_for_update
    with pytest.raises(PreparationError):
        LOCKED.bind(organisation=org_a, tunnel_id=mine.pk).count()


@pytest.mark.django_db(transaction=True)
def test_a_locked_read_is_refused_outside_a_transaction_on_every_database(org_a):
    from django.db import transaction
    from django.db.transaction import TransactionManagementError

    mine = tunnel_create(organisation=org_a, name="locked", actor=Actor.cli())
    with transaction.atomic():
        assert LOCKED.first(organisation=org_a, tunnel_id=mine.pk).pk == mine.pk
    with pytest.raises(TransactionManagementError):
        LOCKED.first(organisation=org_a, tunnel_id=mine.pk)


def test_an_integer_parameter_on_a_32_bit_column(org_a, tunnels):
    """The stand-in values fit the column (an out-of-range one made PostgreSQL's lookup empty at preparation)."""
    from tunnels.models import TunnelConfiguration

    mine, _ = tunnels
    by_version = PreparedQuery(
        lambda organisation, tunnel, version: (
            TunnelConfiguration.objects.for_org(organisation)
            .filter(tunnel=tunnel, version=version)
            .values_list("version", flat=True)
        ),
        organisation=Organisation,
        tunnel=Tunnel,
        version=int,
    )
    mine.refresh_from_db()
    assert mine.config_version >= 1
    assert by_version.rows(organisation=org_a, tunnel=mine, version=mine.config_version) == [mine.config_version]
    assert by_version.rows(organisation=org_a, tunnel=mine, version=2_000_000) == []


def test_an_empty_list_under_or_drops_its_branch_as_the_orm_does(org_a, tunnels):
    from django.db.models import Q

    mine, _ = tunnels
    either = PreparedQuery(
        lambda organisation, ids, name: (
            Tunnel.objects.for_org(organisation).filter(Q(pk__in=ids) | Q(name=name)).values_list("name", flat=True)
        ),
        organisation=Organisation,
        ids=[uuid.UUID],
        name=str,
    )
    expected = list(Tunnel.objects.for_org(org_a).filter(Q(pk__in=[]) | Q(name="mine")).values_list("name", flat=True))
    assert expected == ["mine"]
    assert either.rows(organisation=org_a, ids=[], name="mine") == expected
    assert either.bind(organisation=org_a, ids=[], name="mine").count() == 1
    assert either.rows(organisation=org_a, ids=[mine.pk], name="nobody") == ["mine"]


ALL_OF_ORG = PreparedQuery(
    lambda organisation: Tunnel.objects.for_org(organisation).order_by("created_at", "id"),
    organisation=Organisation,
)


def test_a_long_read_shares_converted_values_between_rows_and_equals_the_orms(org_a, org_b, settings):
    from controlplane.prepared import MEMO_ROWS

    for i in range(MEMO_ROWS + 4):
        tunnel_create(organisation=org_a, name=f"many-{i}", actor=Actor.cli())
    tunnel_create(organisation=org_b, name="many-other", actor=Actor.cli())
    for use_tz in (True, False):  # both of SQLite's datetime steps
        settings.USE_TZ = use_tz
        got = ALL_OF_ORG.rows(organisation=org_a)
        expected = list(Tunnel.objects.for_org(org_a).order_by("created_at", "id"))
        assert len(got) == MEMO_ROWS + 4
        assert [model_state(row) for row in got] == [model_state(row) for row in expected]
        assert len({row.pk for row in got}) == len(got)  # distinct values stay distinct


# -- prepared writes ------------------------------------------------------------------------------------------------

INSERT_VERSION = PreparedInsert(TunnelConfiguration)
SAVE_CONFIG = PreparedUpdate(
    lambda organisation, pk: Tunnel.objects.for_org(organisation).filter(pk=pk),
    fields=("config_version", "config", "updated_at"),
    organisation=Organisation,
    pk=uuid.UUID,
)
SAVE_DELETED = PreparedUpdate(
    lambda organisation, pk: Tunnel.objects.for_org(organisation).filter(pk=pk),
    fields=("deleted_at", "updated_at"),
    organisation=Organisation,
    pk=uuid.UUID,
)


def _version(tunnel, version, **extra):
    return TunnelConfiguration(
        organisation=tunnel.organisation,
        tunnel=tunnel,
        version=version,
        config={"ingress": [{"service": "http_status:404"}], "é": [1, None, True]},
        **extra,
    )


def _without(state, *names):
    return {name: value for name, value in state.items() if name not in names}


class Statements:
    """The SQL and parameters run while it is on (Django's cursor, as a logged or counted query)."""

    def __init__(self):
        self.seen = []

    def __call__(self, execute, sql, params, many, context):
        self.seen.append((sql, list(params or ())))
        return execute(sql, params, many, context)


@pytest.mark.parametrize("watched", [False, True])
def test_an_insert_writes_the_row_the_orms_insert_writes_in_the_same_sql(org_a, tunnels, watched):
    mine, _ = tunnels
    orm_statements, statements = Statements(), Statements()
    with connection.execute_wrapper(orm_statements):
        by_orm = TunnelConfiguration.objects.for_org(org_a).create(
            organisation=org_a, tunnel=mine, version=10, config=_version(mine, 0).config, created_by_email="a@b.c"
        )
    ours = _version(mine, 11, created_by_email="a@b.c")
    assert ours.created_at is None and ours.pk is None
    if watched:
        with connection.execute_wrapper(statements):
            INSERT_VERSION.save(ours, organisation=org_a)
        # The ORM's own SQL, one statement, and its parameters (but the version and the time of the insert).
        [(sql, params)], [(orm_sql, orm_params)] = statements.seen, orm_statements.seen
        assert sql == orm_sql
        assert [type(p) for p in params] == [type(p) for p in orm_params]
        assert '("organisation_id", "tunnel_id", "version", "config", "created_at", "created_by_email")' in sql
        assert [repr(p) for i, p in enumerate(params) if i not in (2, 4)] == [
            repr(p) for i, p in enumerate(orm_params) if i not in (2, 4)
        ]  # (by their repr: PostgreSQL's JSON adapter has no equality)
    else:
        INSERT_VERSION.save(ours)  # the driver's cursor
    # As Model.save leaves it: the key the database gave, auto_now_add set, no longer adding, on its database.
    assert isinstance(ours.pk, int) and ours.pk > by_orm.pk
    assert ours.created_at is not None and ours._state.adding is False and ours._state.db == "default"
    stored = TunnelConfiguration.objects.for_org(org_a).get(pk=ours.pk)
    assert model_state(stored) == model_state(ours)
    expected = TunnelConfiguration.objects.for_org(org_a).get(pk=by_orm.pk)
    assert _without(model_state(stored), "id", "version", "created_at") == _without(
        model_state(expected), "id", "version", "created_at"
    )


def test_an_insert_of_a_row_with_its_own_key_and_a_uuid_key(org_a, tunnels):
    mine, _ = tunnels
    ours = _version(mine, 12, id=987654)
    INSERT_VERSION.save(ours)
    assert TunnelConfiguration.objects.for_org(org_a).get(pk=987654).version == 12
    from tunnels.services.lifecycle import _INSERT_TUNNEL

    tunnel = Tunnel(organisation=org_a, name="prepared", secret_ciphertext="x", config={"a": None})
    _INSERT_TUNNEL.save(tunnel, organisation=org_a)
    assert model_state(Tunnel.objects.for_org(org_a).get(pk=tunnel.pk)) == model_state(tunnel)


def test_an_insert_keeps_the_scoping_rules(org_a, org_b, tunnels):
    from controlplane.scoping import OrganisationMismatch

    mine, _ = tunnels
    with pytest.raises(OrganisationMismatch):
        INSERT_VERSION.save(_version(mine, 13), organisation=org_b)  # a row of org_a written as org_b's
    orphan = _version(mine, 14)
    orphan.organisation = None
    with pytest.raises(OrganisationMismatch):
        INSERT_VERSION.save(orphan)
    saved = _version(mine, 15)
    INSERT_VERSION.save(saved)
    with pytest.raises(TypeError, match="new rows"):
        INSERT_VERSION.save(saved)  # not a second time
    with pytest.raises(TypeError, match="saves TunnelConfiguration"):
        INSERT_VERSION.save(Tunnel(organisation=org_a, name="x"))
    from django.db.models import F

    with pytest.raises(TypeError, match="values, not"):
        INSERT_VERSION.save(_version(mine, F("version")))
    assert not TunnelConfiguration.objects.for_org(org_a).filter(version__in=[13, 14]).exists()


def test_a_model_with_its_own_save_says_why_it_may_be_inserted_without_it():
    from controlplane.models import AuditEvent

    with pytest.raises(PreparationError, match="own save"):
        PreparedInsert(AuditEvent)
    PreparedInsert(AuditEvent, own_save="a test")


def test_a_failed_insert_is_djangos_error_and_marks_the_transaction_for_rollback(org_a, tunnels):
    from django.db import IntegrityError, transaction

    mine, _ = tunnels
    INSERT_VERSION.save(_version(mine, 20))
    with transaction.atomic():
        with pytest.raises(IntegrityError):
            INSERT_VERSION.save(_version(mine, 20))  # (tunnel, version) is unique
        assert connection.needs_rollback  # as Model.save marks it: the block is rolled back as it ends
    assert TunnelConfiguration.objects.for_org(org_a).filter(version=20).count() == 1


def test_an_update_writes_what_save_with_update_fields_writes(org_a, tunnels):
    mine, _ = tunnels
    by_orm = Tunnel.objects.for_org(org_a).get(pk=mine.pk)
    ours = Tunnel.objects.for_org(org_a).get(pk=mine.pk)
    for tunnel in (by_orm, ours):
        tunnel.config_version += 1
        tunnel.config = {"ingress": [{"service": "http_status:503"}], "ü": None}
        tunnel.name = "not written"  # not among the fields
    by_orm.save(update_fields=["config_version", "config", "updated_at"])
    after_orm = model_state(Tunnel.objects.for_org(org_a).get(pk=mine.pk))
    before = ours.updated_at
    with CaptureQueriesContext(connection) as queries:
        SAVE_CONFIG.save(ours, organisation=org_a, pk=ours.pk)
    assert len(queries) == 1 and queries[0]["sql"].startswith('UPDATE "tunnels_tunnel" SET "config_version" = ')
    assert ours.updated_at > before  # auto_now, as save() sets it
    stored = model_state(Tunnel.objects.for_org(org_a).get(pk=mine.pk))
    assert stored["name"] == "mine" and stored["config_version"] == after_orm["config_version"]
    assert _without(stored, "updated_at") == _without(after_orm, "updated_at")
    assert stored["updated_at"] == ours.updated_at


def test_an_update_writes_null_as_the_orm_does_and_finds_rows_through_the_scope(org_a, org_b, tunnels):
    from django.db import DatabaseError
    from django.utils import timezone

    mine, theirs = tunnels
    mine.deleted_at = timezone.now()
    SAVE_DELETED.save(mine, organisation=org_a, pk=mine.pk)
    assert Tunnel.objects.for_org(org_a).get(pk=mine.pk).deleted_at == mine.deleted_at
    mine.deleted_at = None
    with CaptureQueriesContext(connection) as queries:
        SAVE_DELETED.save(mine, organisation=org_a, pk=mine.pk)
    assert '"deleted_at" = NULL' in queries[0]["sql"]  # the ORM's SQL for None: a plan of its own
    assert Tunnel.objects.for_org(org_a).get(pk=mine.pk).deleted_at is None
    theirs.deleted_at = timezone.now()
    with pytest.raises(DatabaseError, match="did not affect any rows"):
        SAVE_DELETED.save(theirs, organisation=org_a, pk=theirs.pk)  # another organisation's row: not found
    assert Tunnel.objects.for_org(org_b).get(pk=theirs.pk).deleted_at is None


def test_an_update_is_prepared_on_the_scoping_rules(org_a, tunnels):
    mine, _ = tunnels
    unscoped = PreparedUpdate(lambda pk: Tunnel.objects.filter(pk=pk), fields=("name",), pk=uuid.UUID)
    with pytest.raises(UnscopedQueryError):
        unscoped.save(mine, pk=mine.pk)
    with system_scope("a test"):
        with pytest.raises(UnscopedQueryError):  # checked as written, whatever the caller's context
            unscoped.save(mine, pk=mine.pk)
    constant = PreparedUpdate(lambda pk: Tunnel.objects.for_org(org_a).filter(pk=pk), fields=("name",), pk=uuid.UUID)
    with pytest.raises(PreparationError, match="from a parameter"):
        constant.save(mine, pk=mine.pk)
    for fields in (("id",), ("no_such_field",), ()):
        bad = PreparedUpdate(
            lambda organisation, pk: Tunnel.objects.for_org(organisation).filter(pk=pk),
            fields=fields,
            organisation=Organisation,
            pk=uuid.UUID,
        )
        with pytest.raises(PreparationError, match="cannot be updated"):
            bad.save(mine, organisation=org_a, pk=mine.pk)
    with pytest.raises(TypeError, match="takes"):
        SAVE_DELETED.save(mine, pk=mine.pk)


def test_prepared_writes_send_the_save_signals_as_save_does(org_a, tunnels):
    from django.db.models.signals import post_save, pre_save

    mine, _ = tunnels
    heard = []

    def listen(signal, sender, **kwargs):
        kwargs.pop("instance")
        heard.append((signal, sender, kwargs))

    orm, ours = [], []
    for target, save in (
        (
            orm,
            lambda: (_version(mine, 30).save(force_insert=True), mine.save(update_fields=["deleted_at", "updated_at"])),
        ),
        (
            ours,
            lambda: (INSERT_VERSION.save(_version(mine, 31)), SAVE_DELETED.save(mine, organisation=org_a, pk=mine.pk)),
        ),
    ):
        heard.clear()
        for signal in (pre_save, post_save):
            signal.connect(listen, dispatch_uid=f"test-{id(signal)}")
        try:
            save()
        finally:
            for signal in (pre_save, post_save):
                signal.disconnect(dispatch_uid=f"test-{id(signal)}")
        target.extend(heard)
    assert ours == orm and len(ours) == 4
