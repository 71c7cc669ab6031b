"""Seed a migrated data dir for the benchmark through the services, and print what the bench needs as JSON:
an organisation (2FA not required), its Super Administrator with a signed-in session (for the status watcher),
an API token with every grant (for the config pushes), and the tunnels with their connector tokens.

Run with the same environment as the server: ``DATA_DIR=… python -m bench.connectors.seed --tunnels 1``.
"""

from __future__ import annotations

import argparse
import json
import os


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tunnels", type=int, default=1)
    parser.add_argument("--public-url", required=True)
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.test import Client

    from bench.common import bench_organisation
    from controlplane.choices import TOKEN_RESOURCES, Level
    from controlplane.services.tokens import api_token_create
    from tunnels.services import tunnel_create, tunnel_token

    user, actor, organisation = bench_organisation()
    _, api_token = api_token_create(
        organisation=organisation,
        name="bench",
        grants={resource.value: Level.EDIT.value for resource in TOKEN_RESOURCES},
        actor=actor,
    )
    tunnels = []
    for number in range(args.tunnels):
        tunnel = tunnel_create(organisation=organisation, name=f"fleet-{number}", actor=actor)
        tunnels.append({"id": str(tunnel.id), "token": tunnel_token(tunnel)})
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    cookie = settings.SESSION_COOKIE_NAME
    print(
        json.dumps(
            {
                "account_id": organisation.account_id,
                "api_token": api_token,
                "session_cookie": f"{cookie}={client.cookies[cookie].value}",
                "tunnels": tunnels,
            }
        )
    )


if __name__ == "__main__":
    main()
