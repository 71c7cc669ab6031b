"""The `/zones/{zone_id}/access/…` variants of the Access API, as Cloudflare has them beside the account paths: the
zone's organisation, and only the zone's applications."""

from __future__ import annotations

import pytest
from django.test import Client

from access.models import Application, ServiceToken
from access.services.applications import application_save
from controlplane.actors import Actor
from controlplane.services.zones import zone_create, zone_mark_verified
from tests.conftest import make_token
from tests.sdk import sdk_client

EMAIL_RULE = {"email": {"email": "ana@example.com"}}


def _zone(organisation, name):
    zone = zone_create(organisation=organisation, name=name, actor=Actor.cli())
    zone_mark_verified(zone=zone, actor=Actor.cli())
    return zone


@pytest.fixture
def zones(org_a):
    return _zone(org_a, "example.com"), _zone(org_a, "other.org")


@pytest.fixture
def zone_api(token_a, zones):
    client = Client(headers={"Authorization": f"Bearer {token_a}"})

    def call(method: str, path: str, body=None, zone_id=None):
        zone_id = zone_id or zones[0].pk.hex
        response = getattr(client, method)(
            f"/client/v4/zones/{zone_id}/access{path}", body, content_type="application/json"
        )
        return response.status_code, response.json()

    return call


def test_applications_and_their_policies_through_the_sdk_on_the_zone(token_a, org_a, zones):
    example, other = zones
    zid = example.pk.hex
    access = sdk_client(token_a).zero_trust.access
    app = access.applications.create(
        zone_id=zid, type="self_hosted", name="Portainer", domain="portainer.example.com", session_duration="168h"
    )
    assert len(app.aud) == 64 and app.domain == "portainer.example.com"
    # An application of the other zone, made on the account path, is not the zone's.
    elsewhere = application_save(
        organisation=org_a, actor=Actor.cli(), data={"name": "Wiki", "domain": "wiki.other.org"}
    )
    assert [a.name for a in access.applications.list(zone_id=zid)] == ["Portainer"]
    assert [a.name for a in access.applications.list(zone_id=other.pk.hex)] == ["Wiki"]
    assert access.applications.get(app.id, zone_id=zid).aud == app.aud
    with pytest.raises(Exception) as missing:
        access.applications.get(str(elsewhere.pk), zone_id=zid)
    assert getattr(missing.value, "status_code", None) == 404

    policy = access.applications.policies.create(app.id, zone_id=zid, name="Me", decision="allow", include=[EMAIL_RULE])
    listed = access.applications.policies.list(app.id, zone_id=zid)
    assert [(p.name, p.precedence) for p in listed] == [("Me", 1)]
    updated = access.applications.policies.update(
        policy.id, app_id=app.id, zone_id=zid, name="Me and Bo", decision="allow", include=[EMAIL_RULE]
    )
    assert updated.name == "Me and Bo"
    access.applications.revoke_tokens(app.id, zone_id=zid)
    assert Application.objects.for_org(org_a).get(pk=app.id).tokens_revoked_at is not None
    assert access.applications.policies.delete(policy.id, app_id=app.id, zone_id=zid).id == policy.id
    assert access.applications.delete(app.id, zone_id=zid).id == app.id
    assert list(Application.objects.for_org(org_a).values_list("name", flat=True)) == ["Wiki"]


