"""Schemathesis against the served OpenAPI schema: every operation, with a bounded number of generated requests
(valid and invalid), through the real WSGI application with an API token of a test organisation. No request may
answer 5xx, and every response must match the schema (status code documented, content type, body shape), so the
schema and the behaviour stay in step."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

import controlplane.wsgi
from tests.conftest import make_token

pytestmark = [pytest.mark.slow, pytest.mark.django_db]

# Per operation; 48 operations, so the whole run stays around two minutes on a shared machine.
EXAMPLES_PER_OPERATION = 10

schema = schemathesis.openapi.from_wsgi(
    "/client/v4/schema", controlplane.wsgi.application, headers={"Accept": "application/vnd.oai.openapi+json"}
)


# Operations where a request the schema allows can still be refused for what it refers to, or for a rule across
# fields, which no schema states: a hostname outside the account's active zones, a tunnel or zone name already
# taken, a role id that does not exist, `before` earlier than `since`.
STATE_DEPENDENT = {
    "POST /accounts/{account_id}/cfd_tunnel",
    "PATCH /accounts/{account_id}/cfd_tunnel/{tunnel_id}",
    "GET /accounts/{account_id}/audit_logs",
    "PUT /accounts/{account_id}/cfd_tunnel/{tunnel_id}/configurations",
    "PUT /accounts/{account_id}/cfd_tunnel/{tunnel_id}/hostnames/{index}",
    "POST /accounts/{account_id}/cfd_tunnel/{tunnel_id}/hostnames",
    "POST /accounts/{account_id}/members",
    "PUT /accounts/{account_id}/members/{member_id}",
    "POST /zones",
    # Access and the Origin CA: destinations under the account's active zones, rule selectors and the objects they
    # name, Go durations, the one-time PIN provider's empty config, CSRs and hostnames under the account's zones.
    "POST /accounts/{account_id}/access/apps",
    "PUT /accounts/{account_id}/access/apps/{app_id}",
    "POST /accounts/{account_id}/access/apps/{app_id}/policies",
    "PUT /accounts/{account_id}/access/apps/{app_id}/policies/{policy_id}",
    "POST /accounts/{account_id}/access/policies",
    "PUT /accounts/{account_id}/access/policies/{policy_id}",
    "POST /accounts/{account_id}/access/groups",
    "PUT /accounts/{account_id}/access/groups/{group_id}",
    "POST /accounts/{account_id}/access/identity_providers",
    "PUT /accounts/{account_id}/access/identity_providers/{idp_id}",
    "POST /accounts/{account_id}/access/organizations",
    "PUT /accounts/{account_id}/access/organizations",
    "POST /accounts/{account_id}/gateway/lists",
    "PUT /accounts/{account_id}/gateway/lists/{list_id}",
    "POST /certificates",
    "GET /accounts/{account_id}/access/policy_tester",  # an IP address, a service token of the account
    "POST /accounts/{account_id}/access/service_tokens",  # a Go duration
    "PUT /accounts/{account_id}/access/service_tokens/{service_token_id}",
    "POST /accounts/{account_id}/origin_certificates",
}
# The zone-level Access variants refuse what their account paths refuse (and a domain outside the zone).
STATE_DEPENDENT |= {
    label.replace("/accounts/{account_id}/", "/zones/{zone_id}/")
    for label in STATE_DEPENDENT
    if "/access/" in label and "policy_tester" not in label and "access/policies" not in label
}


def _active_zone(organisation):
    from controlplane.actors import Actor
    from controlplane.models import Zone
    from controlplane.services.zones import zone_create, zone_mark_verified

    zone = Zone.objects.for_org(organisation).first()
    if zone is None:
        zone = zone_create(organisation=organisation, name="example.com", actor=Actor.cli())
        zone_mark_verified(zone=zone, actor=Actor.cli())
    return zone


@pytest.fixture
def bearer(org_a, settings):  # noqa: F811 (pytest-django's settings fixture)
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return {"Authorization": f"Bearer {make_token(org_a)}"}


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_behaves_as_its_schema_says(case, bearer, org_a):
    # Requests aimed at this organisation reach its real resources, not only the 404 of an unknown account.
    if "account_id" in (case.path_parameters or {}):
        case.path_parameters["account_id"] = org_a.account_id
    if "/access/" in case.operation.path and "zone_id" in (case.path_parameters or {}):
        case.path_parameters["zone_id"] = _active_zone(org_a).pk.hex
    excluded = [positive_data_acceptance] if case.operation.label in STATE_DEPENDENT else []
    case.call_and_validate(headers=bearer, excluded_checks=excluded)
