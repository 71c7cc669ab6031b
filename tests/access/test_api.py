"""The Access API, driven by the official Cloudflare SDK where it has the call, and by plain HTTP for the errors."""

from __future__ import annotations

import pytest
from django.test import Client

from access.models import AccessGroup, Application, IdentityProvider, Policy, ServiceToken
from access.selectors import compile_org
from access.services.directory import client_secret_matches
from controlplane.actors import Actor
from controlplane.models import AuditEvent
from controlplane.services.zones import zone_create, zone_mark_verified
from tests.conftest import make_token
from tests.sdk import sdk_client

EMAIL_RULE = {"email": {"email": "ana@example.com"}}


@pytest.fixture
def zone_a(org_a):
    zone = zone_create(organisation=org_a, name="example.com", actor=Actor.cli())
    zone_mark_verified(zone=zone, actor=Actor.cli())
    return zone


@pytest.fixture
def cf(org_a, token_a, zone_a):
    return sdk_client(token_a)


@pytest.fixture
def api(token_a, org_a, zone_a):
    client = Client(headers={"Authorization": f"Bearer {token_a}"})
    base = f"/client/v4/accounts/{org_a.account_id}"

    def call(method: str, path: str, body=None):
        response = getattr(client, method)(base + path, body, content_type="application/json")
        return response.status_code, response.json()

    return call


def test_the_tutorials_portainer_app_through_the_sdk(cf, org_a):
    acc = org_a.account_id
    access = cf.zero_trust.access
    policy = access.policies.create(account_id=acc, name="Me", decision="allow", include=[EMAIL_RULE])
    assert policy.decision == "allow" and policy.include[0].email.email == "ana@example.com"
    app = access.applications.create(
        account_id=acc,
        type="self_hosted",
        name="Portainer",
        domain="portainer.example.com",
        session_duration="168h",
        policies=[policy.id],
    )
    assert app.name == "Portainer" and app.domain == "portainer.example.com" and app.session_duration == "168h"
    assert len(app.aud) == 64 and app.policies[0].id == policy.id and app.policies[0].precedence == 1
    got = access.applications.get(app.id, account_id=acc)
    assert got.aud == app.aud
    assert [a.name for a in access.applications.list(account_id=acc)] == ["Portainer"]
    # PUT keeps the AUD tag, which is the application's for life.
    updated = access.applications.update(
        app.id, account_id=acc, type="self_hosted", domain="portainer.example.com/admin", name="Portainer admin"
    )
    assert updated.aud == app.aud and updated.domain == "portainer.example.com/admin"
    own = access.applications.policies.create(
        app.id, account_id=acc, name="Domain", decision="allow", include=[{"email_domain": {"domain": "example.com"}}]
    )
    listed = access.applications.policies.list(app.id, account_id=acc)
    assert [(p.name, p.precedence) for p in listed] == [("Me", 1), ("Domain", 2)]
    assert access.applications.policies.get(own.id, app_id=app.id, account_id=acc).name == "Domain"
    access.applications.revoke_tokens(app.id, account_id=acc)
    assert Application.objects.for_org(org_a).get().tokens_revoked_at is not None
    assert access.applications.delete(app.id, account_id=acc).id == app.id
    assert not Policy.objects.for_org(org_a).filter(pk=own.id).exists()  # the app's own policy goes with it
    assert Policy.objects.for_org(org_a).filter(pk=policy.id).exists()  # a reusable one stays


def test_groups_service_tokens_and_identity_providers_through_the_sdk(cf, org_a):
    acc = org_a.account_id
    access = cf.zero_trust.access
    group = access.groups.create(
        account_id=acc, name="Engineers", include=[{"email_domain": {"domain": "example.com"}}]
    )
    assert [g.name for g in access.groups.list(account_id=acc)] == ["Engineers"]
    access.groups.update(group.id, account_id=acc, name="Engineering", include=[EMAIL_RULE])
    assert access.groups.get(group.id, account_id=acc).name == "Engineering"

    token = access.service_tokens.create(account_id=acc, name="ci")
    assert token.client_id.endswith(".access") and len(token.client_secret) == 64
    stored = ServiceToken.objects.for_org(org_a).get()
    assert token.client_secret not in stored.secret_hash and client_secret_matches(stored, token.client_secret)
    assert stored.expires_at is not None and stored.duration == "8760h"
    rotated = access.service_tokens.rotate(token.id, account_id=acc)
    stored.refresh_from_db()
    assert not client_secret_matches(stored, token.client_secret) and client_secret_matches(
        stored, rotated.client_secret
    )
    assert [t.name for t in access.service_tokens.list(account_id=acc)] == ["ci"]

    idps = list(cf.zero_trust.identity_providers.list(account_id=acc))
    assert [(i.name, i.type) for i in idps] == [("One-time PIN", "onetimepin")]
    policy = access.policies.create(
        account_id=acc,
        name="CI",
        decision="non_identity",
        include=[{"service_token": {"token_id": token.id}}],
    )
    assert policy.include[0].service_token.token_id == token.id
    assert access.groups.delete(group.id, account_id=acc).id == group.id


