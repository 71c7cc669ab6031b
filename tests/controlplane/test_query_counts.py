"""Every list endpoint of the API runs a pinned number of queries (`QUERIES`), whatever the page size or the number
of rows.

The list endpoints are found in the OpenAPI schema (every GET whose result is an array), so a new one fails
`test_every_list_endpoint_is_covered` until `SEEDERS` says how to fill it with rows."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator

from controlplane.actors import Actor
from controlplane.choices import InvitationStatus, Role
from controlplane.models import AuditEvent, Invitation, Organisation
from controlplane.services.audit import audit_record
from tests.conftest import make_token
from tests.factories import MembershipFactory, OrganisationFactory, UserFactory, ZoneFactory

ROWS = 55


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@dataclass
class Seeded:
    kwargs: dict[str, str]


def seed_accounts(org: Organisation, admin: Any, rows: int) -> Seeded:
    for _ in range(rows - 1):
        MembershipFactory(organisation=OrganisationFactory(), user=admin, role=Role.READ_ONLY)
    return Seeded({})


def seed_members(org: Organisation, admin: Any, rows: int) -> Seeded:
    for index in range(rows // 2):
        MembershipFactory(organisation=org, user=UserFactory(email=f"member{index}@alpha.test"))
    for index in range(rows - rows // 2):
        Invitation.objects.create(
            organisation=org,
            email=f"invitee{index}@example.org",
            token_hash=uuid.uuid4().hex,
            status=InvitationStatus.PENDING,
            expires_at=timezone.now() + timezone.timedelta(days=1),
        )
    return Seeded({})


def seed_nothing(org: Organisation, admin: Any, rows: int) -> Seeded:
    return Seeded({})  # a fixed list (roles, permission groups)


def seed_zones(org: Organisation, admin: Any, rows: int) -> Seeded:
    for index in range(rows):
        ZoneFactory(organisation=org, name=f"zone{index}.{org.team_name}.example")
    return Seeded({})


def seed_audit(org: Organisation, admin: Any, rows: int) -> Seeded:
    for index in range(rows):
        audit_record(organisation=org, actor=Actor(user=admin), action="update", resource_type="x", resource_id=index)
    return Seeded({})


def seed_tokens(org: Organisation, admin: Any, rows: int) -> Seeded:
    for _ in range(rows):
        make_token(org, {"zones": "read"})
    return Seeded({})


def seed_tunnels(org: Organisation, admin: Any, rows: int) -> Seeded:
    from tunnels.services import tunnel_create

    for index in range(rows):
        tunnel = tunnel_create(organisation=org, name=f"tunnel-{index}", actor=Actor(user=admin))
        _connect(org, tunnel)
    return Seeded({})


def _connect(org: Organisation, tunnel: Any) -> None:
    from tunnels.models import Connection, Connector

    now = timezone.now()
    connector = Connector.objects.create(
        organisation=org, tunnel=tunnel, connector_id=uuid.uuid4(), run_at=now, last_seen_at=now
    )
    Connection.objects.create(organisation=org, tunnel=tunnel, connector=connector, server_id="server-1", opened_at=now)


def seed_connections(org: Organisation, admin: Any, rows: int) -> Seeded:
    from tunnels.services import tunnel_create

    tunnel = tunnel_create(organisation=org, name="busy", actor=Actor(user=admin))
    for _ in range(rows):
        _connect(org, tunnel)
    return Seeded({"tunnel_id": str(tunnel.id)})


def seed_dns_records(org: Organisation, admin: Any, rows: int) -> Seeded:
    from controlplane.services.dns import dns_record_create

    zone = ZoneFactory(organisation=org, name=f"records.{org.team_name}.example")
    for index in range(rows):
        dns_record_create(zone=zone, actor=Actor(user=admin), type="A", name=f"host{index}", content="192.0.2.1")
    return Seeded({"zone_id": zone.id.hex})


def seed_hostnames(org: Organisation, admin: Any, rows: int) -> Seeded:
    from tunnels.services import tunnel_config_update, tunnel_create

    zone = ZoneFactory(organisation=org, name=f"apps.{org.team_name}.example")
    tunnel = tunnel_create(organisation=org, name="many", actor=Actor(user=admin))
    rules = [{"hostname": f"app{i}.{zone.name}", "service": "http://localhost:1"} for i in range(rows)]
    tunnel_config_update(tunnel=tunnel, config={"ingress": [*rules, {"service": "http_status:404"}]}, actor=Actor.cli())
    return Seeded({"tunnel_id": str(tunnel.id)})


def _access_zone(org: Organisation) -> Any:
    from controlplane.choices import ZoneStatus

    return ZoneFactory(organisation=org, name=f"access.{org.team_name}.example", status=ZoneStatus.ACTIVE)


def _policy(org: Organisation, index: int) -> Any:
    from access.services.policies import policy_save

    data = {"name": f"p{index}", "decision": "allow", "include": [{"email": {"email": f"u{index}@alpha.test"}}]}
    return policy_save(organisation=org, actor=Actor.cli(), data=data)


def seed_access_apps(org: Organisation, admin: Any, rows: int) -> Seeded:
    from access.services.applications import application_save

    zone = _access_zone(org)
    policies = [str(_policy(org, index).pk) for index in range(3)]
    for index in range(rows):
        data = {"name": f"app{index}", "domain": f"app{index}.{zone.name}", "policies": policies}
        application_save(organisation=org, actor=Actor.cli(), data=data)
    return Seeded({})


def seed_access_app_policies(org: Organisation, admin: Any, rows: int) -> Seeded:
    from access.services.applications import application_save

    zone = _access_zone(org)
    policies = [str(_policy(org, index).pk) for index in range(min(rows, 50))]  # 50: the per-application cap
    app = application_save(organisation=org, actor=Actor.cli(), data={"domain": zone.name, "policies": policies})
    return Seeded({"app_id": str(app.pk)})


def seed_access_policies(org: Organisation, admin: Any, rows: int) -> Seeded:
    for index in range(rows):
        _policy(org, index)
    return Seeded({})


def seed_access_groups(org: Organisation, admin: Any, rows: int) -> Seeded:
    from access.services.directory import group_save

    for index in range(rows):
        data = {"name": f"g{index}", "include": [{"email_domain": {"domain": "alpha.test"}}]}
        group_save(organisation=org, actor=Actor.cli(), data=data)
    return Seeded({})


def seed_access_lists(org: Organisation, admin: Any, rows: int) -> Seeded:
    from access.services.directory import list_save

    for index in range(rows):
        data = {"name": f"l{index}", "type": "IP", "items": [{"value": f"192.0.2.{index}"}]}
        list_save(organisation=org, actor=Actor.cli(), data=data)
    return Seeded({})


def seed_service_tokens(org: Organisation, admin: Any, rows: int) -> Seeded:
    from access.services.directory import service_token_create

    for index in range(rows):
        service_token_create(organisation=org, actor=Actor.cli(), data={"name": f"t{index}"})
    return Seeded({})


def seed_access_log(org: Organisation, admin: Any, rows: int) -> Seeded:
    from access.models import AccessRequest

    for index in range(rows):
        AccessRequest.objects.create(organisation=org, user_email=f"u{index}@alpha.test", allowed=index % 2 == 0)
    return Seeded({})


def seed_certificates(org: Organisation, admin: Any, rows: int) -> Seeded:
    from certificates.logic import pki
    from certificates.services import certificate_create, certificate_issue

    zone = ZoneFactory(organisation=org, name=f"certs.{org.team_name}.example")
    csr = pki.build_csr(pki.generate_key("ecc"), [zone.name])
    for index in range(rows):
        certificate = certificate_create(
            organisation=org,
            actor=Actor(user=admin),
            hostnames=[f"h{index}.{zone.name}"],
            request_type="origin-ecc",
            csr=csr,
        )
        certificate_issue(organisation_id=str(org.pk), certificate_id=certificate.id)
    return Seeded({})


def seed_origin_errors(org: Organisation, admin: Any, rows: int) -> Seeded:
    from tunnels.models import OriginError
    from tunnels.services import tunnel_create

    tunnel = tunnel_create(organisation=org, name="failing", actor=Actor(user=admin))
    now = timezone.now()
    OriginError.objects.bulk_create(
        OriginError(
            organisation=org,
            tunnel=tunnel,
            occurred_at=now - timezone.timedelta(seconds=index),
            request_id=uuid.uuid4().hex,
            hostname=f"app.{org.team_name}.example",
            status=502,
            reason="connection refused",
        )
        for index in range(rows)
    )
    return Seeded({"tunnel_id": str(tunnel.id)})


def in_access_zone(seeder: Callable[[Organisation, Any, int], Seeded]) -> Callable[[Organisation, Any, int], Seeded]:
    """The `/zones/{zone_id}/access/…` variant of an account list: the same rows, listed under the Access zone."""

    def seed(org: Organisation, admin: Any, rows: int) -> Seeded:
        from controlplane.models import Zone

        seeded = seeder(org, admin, rows)
        zone = Zone.objects.for_org(org).filter(name=f"access.{org.team_name}.example").first() or _access_zone(org)
        return Seeded({**seeded.kwargs, "zone_id": zone.id.hex})

    seed.__name__ = f"{seeder.__name__}_in_zone"
    seed.seeds_nothing = seeder is seed_nothing  # type: ignore[attr-defined]
    return seed


# OpenAPI path of each list endpoint -> how to give it `rows` rows (as seen by org A's Super Administrator).
SEEDERS: dict[str, Callable[[Organisation, Any, int], Seeded]] = {
    "/accounts": seed_accounts,
    "/accounts/{account_id}/members": seed_members,
    "/accounts/{account_id}/roles": seed_nothing,
    "/accounts/{account_id}/tokens/permission_groups": seed_nothing,
    "/accounts/{account_id}/audit_logs": seed_audit,
    "/accounts/{account_id}/tokens": seed_tokens,
    "/zones": seed_zones,
    "/accounts/{account_id}/cfd_tunnel": seed_tunnels,
    "/accounts/{account_id}/cfd_tunnel/{tunnel_id}/connections": seed_connections,
    "/zones/{zone_id}/dns_records": seed_dns_records,
    "/accounts/{account_id}/cfd_tunnel/{tunnel_id}/hostnames": seed_hostnames,
    "/accounts/{account_id}/access/apps": seed_access_apps,
    "/accounts/{account_id}/access/apps/{app_id}/policies": seed_access_app_policies,
    "/accounts/{account_id}/access/policies": seed_access_policies,
    "/accounts/{account_id}/access/groups": seed_access_groups,
    "/accounts/{account_id}/gateway/lists": seed_access_lists,
    "/accounts/{account_id}/access/service_tokens": seed_service_tokens,
    "/accounts/{account_id}/access/identity_providers": seed_nothing,
    "/accounts/{account_id}/access/logs/access_requests": seed_access_log,
    "/accounts/{account_id}/access/policy_tester": seed_access_apps,
    "/certificates": seed_certificates,
    "/accounts/{account_id}/origin_certificates": seed_certificates,
    "/origin_ca/roots": seed_nothing,
    "/accounts/{account_id}/cfd_tunnel/{tunnel_id}/origin_errors": seed_origin_errors,
    "/zones/{zone_id}/access/apps": in_access_zone(seed_access_apps),
    "/zones/{zone_id}/access/apps/{app_id}/policies": in_access_zone(seed_access_app_policies),
    "/zones/{zone_id}/access/groups": in_access_zone(seed_access_groups),
    "/zones/{zone_id}/access/identity_providers": in_access_zone(seed_nothing),
    "/zones/{zone_id}/access/service_tokens": in_access_zone(seed_service_tokens),
}


# Queries of one list request by a signed-in member (session and user lookups, organisation access, the page),
# pinned: a change is a decision to write down here, not a drift. Read the breakdown with CaptureQueriesContext.
QUERIES: dict[str, int] = {
    "/accounts": 3,
    "/accounts/{account_id}/members": 5,
    "/accounts/{account_id}/roles": 3,
    "/accounts/{account_id}/tokens/permission_groups": 3,
    "/accounts/{account_id}/audit_logs": 5,
    "/accounts/{account_id}/tokens": 5,
    "/zones": 5,
    "/accounts/{account_id}/cfd_tunnel": 7,
    "/accounts/{account_id}/cfd_tunnel/{tunnel_id}/connections": 6,
    "/zones/{zone_id}/dns_records": 7,
    "/accounts/{account_id}/cfd_tunnel/{tunnel_id}/hostnames": 4,
    "/accounts/{account_id}/access/apps": 6,
    "/accounts/{account_id}/access/apps/{app_id}/policies": 8,
    "/accounts/{account_id}/access/groups": 5,
    "/accounts/{account_id}/access/identity_providers": 5,
    "/accounts/{account_id}/access/logs/access_requests": 5,
    "/accounts/{account_id}/access/policies": 5,
    "/accounts/{account_id}/access/policy_tester": 7,
    "/accounts/{account_id}/access/service_tokens": 5,
    "/accounts/{account_id}/gateway/lists": 5,
    "/certificates": 5,
    "/accounts/{account_id}/origin_certificates": 5,
    "/origin_ca/roots": 5,
    "/accounts/{account_id}/cfd_tunnel/{tunnel_id}/origin_errors": 6,
    "/zones/{zone_id}/access/apps": 9,
    "/zones/{zone_id}/access/apps/{app_id}/policies": 11,
    "/zones/{zone_id}/access/groups": 7,
    "/zones/{zone_id}/access/identity_providers": 7,
    "/zones/{zone_id}/access/service_tokens": 7,
}


def list_endpoints() -> dict[str, bool]:
    """{OpenAPI path: paginated} for every GET whose result is an array."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    components = schema["components"]["schemas"]
    found = {}
    for path, operations in schema["paths"].items():
        get = operations.get("get")
        if not get:
            continue
        body = get["responses"].get("200", {}).get("content", {}).get("application/json", {}).get("schema", {})
        result = body.get("properties", {}).get("result", {})
        if "$ref" in result:
            result = components[result["$ref"].rsplit("/", 1)[-1]]
        if result.get("type") == "array":
            found[path] = "result_info" in body.get("properties", {})
    return found


