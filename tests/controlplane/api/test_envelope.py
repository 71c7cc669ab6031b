"""The v4 envelope on every answer, success or error, and 4xx (never 500) for bad input."""

from __future__ import annotations

import pytest

from tests.conftest import make_token

pytestmark = pytest.mark.django_db


def assert_error(response, status: int, code: int | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["success"] is False and body["result"] is None and body["messages"] == []
    assert body["errors"] and all(isinstance(e["code"], int) and e["message"] for e in body["errors"])
    if code is not None:
        assert body["errors"][0]["code"] == code
    return body


@pytest.fixture
def bearer(token_a):
    return {"Authorization": f"Bearer {token_a}"}


def test_success_envelope_with_result_info_on_lists(raw_http, bearer, org_a):
    body = raw_http.get("/client/v4/accounts", headers=bearer).json()
    assert body["success"] is True and body["errors"] == [] and body["messages"] == []
    assert body["result"][0]["id"] == org_a.account_id
    assert body["result_info"] == {"page": 1, "per_page": 20, "count": 1, "total_count": 1, "total_pages": 1}
    detail = raw_http.get(f"/client/v4/accounts/{org_a.account_id}", headers=bearer)
    assert "result_info" not in detail.json()
    assert detail.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "Authentication credentials were not provided."),
        ({"Authorization": "Bearer "}, "Empty bearer token."),
        ({"Authorization": "Bearer zt_nope"}, "Invalid API Token"),
        ({"X-Auth-Key": "k", "X-Auth-Email": "a@b.c"}, "Global API keys are not supported"),
    ],
)
def test_401(raw_http, org_a, headers, message):
    response = raw_http.get(f"/client/v4/accounts/{org_a.account_id}/members", headers=headers)
    body = assert_error(response, 401, 10000)
    assert message in body["errors"][0]["message"]
    assert response.headers["www-authenticate"] == 'Bearer realm="api"'


def test_403(raw_http, org_a):
    reader = {"Authorization": f"Bearer {make_token(org_a, {'members': 'read'})}"}
    response = raw_http.post(
        f"/client/v4/accounts/{org_a.account_id}/members", json={"email": "a@b.org", "roles": ["admin"]}, headers=reader
    )
    body = assert_error(response, 403, 9109)
    assert body["errors"][0]["message"] == "You do not have permission to change members."


@pytest.mark.parametrize(
    "path",
    [
        "/client/v4/accounts/00000000000000000000000000000000",
        "/client/v4/accounts/not-hex/members",
        "/client/v4/zones/" + "0" * 32,
        "/client/v4/zones/%2E%2E",
        "/client/v4/accounts/{acc}/members/12345678901234567890123",
        "/client/v4/accounts/{acc}/members/" + "f" * 32,
        "/client/v4/accounts/{acc}/roles/%20",
        "/client/v4/no-such-endpoint",
    ],
)
def test_404(raw_http, bearer, org_a, path):
    response = raw_http.get(path.format(acc=org_a.account_id), headers=bearer)
    assert_error(response, 404, 7003)


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE"])
def test_unknown_endpoints_are_a_v4_404_even_anonymously(raw_http, method):
    response = raw_http.request(method, "/client/v4/accounts/x/dns_firewall/y")
    body = assert_error(response, 404, 7003)
    assert f"{method} /client/v4/accounts/x/dns_firewall/y" in body["errors"][0]["message"]


def test_405_after_access_is_resolved(raw_http, bearer, org_a):
    response = raw_http.patch(f"/client/v4/accounts/{org_a.account_id}/members", json={}, headers=bearer)
    assert_error(response, 405, 7001)


@pytest.mark.parametrize(
    ("content", "content_type", "status", "code"),
    [
        (b'{"email": "a@b.org", "roles": [', "application/json", 400, 1003),
        (b"not json at all", "application/json", 400, 1003),
        (b"[1, 2, 3]", "application/json", 400, 1004),
        (b'"a string"', "application/json", 400, 1004),
        (b"null", "application/json", 400, 1004),
        (b"", "application/json", 400, 1004),
        (b"email=a@b.org", "application/x-www-form-urlencoded", 415, 1000),
    ],
)
def test_malformed_bodies(raw_http, bearer, org_a, content, content_type, status, code):
    response = raw_http.post(
        f"/client/v4/accounts/{org_a.account_id}/members",
        content=content,
        headers={**bearer, "Content-Type": content_type},
    )
    assert_error(response, status, code)


def test_wrong_types_name_each_field(raw_http, bearer, org_a):
    response = raw_http.post(
        f"/client/v4/accounts/{org_a.account_id}/members",
        json={"email": ["a@b.org"], "roles": {"id": "admin"}, "status": 7},
        headers=bearer,
    )
    body = assert_error(response, 400, 1004)
    assert sorted(e["source"]["pointer"] for e in body["errors"]) == ["/email", "/roles", "/status"]
    assert all(e["message"].startswith(e["source"]["pointer"][1:].replace("/", ".") + ": ") for e in body["errors"])


@pytest.mark.parametrize(
    ("query", "pointer"),
    [
        ("page=abc", "/page"),
        ("page=0", "/page"),
        ("page=-1", "/page"),
        ("per_page=0", "/per_page"),
        ("per_page=5000", "/per_page"),
        ("per_page=1e400", "/per_page"),
        ("page=nan", "/page"),
    ],
)
def test_bad_pages(raw_http, bearer, org_a, query, pointer):
    for path in ("/client/v4/accounts", f"/client/v4/accounts/{org_a.account_id}/members", "/client/v4/zones"):
        body = assert_error(raw_http.get(f"{path}?{query}", headers=bearer), 400, 1004)
        assert body["errors"][0]["source"]["pointer"] == pointer


def test_float_pages_and_a_page_past_the_end(raw_http, bearer, org_a):
    body = raw_http.get(f"/client/v4/accounts/{org_a.account_id}/roles?page=2.0&per_page=2.0", headers=bearer).json()
    assert [role["id"] for role in body["result"]] == ["tunnel_admin", "access_admin"]
    assert body["result_info"]["page"] == 2 and body["result_info"]["total_pages"] == 3
    past = raw_http.get(f"/client/v4/accounts/{org_a.account_id}/roles?page=99", headers=bearer)
    assert past.status_code == 200 and past.json()["result"] == []


def test_conflicts_are_400_and_not_retried(raw_http, bearer, org_a):
    from controlplane.api.envelope import exception_handler
    from controlplane.errors import Conflict

    response = exception_handler(Conflict({"name": "taken"}), {})
    assert response.status_code == 400
    assert response.headers["x-should-retry"] == "false"
    assert response.data["errors"] == [{"code": 1061, "message": "name: taken", "source": {"pointer": "/name"}}]


def test_an_unexpected_error_is_an_enveloped_500(raw_http, bearer, org_a, monkeypatch, caplog):
    def broken() -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("controlplane.api.views.roles.all_roles", broken)
    response = raw_http.get(f"/client/v4/accounts/{org_a.account_id}/roles", headers=bearer)
    assert_error(response, 500, 1000)
    assert "boom" not in response.text
    assert any("RuntimeError: boom" in (record.exc_text or "") for record in caplog.records)