def test_every_organisation_has_a_one_time_pin_provider(org_a, org_b):
    for org in (org_a, org_b):
        assert IdentityProvider.objects.for_org(org).get().type == "onetimepin"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "x", "decision": "allow", "include": []}, "at least one rule"),
        ({"name": "x", "decision": "allow"}, "required"),
        ({"name": "x", "decision": "maybe", "include": [EMAIL_RULE]}, "decision"),
        ({"name": "", "decision": "allow", "include": [EMAIL_RULE]}, "may not be blank"),
        ({"name": "x", "decision": "allow", "include": [{"email": {"email": "nope"}}]}, r"include\[0\]: email"),
        ({"name": "x", "decision": "bypass", "include": [EMAIL_RULE]}, "Bypass policy cannot use identity"),
        ({"name": "x", "decision": "allow", "include": [{"any_valid_service_token": {}}]}, "Service Auth"),
        ({"name": "x", "decision": "allow", "include": [EMAIL_RULE], "session_duration": "2d"}, "session_duration"),
        ({"name": "x", "decision": "allow", "include": [{"group": {"id": "nope"}}]}, "no Access group"),
        ([1, 2], "JSON object"),
    ],
)
def test_bad_policies_get_a_clear_400(api, body, message):
    status, data = api("post", "/access/policies", body)
    assert status == 400 and not data["success"], data
    assert any(__import__("re").search(message, error["message"]) for error in data["errors"]), data["errors"]


def test_references_to_another_tenants_objects_are_unknown(api, org_b):
    from access.services.directory import group_save, list_save

    foreign = group_save(organisation=org_b, actor=Actor.cli(), data={"name": "b", "include": [EMAIL_RULE]})
    status, data = api(
        "post", "/access/policies", {"name": "x", "decision": "allow", "include": [{"group": {"id": str(foreign.pk)}}]}
    )
    assert status == 400 and "no Access group" in data["errors"][0]["message"]
    foreign_list = list_save(organisation=org_b, actor=Actor.cli(), data={"name": "l", "type": "EMAIL"})
    rule = {"email_list": {"id": str(foreign_list.pk)}}
    status, data = api("post", "/access/policies", {"name": "x", "decision": "allow", "include": [rule]})
    assert status == 400 and "no email list" in data["errors"][0]["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"domain": "app.other.org"}, "not under an active zone"),
        ({"domain": "app.example.com:8443"}, "no port"),
        ({"domain": "app.*.example.com"}, "first label"),
        ({}, "at least one domain"),
        ({"destinations": [{"type": "public", "uri": f"a{i}.example.com"} for i in range(6)]}, "At most 5"),
        ({"destinations": [{"type": "private", "cidr": "10.0.0.0/8"}]}, "only “public”"),
        ({"domain": "app.example.com", "session_duration": "800h"}, "at most 1 month"),
        ({"domain": "app.example.com", "type": "saas"}, "not available yet"),
        ({"domain": "app.example.com", "policies": ["nope"]}, "No policy"),
        ({"domain": "app.example.com", "allowed_idps": ["nope"]}, "No identity provider"),
        ({"domain": "app.example.com", "auto_redirect_to_identity": "yes"}, "true or false"),
        ({"domain": "app.example.com", "custom_deny_url": "javascript:alert(1)"}, "http"),
    ],
)
def test_bad_applications_get_a_clear_400(api, body, message):
    status, data = api("post", "/access/apps", {"type": "self_hosted", **body})
    assert status == 400, data
    assert message in " ".join(error["message"] for error in data["errors"]), data["errors"]