LIST_ENDPOINTS = list_endpoints()


def test_every_list_endpoint_is_covered():
    missing = sorted(set(LIST_ENDPOINTS) - set(SEEDERS))
    assert not missing, f"add a seeder to SEEDERS in {__file__} for: {', '.join(missing)}"
    unpinned = sorted(set(LIST_ENDPOINTS) - set(QUERIES))
    assert not unpinned, f"pin the query count in QUERIES in {__file__} for: {', '.join(unpinned)}"
    assert "/accounts/{account_id}/members" in LIST_ENDPOINTS and LIST_ENDPOINTS["/zones"] is True


def queries_for(client: Client, url: str) -> tuple[int, dict]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, response.content[:500]
    return len(captured), response.json()


def signed_in_list(path: str, organisation: Organisation, admin: Any, rows: int) -> tuple[Client, str]:
    seeded = SEEDERS[path](organisation, admin, rows)
    url = "/client/v4" + path.format(account_id=organisation.account_id, **seeded.kwargs)
    client = Client()
    client.force_login(admin)
    client.get(url)  # warm up per-process caches (content types, the session)
    return client, url


@pytest.mark.parametrize("path", sorted(SEEDERS), ids=str)
def test_list_queries_do_not_grow_with_the_page_or_the_rows(path, org_a, admin_a, org_b, admin_b):
    """Org A holds many rows, org B two: the same list costs the same in both, and so do pages of 1 and of 50."""
    if path not in LIST_ENDPOINTS:
        pytest.skip(f"{path} is no longer a list endpoint")
    big, big_url = signed_in_list(path, org_a, admin_a, ROWS)
    small, small_url = signed_in_list(path, org_b, admin_b, 2)
    many, body = queries_for(big, f"{big_url}?per_page=50")
    few, _ = queries_for(small, f"{small_url}?per_page=50")
    if SEEDERS[path] is not seed_nothing and not getattr(SEEDERS[path], "seeds_nothing", False):
        assert len(body["result"]) >= 50 if "result_info" in body else len(body["result"]) >= ROWS
    assert many == few, f"{path}: {few} queries for 2 rows, {many} for {len(body['result'])}"
    assert many == QUERIES[path], f"{path}: {many} queries, pinned at {QUERIES[path]} (update QUERIES if intended)"
    if "result_info" in body:
        one, page = queries_for(big, f"{big_url}?per_page=1")
        assert len(page["result"]) == 1
        assert one == many, f"{path}: {one} queries for a page of 1, {many} for a page of 50"


def test_the_audit_list_costs_the_same_for_tokens_and_users(org_a, admin_a):
    seed_audit(org_a, admin_a, ROWS)
    raw = make_token(org_a, {"audit": "read"})
    token_client = Client(headers={"Authorization": f"Bearer {raw}"})
    url = f"/client/v4/accounts/{org_a.account_id}/audit_logs"
    token_client.get(url)
    one, _ = queries_for(token_client, f"{url}?per_page=1")
    many, _ = queries_for(token_client, f"{url}?per_page=50")
    assert one == many == 2, f"{many} queries for a token's audit list, pinned at 2 (the token row is cached)"
    assert AuditEvent.objects.for_org(org_a).count() > 50
