"""What both benchmarks (bench/connectors, bench/edge) need alike: a server process's environment, and the
benchmark's owner and organisation made through the services."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# Variables of the caller's environment that would switch a benchmark's server to another topology than the one the
# benchmark sets up itself.
TOPOLOGY_VARIABLES = ("DATABASE_URL", "REDIS_URL", "CONTROLPLANE_MODE", "CELERY_BROKER_URL")


def server_env(data_dir: Path, port: int) -> dict[str, str]:
    """The environment of a server (or `manage.py`) process on `data_dir`, answering as http://127.0.0.1:<port>, on
    the embedded defaults whatever the caller's environment says; a benchmark adds its topology's variables."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "controlplane.settings",
        "DATA_DIR": str(data_dir),
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    for name in TOPOLOGY_VARIABLES:
        env.pop(name, None)
    return env


def bench_organisation() -> tuple[Any, Any, Any]:
    """(user, actor, organisation): the benchmark's owner `bench@example.com` and its organisation `bench`, made
    through the services (after django.setup())."""
    from controlplane.actors import Actor
    from controlplane.models import User
    from controlplane.services.organisations import organisation_create

    user = User.objects.create_user("bench@example.com", password="bench-password-1")
    actor = Actor(user=user)
    organisation = organisation_create(team_name="bench", owner=user, actor=Actor.cli(), require_2fa=False)
    return user, actor, organisation
