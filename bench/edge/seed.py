"""Seed a migrated data dir for the edge benchmark through the services, and print what the bench needs as JSON:
an organisation, a verified zone, a tunnel whose configuration routes the public hostname to the origin (uploads to
the sink), and the tunnel's connector token.

Run with the same environment as the edge: ``DATA_DIR=… python -m bench.edge.seed --origin URL --sink URL``.
"""

from __future__ import annotations

import argparse
import json
import os

ZONE = "bench.example"
HOSTNAME = f"app.{ZONE}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--origin", required=True, help="service URL of the ingress rule, e.g. http://127.0.0.1:8081")
    parser.add_argument("--access", action="store_true", help="put the hostname behind an Access policy")
    parser.add_argument(
        "--sink", required=True, help="service URL of uploads (path ^/upload), e.g. http://127.0.0.1:8082"
    )
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
    import django

    django.setup()
    from bench.common import bench_organisation
    from controlplane.services.zones import zone_create, zone_mark_verified
    from tunnels.services import tunnel_config_update, tunnel_create, tunnel_token

    _, actor, organisation = bench_organisation()
    zone_mark_verified(zone=zone_create(organisation=organisation, name=ZONE, actor=actor), actor=actor)
    tunnel = tunnel_create(organisation=organisation, name="edge-bench", actor=actor)
    config = {
        "ingress": [
            {"hostname": HOSTNAME, "path": "^/upload$", "service": args.sink},
            {"hostname": HOSTNAME, "service": args.origin},
            {"service": "http_status:404"},
        ]
    }
    tunnel_config_update(tunnel=tunnel, config=config, actor=actor)
    answer = {"tunnel": str(tunnel.id), "token": tunnel_token(tunnel), "hostname": HOSTNAME}
    if args.access:
        answer["cookie"] = protect(organisation, actor)
    print(json.dumps(answer))


def protect(organisation, actor) -> str:
    """Put HOSTNAME behind an Access application with an Allow policy for the bench's owner, and return the value of
    a valid application session cookie (`CF_Authorization`) for it, as the login would hand out."""
    from access.services.applications import application_save
    from access.services.policies import policy_save
    from bench.access.seed import session_token

    app = application_save(
        organisation=organisation, actor=actor, data={"name": "Bench", "domain": HOSTNAME, "session_duration": "24h"}
    )
    policy_save(
        organisation=organisation,
        actor=actor,
        data={"name": "owner", "decision": "allow", "include": [{"email": {"email": "bench@example.com"}}]},
        application=app,
    )
    return session_token(organisation, app, "bench@example.com")


if __name__ == "__main__":
    main()
