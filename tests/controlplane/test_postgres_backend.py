"""The PostgreSQL backend (controlplane/backends/postgresql): a persistent connection's health check answered without a
round trip while the server has said nothing, Django's own check (and a new connection) as soon as it has; prepared
queries run as server-side prepared statements. Observed on a real server: the protocol messages psycopg sends
(libpq's trace), `pg_terminate_backend`, `pg_prepared_statements`."""

from __future__ import annotations

import select
import tempfile
import uuid

import psycopg
import pytest
from django.db import connection

from controlplane.actors import Actor
from controlplane.models import Organisation
from controlplane.prepared import PreparedQuery
from tests.conftest import REQUIRE_SERVICES
from tunnels.models import Tunnel
from tunnels.services import tunnel_create

# Transactions of their own: inside a test's wrapping transaction the backend rightly falls back to Django's check.
pytestmark = pytest.mark.django_db(transaction=True)

BY_NAME = PreparedQuery(
    lambda organisation, name: Tunnel.objects.for_org(organisation).filter(name=name).order_by()[:1],
    organisation=Organisation,
    name=str,
)


@pytest.fixture(autouse=True)
def postgres():
    if connection.vendor != "postgresql":
        message = f"the suite runs on {connection.vendor}; set DATABASE_URL to run it on PostgreSQL"
        if REQUIRE_SERVICES:
            pytest.fail(f"{message} (REQUIRE_SERVICES=1: the production topology must be tested)")
        pytest.skip(message)
    assert connection.settings_dict["ENGINE"] == "controlplane.backends.postgresql"
    assert connection.health_check_enabled


def sent(action) -> list[str]:
    """The protocol messages (libpq's trace, frontend to server) that `action` sends on the connection."""
    with tempfile.TemporaryFile("w+") as trace:
        pgconn = connection.connection.pgconn
        pgconn.trace(trace.fileno())
        pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS | psycopg.pq.Trace.REGRESS_MODE)
        try:
            action()
        finally:
            pgconn.untrace()
        trace.seek(0)
        return [line for line in trace.read().splitlines() if line.startswith("F")]


def a_new_request() -> None:
    """What Django does between two requests (`request_finished` / `request_started`)."""
    connection.close_if_unusable_or_obsolete()
    assert connection.connection is not None and not connection.health_check_done


def test_a_quiet_idle_connection_is_checked_without_a_round_trip():
    connection.ensure_connection()
    a_new_request()
    assert sent(connection.close_if_health_check_failed) == []
    assert connection.health_check_done and connection.connection is not None


def test_a_connection_the_server_closed_is_replaced_before_the_request_uses_it():
    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    old = connection.connection
    a_new_request()
    dsn = f"host={connection.settings_dict['HOST']} port={connection.settings_dict['PORT'] or 5432} dbname=postgres"
    with psycopg.connect(dsn, user=connection.settings_dict["USER"] or "postgres", autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone()[0]
    poller = select.poll()  # the server's goodbye reaches the socket (a FATAL message, then the end of the stream)
    poller.register(old.pgconn.socket, select.POLLIN)
    assert poller.poll(5000)

    connection.close_if_health_check_failed()  # the request's first query does this first
    assert connection.connection is None  # Django's check ran, failed, and closed it

    with connection.cursor() as cursor:  # the request goes on with a new connection, without an error
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != pid


def test_inside_a_transaction_the_backend_falls_back_to_djangos_check():
    connection.ensure_connection()
    a_new_request()
    connection.connection.execute("BEGIN")
    try:
        messages = sent(connection.close_if_health_check_failed)
    finally:
        connection.connection.execute("ROLLBACK")
    assert any("SELECT 1" in message for message in messages)


def test_prepared_queries_are_prepared_once_per_connection_and_bound_on_the_server(org_a, org_b):
    tunnel = tunnel_create(organisation=org_a, name="prepared", actor=Actor.cli())
    tunnel_create(organisation=org_b, name="prepared", actor=Actor.cli())
    first = BY_NAME.first(organisation=org_a, name="prepared")
    messages = sent(lambda: BY_NAME.first(organisation=org_a, name="prepared"))
    again = BY_NAME.first(organisation=org_a, name="prepared")
    assert first.pk == again.pk == tunnel.pk and first.organisation is org_a

    # The second call: Bind + Execute of the statement prepared by the first, no Parse, no query text, no SELECT 1.
    kinds = [message.split("\t")[2].split(" ")[0] for message in messages]
    assert "Parse" not in kinds and "Query" not in kinds and "Bind" in kinds, messages
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        statements = [row[0] for row in cursor.fetchall()]
    assert any('"tunnels_tunnel"' in statement and "$1" in statement for statement in statements), statements

    assert BY_NAME.first(organisation=org_b, name="prepared").organisation is org_b  # other values, other rows
    assert BY_NAME.first(organisation=org_a, name=str(uuid.uuid4())) is None


def test_prepared_statements_can_be_turned_off(org_a, settings):
    tunnel = tunnel_create(organisation=org_a, name="unprepared", actor=Actor.cli())
    connection.settings_dict["PREPARED_STATEMENTS"] = False
    try:
        connection.close()
        assert BY_NAME.first(organisation=org_a, name="unprepared").pk == tunnel.pk
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_prepared_statements")
            assert cursor.fetchone()[0] == 0
    finally:
        connection.settings_dict["PREPARED_STATEMENTS"] = True
        connection.close()
