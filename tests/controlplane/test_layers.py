"""The layers of docs/architecture.md hold: import-linter's contracts are kept (CI runs them too, `make
lint-imports`), and the core's migrations no longer depend on a product app's."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.db.migrations.loader import MigrationLoader

ROOT = Path(__file__).resolve().parents[2]
PRODUCT_APPS = {"tunnels", "access", "certificates", "edge"}
# The last core migration written before issue 9 separated the layers; it stays for existing installations.
LAST_MIGRATION_BEFORE_LAYERS = "0003_dnsrecord_tunnel_dnsrecord_zone_and_more"


def test_core_migrations_after_the_layering_depend_on_no_product_app(db):
    loader = MigrationLoader(None, ignore_no_migrations=True)
    newer = sorted(name for app, name in loader.disk_migrations if app == "controlplane" and int(name[:4]) > 3)
    assert newer, "the core has migrations after 0003"
    for name in newer:
        dependencies = {app for app, _ in loader.disk_migrations["controlplane", name].dependencies}
        assert not dependencies & PRODUCT_APPS, f"controlplane {name} depends on {dependencies & PRODUCT_APPS}"
    assert ("controlplane", LAST_MIGRATION_BEFORE_LAYERS) in loader.disk_migrations


def test_the_import_contracts_are_kept():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    if not lint_imports.exists() and not shutil.which("lint-imports"):
        pytest.fail("import-linter is missing: `make dev-deps` installs it (requirements-dev.txt)")
    result = subprocess.run(
        [str(lint_imports if lint_imports.exists() else "lint-imports"), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
