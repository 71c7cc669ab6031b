"""Seed a migrated data dir for the API benchmark through the services, count the queries of every benchmarked
request in-process (django.test.Client + CaptureQueriesContext, the same views and settings as the server), and
print what the bench needs as JSON.

The queries are counted twice: with only the benchmark's organisations, and again after `--others` organisations
(each with tunnels, a token and a member) were added, so that a cost that grows with other tenants shows.

Run with the server's environment (BENCH_ENDPOINTS=1 for the trivial view):
``DATA_DIR=… python -m bench.api.seed --others 200``.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

# name → number of tunnels of the organisation whose tunnel list is measured
LIST_SIZES = {"list-1": 1, "list-100": 100, "list-1000": 1000}
WRITE_CONFIG = {"config": {"ingress": [{"service": "http_status:404"}], "warp-routing": {"enabled": False}}}


def endpoints(seeded: dict[str, Any]) -> list[dict[str, Any]]:
    """What the bench measures: name, method, path, body, how it authenticates (token of which organisation or the
    UI session), and whether it is a read or a write (the targets differ)."""
    v4 = "/client/v4/accounts"
    big, write = seeded["orgs"]["list-1000"], seeded["orgs"]["write"]
    tunnel = f"{v4}/{big['account']}/cfd_tunnel/{big['tunnel']}"
    rows = [
        {"name": "trivial", "method": "GET", "path": "/bench/trivial", "auth": None, "kind": "ceiling"},
        {"name": "account", "method": "GET", "path": f"{v4}/{big['account']}", "auth": "list-1000", "kind": "read"},
    ]
    for name in LIST_SIZES:
        org = seeded["orgs"][name]
        rows.append({"name": name, "method": "GET", "path": f"{v4}/{org['account']}/cfd_tunnel", "auth": name})
    rows += [
        {"name": "tunnel", "method": "GET", "path": tunnel, "auth": "list-1000"},
        {"name": "configuration", "method": "GET", "path": f"{tunnel}/configurations", "auth": "list-1000"},
        {"name": "connections", "method": "GET", "path": f"{tunnel}/connections", "auth": "list-1000"},
        {
            "name": "put-config",
            "method": "PUT",
            "path": f"{v4}/{write['account']}/cfd_tunnel/{write['tunnel']}/configurations",
            "body": WRITE_CONFIG,
            "auth": "write",
            "kind": "write",
        },
        {
            "name": "create+delete",
            "method": "POST+DELETE",
            "path": f"{v4}/{write['account']}/cfd_tunnel",
            "auth": "write",
            "kind": "write",
        },
        {"name": "ui-tunnels", "method": "GET", "path": f"/o/{seeded['ui_account']}/tunnels/", "auth": "session"},
    ]
    for row in rows:
        row.setdefault("kind", "read")
    return rows


def seed_bench(others: int) -> dict[str, Any]:
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from controlplane.actors import Actor
    from controlplane.models import User
    from controlplane.services.organisations import organisation_create
    from controlplane.services.tokens import api_token_create
    from tunnels.services import tunnel_create

    user = User.objects.create_user("bench@example.com", password="bench-password-1")
    device = TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)
    actor = Actor(user=user)
    orgs: dict[str, Any] = {}
    for name, count in {**LIST_SIZES, "write": 1}.items():
        # The product's default: the organisation requires 2FA (the UI session below has passed it).
        organisation = organisation_create(team_name=f"bench-{name}", owner=user, actor=Actor.cli())
        tunnels = [tunnel_create(organisation=organisation, name=f"t{i:04d}", actor=actor) for i in range(count)]
        _, raw = api_token_create(
            organisation=organisation, name="bench", grants={"tunnels": "edit"}, actor=Actor.cli()
        )
        orgs[name] = {"account": organisation.account_id, "tunnel": str(tunnels[0].id), "token": raw}
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return {
        "orgs": orgs,
        "ui_account": orgs["list-100"]["account"],
        "cookie": f"{settings.SESSION_COOKIE_NAME}={session.session_key}",
    }


def seed_others(count: int) -> None:
    """Other tenants: an owner, three tunnels and a token each."""
    from controlplane.actors import Actor
    from controlplane.models import User
    from controlplane.services.organisations import organisation_create
    from controlplane.services.tokens import api_token_create
    from tunnels.services import tunnel_create

    for index in range(count):
        owner = User.objects.create_user(f"other{index}@example.com", password=None)
        organisation = organisation_create(team_name=f"other-{index}", owner=owner, actor=Actor.cli())
        for number in range(3):
            tunnel_create(organisation=organisation, name=f"o{number}", actor=Actor(user=owner))
        api_token_create(organisation=organisation, name="other", grants={"tunnels": "read"}, actor=Actor.cli())


def count_queries(seeded: dict[str, Any]) -> dict[str, int]:
    """Queries of one request of each endpoint (the second one: the first fills start-up caches)."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    counts: dict[str, int] = {}
    for row in endpoints(seeded):
        client = Client()
        headers: dict[str, str] = {}
        if row["auth"] == "session":
            name, _, value = seeded["cookie"].partition("=")
            client.cookies[name] = value
        elif row["auth"]:
            headers["Authorization"] = f"Bearer {seeded['orgs'][row['auth']]['token']}"
        used = 0
        for attempt in range(2):
            with CaptureQueriesContext(connection) as queries:
                if row["method"] == "POST+DELETE":
                    created = client.post(
                        row["path"],
                        {"name": f"q-{len(counts)}-{attempt}-{os.getpid()}"},
                        content_type="application/json",
                        headers=headers,
                    )
                    _check(row, created)
                    answer = client.delete(f"{row['path']}/{created.json()['result']['id']}", headers=headers)
                elif row["method"] == "PUT":
                    answer = client.put(row["path"], row["body"], content_type="application/json", headers=headers)
                else:
                    answer = client.get(row["path"], headers=headers)
                _check(row, answer)
            used = len(queries)
        # create+delete is two requests: queries per request, as the other figures
        counts[row["name"]] = used if row["method"] != "POST+DELETE" else used // 2
    return counts


def _check(row: dict[str, Any], answer: Any) -> None:
    if answer.status_code != 200:
        raise SystemExit(f"{row['name']}: {row['method']} {row['path']} answered {answer.status_code}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--others", type=int, default=200, help="other organisations seeded (200)")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
    import django

    django.setup()
    from django.conf import settings

    settings.DEBUG = False
    seeded = seed_bench(args.others)
    seeded["queries_alone"] = count_queries(seeded)
    seed_others(args.others)
    seeded["queries_with_others"] = count_queries(seeded)
    seeded["endpoints"] = endpoints(seeded)
    print(json.dumps(seeded))


if __name__ == "__main__":
    main()
