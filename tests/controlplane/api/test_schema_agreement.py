"""What the fuzzer found the served schema and the behaviour disagreeing on, each pinned: strict JSON booleans,
empty query parameters, declared maximums, the enums of one supported value."""

from __future__ import annotations

import json

import pytest

from controlplane.api.pagination import V4Pagination
from controlplane.models import Zone
from tests.conftest import make_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(client, org_a):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {make_token(org_a)}"}

    def call(method: str, path: str, body=None):
        kwargs = {"content_type": "application/json", **headers}
        if body is None:
            return getattr(client, method)(f"/client/v4{path}", **headers)
        return getattr(client, method)(f"/client/v4{path}", json.dumps(body), **kwargs)

    return call


@pytest.fixture(scope="module")
def served_schema(django_db_blocker):
    from django.test import Client

    with django_db_blocker.unblock():
        response = Client().get("/client/v4/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    return response.json()


def pointers(response) -> list[str]:
    return [error.get("source", {}).get("pointer") for error in response.json()["errors"]]


@pytest.mark.parametrize("paused", [0, 1, "false", "true", None, []])
def test_zone_paused_takes_only_a_json_boolean(api, org_a, paused):
    zone = Zone.objects.create(organisation=org_a, name="example.com")
    response = api("patch", f"/zones/{zone.id.hex}", {"paused": paused})
    assert response.status_code == 400, response.content
    assert pointers(response) == ["/paused"]
    assert api("patch", f"/zones/{zone.id.hex}", {"paused": False}).status_code == 200


@pytest.mark.parametrize("name", [0, 12.5, True, ["x"], {"x": 1}])
def test_a_tunnel_name_must_be_a_json_string(api, org_a, name):
    response = api("post", f"/accounts/{org_a.account_id}/cfd_tunnel", {"name": name})
    assert response.status_code == 400 and pointers(response) == ["/name"], response.content


@pytest.mark.parametrize(
    "path, parameter",
    [
        ("/accounts/{account}/members?status=", "status"),
        ("/accounts/{account}/cfd_tunnel?status=", "status"),
        ("/accounts/{account}/cfd_tunnel?name=", "name"),
        ("/accounts?name=", "name"),
        ("/accounts/{account}/audit_logs?action.type=", "action.type"),
        ("/zones?status=", "status"),
        ("/accounts/{account}/tokens/permission_groups?scope=", "scope"),
        ("/accounts/{account}/members?per_page=", "per_page"),
    ],
)
def test_an_empty_query_parameter_is_refused_as_the_schema_says(api, org_a, served_schema, path, parameter):
    response = api("get", path.format(account=org_a.account_id))
    assert response.status_code == 400, response.content
    assert pointers(response) == [f"/{parameter}"]


def test_per_page_maximum_is_declared_where_it_is_enforced(api, org_a, served_schema):
    maximum = V4Pagination.max_per_page
    for path, operation in served_schema["paths"].items():
        for parameter in operation.get("get", {}).get("parameters", []):
            if parameter["name"] == "per_page":
                assert parameter["schema"].get("maximum") == maximum, path
    for path in ("/accounts/{account}/cfd_tunnel", "/accounts/{account}/members", "/zones"):
        url = path.format(account=org_a.account_id)
        assert api("get", f"{url}?per_page={maximum}").status_code == 200
        refused = api("get", f"{url}?per_page=4e16")
        assert refused.status_code == 400 and pointers(refused) == ["/per_page"], url


def test_one_value_enums_and_refused_fields_are_what_the_schema_offers(served_schema):
    schemas = served_schema["components"]["schemas"]

    def resolved(schema: dict) -> dict:
        """An enum the generator moved into a component, read back in place."""
        refs = [part["$ref"] for part in schema.get("allOf", []) if "$ref" in part] + [schema.get("$ref")]
        for ref in filter(None, refs):
            return {
                **schemas[ref.rsplit("/", 1)[-1]],
                **{k: v for k, v in schema.items() if k not in ("allOf", "$ref")},
            }
        return schema

    edit = schemas["PatchedZoneEditRequest"]["properties"]
    assert resolved(edit["paused"])["enum"] == [False] and resolved(edit["paused"])["type"] == "boolean"
    assert resolved(edit["type"])["enum"] == ["full"] and edit["vanity_name_servers"]["maxItems"] == 0
    assert resolved(schemas["ZoneCreateRequest"]["properties"]["type"])["enum"] == ["full"]
    member = schemas["MemberCreateRequest"]["properties"]
    assert resolved(member["status"])["enum"] == ["pending"] and "policies" not in member
    config = schemas["ConfigurationInputRequest"]["properties"]["config"]
    assert config["type"] == "object" and config["required"] == ["ingress"]
