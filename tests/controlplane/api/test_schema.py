"""The OpenAPI schema: generated without a warning, every operation documented, served publicly with a local
Swagger UI."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml
from django.conf import settings
from django.urls import URLPattern, URLResolver, get_resolver

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def schema(tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("schema") / "schema.yaml"
    result = subprocess.run(
        [sys.executable, "manage.py", "spectacular", "--validate", "--fail-on-warn", "--file", str(path)],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(path.read_text())


def test_the_schema_generates_without_warnings_or_errors(schema):
    assert schema["openapi"].startswith("3.")


def api_routes() -> set[str]:
    """Every /client/v4 route of the project, as OpenAPI paths (`/accounts/{account_id}`)."""
    routes: set[str] = set()

    def walk(patterns, prefix: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern) and route.startswith("client/v4/"):
                routes.add("/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route.removeprefix("client/v4/")))

    walk(get_resolver().url_patterns, "")
    return routes - {"/schema", "/{unknown}"}


def test_every_api_route_is_in_the_schema_and_every_operation_is_documented(schema):
    assert api_routes() <= set(schema["paths"]), "routes missing from the schema"
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if method == "parameters":
                continue
            where = f"{method.upper()} {path}"
            assert operation.get("summary"), f"{where} has no summary"
            responses = operation["responses"]
            assert any(code.startswith("2") for code in responses), f"{where} documents no success"
            assert "401" in responses, f"{where} does not document 401"
            if "{" in path:
                assert "404" in responses, f"{where} does not document 404"
            for code, response in responses.items():
                body = response.get("content", {}).get("application/json", {}).get("schema", {})
                if code.startswith("4"):
                    assert body == {"$ref": "#/components/schemas/V4Error"}, where
                elif code.startswith("2") and path.startswith(("/accounts", "/zones", "/user")):
                    assert "result" in body.get("properties", {}), f"{where} {code} is not enveloped"


def test_list_operations_are_paginated(schema):
    listing = schema["paths"]["/accounts/{account_id}/members"]["get"]
    names = {parameter["name"] for parameter in listing["parameters"]}
    assert {"page", "per_page", "status", "order", "direction"} <= names
    assert "result_info" in listing["responses"]["200"]["content"]["application/json"]["schema"]["properties"]
    audit = {p["name"] for p in schema["paths"]["/accounts/{account_id}/audit_logs"]["get"]["parameters"]}
    assert {"actor.email", "actor.ip", "action.type", "since", "before", "direction"} <= audit


def test_the_schema_and_docs_are_public_and_served_locally(client):
    response = client.get("/client/v4/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    assert response.json()["info"]["title"] == "Zero Trust control plane API"

    docs = client.get("/docs/api/")
    assert docs.status_code == 200
    html = docs.content.decode()
    # The init script is a file of its own (no inline script under the Content-Security-Policy).
    assert "/client/v4/schema" in client.get("/docs/api/?script=").content.decode()
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
    assert assets and not re.search(r"https?://(?!testserver)", html.split("<body")[0])
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
