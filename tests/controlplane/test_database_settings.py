"""The embedded database's settings as its connections run them (docs/architecture.md, "SQLite durability").

Run in a child process on a fresh data dir with the embedded defaults, whatever database the suite itself uses (CI
runs the suite on PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

READ_PRAGMAS = """
import django
django.setup()
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("PRAGMA synchronous")
    synchronous = cursor.fetchone()[0]
    cursor.execute("PRAGMA journal_mode")
    print(connection.vendor, synchronous, cursor.fetchone()[0])
"""


def embedded(tmp_path: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "controlplane.settings", "DATA_DIR": str(tmp_path), **variables}
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CONTROLPLANE_MODE", "TEST_DB_NAME"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-c", READ_PRAGMAS], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_sqlite_runs_in_wal_mode_syncing_at_checkpoints_unless_told_otherwise(tmp_path):
    default = embedded(tmp_path / "default")
    assert default.returncode == 0, default.stderr
    assert default.stdout.split() == ["sqlite", "1", "wal"]  # NORMAL (1): the documented choice
    full = embedded(tmp_path / "full", SQLITE_SYNCHRONOUS="full")
    assert full.returncode == 0, full.stderr
    assert full.stdout.split() == ["sqlite", "2", "wal"]  # FULL (2): the wait for the disk on every commit


def test_an_unknown_synchronous_setting_is_refused_at_start_up(tmp_path):
    refused = embedded(tmp_path, SQLITE_SYNCHRONOUS="OFF")
    assert refused.returncode != 0
    assert "SQLITE_SYNCHRONOUS is NORMAL, FULL or EXTRA" in refused.stderr
