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
        answer["access_note"] = protect(organisation, actor)
    print(json.dumps(answer))


def protect(organisation, actor) -> str:
    """The slot for timing the request path with the Access decision (edge.app.Edge.decide_access): once Access
    enforcement exists, create an application covering HOSTNAME here and return how the bench authenticates
    (e.g. a session cookie for `--header`). Until then the decision step answers None at no cost."""
    return "--access: Access enforcement is not implemented yet; the request path is measured without a decision"


if __name__ == "__main__":
    main()
