"""A realistic Access organisation for the benchmarks, made through the services (after django.setup()).

20 applications under one zone, each with 10 application policies of several rules in Cloudflare's evaluation order
(a Bypass first, then Deny and Allow policies that do not match the benchmark's visitor, the Allow that admits it
last), a group built from an email list, and an IP list of offices: a decision for an admitted visitor walks every
policy of its application, the worst case of a realistic configuration.

Run as ``DATA_DIR=… python -m bench.access.seed`` (migrated data dir) for the login benchmark; it prints JSON."""

from __future__ import annotations

import json
import os
from typing import Any

ZONE = "bench.example"
APPS = 20
POLICIES_PER_APP = 10
ADMITTED = "ana@staff.example"  # in the staff list: admitted by every application's last policy
OUTSIDER = "eve@outside.example"  # signed in, admitted by no policy: a 403
VISITOR_IP = "10.20.30.40"  # in the offices list
LOGIN_DOMAIN = "login.example"  # every address there may ask for a PIN (the login benchmark's visitors)


def app_host(index: int) -> str:
    return f"app{index:02d}.{ZONE}"


def realistic_org(organisation: Any, actor: Any, *, verify_zone: bool = True) -> list[Any]:
    """The applications (index 0 … APPS-1) of the realistic organisation described above."""
    from access.services.applications import application_save
    from access.services.directory import group_save, list_save
    from access.services.policies import policy_save
    from controlplane.services.zones import zone_create, zone_mark_verified

    if verify_zone:
        zone_mark_verified(zone=zone_create(organisation=organisation, name=ZONE, actor=actor), actor=actor)
    staff = list_save(
        organisation=organisation,
        actor=actor,
        data={
            "name": "staff",
            "type": "EMAIL",
            "items": [{"value": f"person{n}@staff.example"} for n in range(200)] + [{"value": ADMITTED}],
        },
    )
    offices = list_save(
        organisation=organisation,
        actor=actor,
        data={"name": "offices", "type": "IP", "items": [{"value": f"10.{n}.0.0/16"} for n in range(50)]},
    )
    group = group_save(
        organisation=organisation,
        actor=actor,
        data={
            "name": "engineering",
            "include": [{"email_list": {"id": str(staff.pk)}}, {"email_domain": {"domain": "eng.example"}}],
            "exclude": [{"email": {"email": "former@staff.example"}}],
        },
    )
    apps = []
    for index in range(APPS):
        app = application_save(
            organisation=organisation,
            actor=actor,
            data={"name": f"Tool {index:02d}", "domain": app_host(index), "session_duration": "24h"},
        )
        policies: list[dict[str, Any]] = [
            {"name": "health checks", "decision": "bypass", "include": [{"ip": {"ip": "198.51.100.0/24"}}]},
            {
                "name": "no contractors",
                "decision": "deny",
                "include": [{"email_domain": {"domain": "contractor.example"}}, {"geo": {"country_code": "KP"}}],
            },
        ]
        for n in range(POLICIES_PER_APP - 4):
            policies.append(
                {
                    "name": f"team {n}",
                    "decision": "allow",
                    "include": [
                        {"email": {"email": f"lead{n}@team.example"}},
                        {"email": {"email": f"deputy{n}@team.example"}},
                        {"email_domain": {"domain": f"team{n}.example"}},
                    ],
                    "require": [{"ip": {"ip": "192.0.2.0/24"}}],
                    "exclude": [{"geo": {"country_code": "RU"}}],
                }
            )
        policies.append(
            {"name": "login domain", "decision": "allow", "include": [{"email_domain": {"domain": LOGIN_DOMAIN}}]}
        )
        policies.append(
            {
                "name": "engineering from the offices",
                "decision": "allow",
                "include": [{"group": {"id": str(group.pk)}}],
                "require": [{"ip_list": {"id": str(offices.pk)}}],
                "exclude": [{"email": {"email": "blocked@staff.example"}}],
            }
        )
        for precedence, data in enumerate(policies, start=1):
            policy_save(
                organisation=organisation, actor=actor, data={**data, "precedence": precedence}, application=app
            )
        apps.append(app)
    return apps


def session_token(organisation: Any, app: Any, email: str, seconds: int = 86400) -> str:
    """A valid application session token (`CF_Authorization` of type app), as the login hands out."""
    from access.keys import identity_claims, sign

    claims = identity_claims(organisation, kind="app", audience=[app.aud], email=email, seconds=seconds)
    return sign(organisation, claims)


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
    import django

    django.setup()
    from bench.common import bench_organisation

    _, actor, organisation = bench_organisation()
    apps = realistic_org(organisation, actor)
    target = apps[APPS // 2]
    answer = {"team": organisation.team_name, "app_host": app_host(APPS // 2), "aud": target.aud}
    print(json.dumps({**answer, "login_domain": LOGIN_DOMAIN}))


if __name__ == "__main__":
    main()
