"""Access settings, signing keys, user revocation, the access log and the policy tester through the API."""

from __future__ import annotations

import pytest

from access.models import AccessRequest, SigningKey, UserRevocation
from access.services.settings import rotate_due_keys
from tests.sdk import sdk_client


@pytest.fixture
def cf(org_a, token_a, portainer):
    return sdk_client(token_a)


def test_organization_settings_in_cloudflares_shape(cf, org_a):
    access = cf.zero_trust.organizations
    current = access.list(account_id=org_a.account_id)
    assert current.auth_domain == "alpha.access.localhost" and current.session_duration == "24h"
    updated = access.update(
        account_id=org_a.account_id,
        session_duration="12h",
        login_design={"background_color": "#112233", "header_text": "Alpha tools"},
    )
    assert updated.session_duration == "12h" and updated.login_design.header_text == "Alpha tools"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"session_duration": "5m"}, "at least 15m"),
        ({"session_duration": "1y"}, "duration"),
        ({"login_design": {"background_color": "red"}}, "colour"),
        ({"login_design": {"logo_path": "javascript:x"}}, "http"),
        ({"login_design": {"evil": "x"}}, "Unknown field"),
        ({"auth_domain": "other.example.com"}, "team domain"),
    ],
)
def test_bad_settings_get_a_clear_400(client_api, body, message):
    status, data = client_api("put", "/access/organizations", body)
    assert status == 400 and message in data["errors"][0]["message"], data


def test_keys_rotate_by_hand_and_on_schedule(cf, org_a, client_api):
    status, data = client_api("get", "/access/keys")
    assert status == 200 and data["result"]["key_rotation_interval_days"] == 42
    status, data = client_api("post", "/access/keys/rotate")
    assert status == 200 and data["result"]["last_key_rotation_at"]
    status, _ = client_api("put", "/access/keys", {"key_rotation_interval_days": 5})
    assert status == 400
    assert client_api("put", "/access/keys", {"key_rotation_interval_days": 30})[0] == 200
    assert rotate_due_keys() == 0
    SigningKey.objects.for_org(org_a).update(created_at="2020-01-01T00:00:00Z")
    assert rotate_due_keys() == 1
    assert SigningKey.objects.for_org(org_a).filter(retired_at__isnull=True).count() == 1


def test_revoke_user(client_api, org_a):
    assert client_api("post", "/access/organizations/revoke_user", {"email": "Ana@Example.com"})[0] == 200
    assert UserRevocation.objects.for_org(org_a).get().email == "ana@example.com"
    assert client_api("post", "/access/organizations/revoke_user", {"email": "nope"})[0] == 400


def test_the_access_log_filters(client_api, org_a, portainer):
    AccessRequest.objects.create(
        organisation=org_a, user_email="ana@example.com", allowed=True, app_uid=str(portainer.pk)
    )
    AccessRequest.objects.create(organisation=org_a, user_email="eve@evil.test", allowed=False)
    status, data = client_api("get", "/access/logs/access_requests?allowed=false")
    assert status == 200 and [row["user_email"] for row in data["result"]] == ["eve@evil.test"]
    _, data = client_api("get", f"/access/logs/access_requests?app_uid={portainer.pk}")
    assert [row["user_email"] for row in data["result"]] == ["ana@example.com"]
    assert client_api("get", "/access/logs/access_requests?since=yesterday")[0] == 400


def test_the_policy_tester_explains_each_decision(client_api, portainer):
    status, data = client_api("get", "/access/policy_tester?email=ana@example.com&ip=203.0.113.1")
    assert status == 200
    [result] = data["result"]
    assert result["app_name"] == "Portainer" and result["admitted"] and result["policy"]["name"] == "Me"
    assert result["explanation"] == "Allow policy “Me” (rule “email is ana@example.com”) decided."
    _, data = client_api("get", "/access/policy_tester?email=eve@evil.test")
    assert (
        data["result"][0]["outcome"] == "no_match"
        and data["result"][0]["trace"][0]["note"] == "no include rule matched"
    )
    _, data = client_api("get", "/access/policy_tester?url=https://elsewhere.example.com/")
    assert data["result"] == []
    assert client_api("get", "/access/policy_tester?ip=not-an-ip")[0] == 400


def test_the_policy_tester_takes_a_service_token(client_api, org_a, portainer):
    from access.services.directory import service_token_create
    from access.services.policies import policy_save
    from controlplane.actors import Actor

    token, _ = service_token_create(organisation=org_a, actor=Actor.cli(), data={"name": "CI"})
    policy_save(
        organisation=org_a,
        actor=Actor.cli(),
        data={"name": "CI", "decision": "non_identity", "include": [{"service_token": {"token_id": str(token.pk)}}]},
        application=portainer,
    )
    status, data = client_api("get", f"/access/policy_tester?service_token_id={token.pk}")
    [result] = data["result"]
    assert status == 200 and result["outcome"] == "service_auth" and result["admitted"]
    assert result["policy"]["name"] == "CI"
    _, data = client_api("get", "/access/policy_tester?ip=198.51.100.1")
    assert data["result"][0]["outcome"] == "needs_login" and not data["result"][0]["admitted"]
    for unknown in ("not-a-token", "00000000-0000-0000-0000-000000000000"):
        status, data = client_api("get", f"/access/policy_tester?service_token_id={unknown}")
        assert status == 400 and "No service token" in data["errors"][0]["message"], data


def test_keys_and_the_access_log_through_the_sdk(cf, org_a, portainer):
    """The official SDK's `access.keys` (get, update, rotate) and `access.logs.access_requests.list`."""
    acc = org_a.account_id
    keys = cf.zero_trust.access.keys
    assert keys.get(account_id=acc).key_rotation_interval_days == 42
    keys.rotate(account_id=acc)
    old_kid = SigningKey.objects.for_org(org_a).get(retired_at__isnull=True).kid
    rotated = keys.rotate(account_id=acc)
    assert rotated.last_key_rotation_at and rotated.days_until_next_rotation == 41  # whole days left of 42
    assert SigningKey.objects.for_org(org_a).get(retired_at__isnull=True).kid != old_kid
    assert keys.update(account_id=acc, key_rotation_interval_days=30).key_rotation_interval_days == 30

    for email, allowed in [("ana@example.com", True), ("eve@evil.test", False), ("ana.b@example.com", True)]:
        AccessRequest.objects.create(
            organisation=org_a, user_email=email, allowed=allowed, app_uid=str(portainer.pk), action="login"
        )
    logs = cf.zero_trust.access.logs.access_requests
    everything = logs.list(account_id=acc)
    assert [row.user_email for row in everything] == ["ana.b@example.com", "eve@evil.test", "ana@example.com"]
    assert [r.user_email for r in logs.list(account_id=acc, email="@example.com", direction="asc")] == [
        "ana@example.com",
        "ana.b@example.com",
    ]
    assert [r.user_email for r in logs.list(account_id=acc, email="ANA@example.com", email_exact=True)] == [
        "ana@example.com"
    ]
    assert len(logs.list(account_id=acc, limit=2)) == 2