def test_groups_service_tokens_identity_providers_and_settings_on_the_zone(token_a, org_a, zones):
    zid = zones[0].pk.hex
    cf = sdk_client(token_a)
    access = cf.zero_trust.access
    group = access.groups.create(zone_id=zid, name="Engineers", include=[EMAIL_RULE])
    # The zone's organisation's objects: the same on the account path.
    assert [g.id for g in access.groups.list(account_id=org_a.account_id)] == [group.id]
    assert access.groups.update(group.id, zone_id=zid, name="Eng", include=[EMAIL_RULE]).name == "Eng"
    assert access.groups.get(group.id, zone_id=zid).name == "Eng"
    assert access.groups.delete(group.id, zone_id=zid).id == group.id

    token = access.service_tokens.create(zone_id=zid, name="ci")
    assert len(token.client_secret) == 64 and ServiceToken.objects.for_org(org_a).get().name == "ci"
    assert [t.name for t in access.service_tokens.list(zone_id=zid)] == ["ci"]
    assert access.service_tokens.update(token.id, zone_id=zid, name="deploy").name == "deploy"
    assert access.service_tokens.delete(token.id, zone_id=zid).id == token.id

    idps = list(cf.zero_trust.identity_providers.list(zone_id=zid))
    assert [(i.name, i.type) for i in idps] == [("One-time PIN", "onetimepin")]
    settings = cf.zero_trust.organizations.list(zone_id=zid)
    assert settings.auth_domain.startswith("alpha.")
    cf.zero_trust.organizations.update(zone_id=zid, login_design={"header_text": "Alpha tools"})
    assert cf.zero_trust.organizations.list(account_id=org_a.account_id).login_design.header_text == "Alpha tools"
    cf.zero_trust.organizations.revoke_users(zone_id=zid, email="ana@example.com")


def test_an_application_made_on_the_zone_stays_under_it(zone_api, org_a):
    status, data = zone_api("post", "/apps", {"name": "x", "domain": "x.other.org"})
    assert status == 400 and "not under the zone “example.com”" in data["errors"][0]["message"]
    status, data = zone_api(
        "post", "/apps", {"destinations": [{"type": "public", "uri": "a.example.com"}, {"uri": "b.other.org"}]}
    )
    assert status == 400 and "destinations[1]" in data["errors"][0]["message"]
    status, app = zone_api("post", "/apps", {"name": "a", "domain": "a.example.com"})
    assert status == 200
    status, data = zone_api("put", f"/apps/{app['result']['id']}", {"name": "a", "domain": "a.other.org"})
    assert status == 400 and "not under the zone" in data["errors"][0]["message"]
    status, data = zone_api("put", f"/apps/{app['result']['id']}", {"name": "a", "domain": "*.example.com/admin"})
    assert status == 200 and data["result"]["domain"] == "*.example.com/admin"
    assert Application.objects.for_org(org_a).get().destinations == [{"type": "public", "uri": "*.example.com/admin"}]


def test_another_tenants_zone_and_account_only_paths_are_not_found(zone_api, zones, org_b):
    token_b = make_token(org_b)
    client = Client(headers={"Authorization": f"Bearer {token_b}"})
    for path in ("apps", "groups", "service_tokens", "identity_providers", "organizations"):
        response = client.get(f"/client/v4/zones/{zones[0].pk.hex}/access/{path}")
        assert response.status_code == 404 and response.json()["success"] is False, path
    response = client.post(
        f"/client/v4/zones/{zones[0].pk.hex}/access/apps", {"domain": "x.example.com"}, content_type="application/json"
    )
    assert response.status_code == 404 and not Application.objects.for_org(zones[0].organisation).exists()
    for path in ("keys", "policies", "logs/access_requests"):
        assert zone_api("get", f"/{path}")[0] == 404, path
    status, data = zone_api("get", "/apps", zone_id="not-a-zone")
    assert status == 404 and data["success"] is False


def test_the_zone_paths_need_the_access_scope(org_a, zones):
    zid = zones[0].pk.hex
    reader = Client(headers={"Authorization": f"Bearer {make_token(org_a, {'access': 'read'})}"})
    assert reader.get(f"/client/v4/zones/{zid}/access/apps").status_code == 200
    response = reader.post(f"/client/v4/zones/{zid}/access/apps", {"domain": "x.example.com"}, "application/json")
    assert response.status_code == 403 and not Application.objects.for_org(org_a).exists()
    dns_only = Client(headers={"Authorization": f"Bearer {make_token(org_a, {'zones': 'edit'})}"})
    assert dns_only.get(f"/client/v4/zones/{zid}/access/apps").status_code == 403