def test_a_destination_belongs_to_one_application(api):
    assert api("post", "/access/apps", {"name": "one", "domain": "app.example.com/admin"})[0] == 200
    status, data = api("post", "/access/apps", {"name": "two", "domain": "APP.example.com/admin"})
    assert status == 400 and "already protected by the application “one”" in data["errors"][0]["message"]
    assert api("post", "/access/apps", {"name": "two", "domain": "app.example.com"})[0] == 200


def test_objects_in_use_cannot_be_deleted(api, org_a):
    _, group = api("post", "/access/groups", {"name": "eng", "include": [EMAIL_RULE]})
    gid = group["result"]["id"]
    _, policy = api("post", "/access/policies", {"name": "p", "decision": "allow", "include": [{"group": {"id": gid}}]})
    status, data = api("delete", f"/access/groups/{gid}")
    assert status == 400 and "used by “p”" in data["errors"][0]["message"]
    pid = policy["result"]["id"]
    _, app = api("post", "/access/apps", {"name": "tool", "domain": "tool.example.com", "policies": [pid]})
    status, data = api("delete", f"/access/policies/{pid}")
    assert status == 400 and "application “tool”" in data["errors"][0]["message"]
    # Detaching it from the application through the app-scoped route leaves the reusable policy in place.
    assert api("delete", f"/access/apps/{app['result']['id']}/policies/{pid}")[0] == 200
    assert api("delete", f"/access/policies/{pid}")[0] == 200
    assert api("delete", f"/access/groups/{gid}")[0] == 200
    assert not AccessGroup.objects.for_org(org_a).exists()


def test_policies_take_ids_or_objects_with_precedence(api):
    ids = [
        api("post", "/access/policies", {"name": n, "decision": "allow", "include": [EMAIL_RULE]})[1]["result"]["id"]
        for n in "abc"
    ]
    body = {
        "domain": "tool.example.com",
        "policies": [{"id": ids[0], "precedence": 3}, ids[1], {"id": ids[2], "precedence": 1}],
    }
    status, data = api("post", "/access/apps", body)
    assert status == 200, data
    assert [(p["name"], p["precedence"]) for p in data["result"]["policies"]] == [("c", 1), ("b", 2), ("a", 3)]
    status, data = api(
        "post",
        "/access/apps",
        {"domain": "x.example.com", "policies": [{"id": ids[0], "precedence": 1}, {"id": ids[1], "precedence": 1}]},
    )
    assert status == 400 and "same precedence" in data["errors"][0]["message"]
    status, data = api("post", "/access/apps", {"domain": "y.example.com", "policies": [ids[0], ids[0]]})
    assert status == 400 and "listed twice" in data["errors"][0]["message"]


def test_read_only_tokens_read_but_never_write(org_a, zone_a):
    raw = make_token(org_a, {"access": "read"})
    client = Client(headers={"Authorization": f"Bearer {raw}"})
    base = f"/client/v4/accounts/{org_a.account_id}/access"
    assert client.get(f"{base}/apps").status_code == 200
    body = {"name": "x", "decision": "allow", "include": [EMAIL_RULE]}
    assert client.post(f"{base}/policies", body, content_type="application/json").status_code == 403
    tunnels_only = make_token(org_a, {"tunnels": "edit"})
    other = Client(headers={"Authorization": f"Bearer {tunnels_only}"})
    assert other.get(f"{base}/apps").status_code == 403


def test_writes_are_audited(api, org_a):
    api("post", "/access/apps", {"name": "tool", "domain": "tool.example.com"})
    event = AuditEvent.objects.for_org(org_a).filter(resource_type="access_app").get()
    assert event.action == "create" and event.resource_name == "tool"


def test_the_compiled_view_decides_like_the_engine(api, org_a):
    _, policy = api("post", "/access/policies", {"name": "me", "decision": "allow", "include": [EMAIL_RULE]})
    api("post", "/access/apps", {"name": "tool", "domain": "tool.example.com", "policies": [policy["result"]["id"]]})
    api("post", "/access/apps", {"name": "all", "domain": "*.example.com"})
    compiled = compile_org(org_a)
    assert compiled.match("tool.example.com", "/x").name == "tool"
    assert compiled.match("wiki.example.com", "/").name == "all"
    assert compiled.match("example.com", "/") is None
    tool = compiled.match("tool.example.com", "/")
    assert [p.name for p in tool.policies] == ["me"] and tool.session_duration_seconds == 86400
