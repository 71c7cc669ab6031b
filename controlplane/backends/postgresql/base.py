"""Django's PostgreSQL backend with two savings per request (issue 13; docs/architecture.md, "PostgreSQL").

1. **The health check without a round trip.** With `CONN_HEALTH_CHECKS` (settings/database.py), Django checks a
   persistent connection before a request's first query with `SELECT 1`: a round trip per request, ~40 µs of this
   process's CPU and ~35 µs of the server's on the project's machines, for an answer the kernel already has. A server
   that closed the connection (restart, `pg_terminate_backend`, an idle timeout, a proxy) has sent a FIN or an error
   message: the socket is readable. So the check first polls the socket without waiting; a quiet, idle connection
   with no transaction open is taken as usable, and anything else (readable, error, hang-up, a transaction state
   other than idle, a connection psycopg knows to be broken) runs Django's own check (`SELECT 1`, closing the
   connection if it fails), as before. A peer that vanished without a FIN is not seen by either check in time: the
   query then fails as Django's `SELECT 1` would have hung or failed.
2. **Server-side prepared statements for prepared queries** (controlplane/prepared.py). Django's connections bind
   parameters in the client (psycopg's `ClientCursor`: each query's text re-quoted in Python, then parsed and planned
   by the server). A prepared query's SQL is the same on every call, so `prepared_cursor()` gives it a cursor that
   binds on the server and prepares each statement once per connection: ~2x less CPU per query on both sides.
   Only those queries use it (the ORM's SQL is not written to be prepared, Django ticket #20516); psycopg never
   prepares through a `ClientCursor`, so the connection's other queries are unchanged. Off with
   `DATABASE_PREPARED_STATEMENTS=0` (a transaction-mode pooler older than PgBouncer 1.21 cannot route them).
"""

from __future__ import annotations

import select
from typing import Any

from django.db.backends.postgresql import base
from psycopg import pq

# Prepare only what is asked for explicitly (`execute(..., prepare=True)`): a threshold no query count reaches, since
# psycopg turns preparation off altogether while the threshold is None (Django's default, for poolers).
_EXPLICIT_ONLY = 2**62
_QUIET_EVENTS = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP | select.POLLNVAL


class DatabaseWrapper(base.DatabaseWrapper):
    def close_if_health_check_failed(self) -> None:
        if self.connection is None or not self.health_check_enabled or self.health_check_done:
            return
        if self._quiet():
            self.health_check_done = True
            return
        super().close_if_health_check_failed()

    def _quiet(self) -> bool:
        """The connection is open, idle, known good, and the server has sent nothing since its last answer."""
        connection = self.connection
        try:
            pgconn = connection.pgconn
            if (
                connection.closed
                or connection.broken
                or pgconn.status != pq.ConnStatus.OK
                or pgconn.transaction_status != pq.TransactionStatus.IDLE
            ):
                return False
            poller = select.poll()
            poller.register(pgconn.socket, _QUIET_EVENTS)
            return not poller.poll(0)
        except Exception:  # anything unexpected: let Django's own check decide
            return False

    def prepared_cursor(self) -> Any:
        """A cursor for controlplane/prepared.py's queries: server-side binding, statements prepared once per
        connection when `DATABASE_PREPARED_STATEMENTS` is on (else None: the caller uses `create_cursor()`); time
        zone set up as `create_cursor()` does."""
        if not self.settings_dict.get("PREPARED_STATEMENTS", True):
            return None
        self.ensure_connection()
        if self.connection.prepare_threshold is None:
            self.connection.prepare_threshold = _EXPLICIT_ONLY
        cursor = base.ServerBindingCursor(self.connection)
        loader = self.connection.adapters.get_loader(base.TIMESTAMPTZ_OID, pq.Format.TEXT)
        if self.timezone != loader.timezone:
            base.register_tzloader(self.timezone, cursor)
        return cursor
