"""The embedded database's settings as its connections run them (docs/architecture.md, "SQLite durability")."""

from __future__ import annotations

import pytest
from django.db import connection


@pytest.mark.django_db
def test_sqlite_runs_in_wal_mode_syncing_at_checkpoints():
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's settings")
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA synchronous")
        assert cursor.fetchone()[0] == 1  # NORMAL: the documented choice, SQLITE_SYNCHRONOUS=FULL to sync every commit
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"
