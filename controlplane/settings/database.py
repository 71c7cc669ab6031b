"""DATABASE_URL, defaulting to a SQLite file in the data dir."""

from __future__ import annotations

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from .env import data_dir, env_bool, env_int, env_str

_url = env_str("DATABASE_URL") or f"sqlite:///{data_dir() / 'controlplane.sqlite3'}"
# Persistent connections: each thread of the HTTP pool (controlplane/serving.py) keeps its connection between
# requests instead of connecting (on PostgreSQL: TCP + authentication) for every one; checked before reuse.
_default = dj_database_url.parse(_url, conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 600), conn_health_checks=True)
if _default["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE transactions take the write lock up front, so check-then-insert sequences (zone ownership,
    # hostname uniqueness) cannot interleave between processes; WAL lets readers run beside one writer.
    # synchronous=NORMAL (docs/architecture.md, "SQLite durability"): in WAL mode the WAL is synced at checkpoints,
    # not at every commit. The database stays consistent whatever happens; a power failure or an OS crash (not a
    # crash of the process) may roll back the last transactions committed before it. FULL synced every commit:
    # ~1.5-3 ms of wall time and ~0.3 ms of CPU per write request on this project's machines (issue 13).
    _synchronous = (env_str("SQLITE_SYNCHRONOUS") or "NORMAL").upper()
    if _synchronous not in {"NORMAL", "FULL", "EXTRA"}:
        raise ImproperlyConfigured(f"SQLITE_SYNCHRONOUS is NORMAL, FULL or EXTRA, not {_synchronous!r}")
    _default.setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": f"PRAGMA journal_mode=WAL; PRAGMA synchronous={_synchronous};",
        }
    )
    # A file (not :memory:) so that servers started by the tests in subprocesses see the test database.
    _default["TEST"] = {"NAME": env_str("TEST_DB_NAME") or str(data_dir() / "test.sqlite3")}
else:
    if _default["ENGINE"] == "django.db.backends.postgresql":
        # Django's backend, with the health check answered without a round trip and server-side prepared
        # statements for the prepared queries (controlplane/backends/postgresql/base.py; docs/architecture.md).
        _default["ENGINE"] = "controlplane.backends.postgresql"
        _default["PREPARED_STATEMENTS"] = env_bool("DATABASE_PREPARED_STATEMENTS", True)
    if env_str("TEST_DB_NAME"):
        _default["TEST"] = {"NAME": env_str("TEST_DB_NAME")}

DATABASES = {"default": _default}
