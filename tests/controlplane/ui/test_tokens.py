"""API tokens in the UI: the permission matrix, the secret shown once, revocation; the token works on the API."""

from __future__ import annotations

import datetime
import re

from django.utils import timezone

from controlplane.actors import Actor
from controlplane.choices import Role
from controlplane.models import ApiToken
from controlplane.services.tokens import api_token_create
from tests.controlplane.ui.conftest import sign_in
from tests.factories import MembershipFactory, UserFactory


def tokens_url(org):
    return f"/o/{org.account_id}/tokens/"


def create(client, org, **data):
    fields = {"name": "CI", "perm_zones": "edit", "perm_audit": "read", "expires_on": "", "allowed_networks": ""}
    return client.post(tokens_url(org) + "new/", {**fields, **data})


def test_create_shows_the_secret_once_and_it_works_on_the_api(admin_client, client, org_a):
    response = create(admin_client, org_a, allowed_networks="127.0.0.1\n10.0.0.0/8")
    token = ApiToken.objects.for_org(org_a).get()
    assert response.url == f"{tokens_url(org_a)}{token.id.hex}/created/"
    assert token.grants == {"zones": "edit", "audit": "read"}
    assert token.allowed_networks == ["127.0.0.1/32", "10.0.0.0/8"]
    assert token.created_by.email == "admin@alpha.test"

    page = admin_client.get(response.url).content.decode()
    raw = re.search(r'id="token-secret" value="(zt_[^"]+)"', page).group(1)
    assert raw.endswith(token.hint)
    assert "zt_" not in admin_client.get(response.url).content.decode()  # shown once

    api = client.get("/client/v4/accounts", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert api.status_code == 200 and api.json()["result"][0]["id"] == org_a.account_id


def test_expiry_date_means_the_end_of_that_day(admin_client, org_a):
    day = timezone.now().date() + datetime.timedelta(days=30)
    create(admin_client, org_a, expires_on=day.isoformat())
    token = ApiToken.objects.for_org(org_a).get()
    assert token.expires_at == datetime.datetime.combine(day, datetime.time(23, 59, 59), tzinfo=datetime.UTC)


def test_invalid_input_is_shown_inline(admin_client, org_a):
    yesterday = (timezone.now().date() - datetime.timedelta(days=1)).isoformat()
    cases = [
        ({"name": ""}, "This field is required."),
        ({"perm_zones": "none", "perm_audit": "none"}, "Grant the token at least one permission"),
        ({"perm_zones": "admin"}, "Select a valid choice."),
        ({"expires_on": yesterday}, "Choose today or a later date."),
        ({"expires_on": "31/31/2020"}, "Enter a valid date."),
        ({"allowed_networks": "not-a-network"}, "is not an IP address or CIDR range"),
    ]
    for data, message in cases:
        response = create(admin_client, org_a, **data)
        assert response.status_code == 200, data
        assert message in response.content.decode(), data
    assert not ApiToken.objects.for_org(org_a).exists()


def test_matrix_offers_only_what_the_role_can_grant(client, org_a):
    tunnel_admin = MembershipFactory(organisation=org_a, user=UserFactory(email="t@alpha.test"), role=Role.TUNNEL_ADMIN)
    # Tunnel administrators cannot create tokens at all (no tokens:edit), so give the check a role that can:
    # an Administrator sees every level.
    sign_in(client, tunnel_admin.user)
    assert client.get(tokens_url(org_a) + "new/").status_code == 403
    admin = MembershipFactory(organisation=org_a, user=UserFactory(email="a@alpha.test"), role=Role.ADMIN).user
    sign_in(client, admin)
    html = client.get(tokens_url(org_a) + "new/").content.decode()
    assert html.count('type="radio"') == 18  # six resources × none/read/edit
    assert 'name="perm_settings"' not in html and 'name="perm_tokens"' not in html


def test_list_shows_status_hint_and_revoke(admin_client, org_a):
    active, _ = api_token_create(organisation=org_a, name="Active one", grants={"zones": "read"}, actor=Actor.cli())
    expired, _ = api_token_create(organisation=org_a, name="Old one", grants={"zones": "read"}, actor=Actor.cli())
    ApiToken.objects.for_org(org_a).filter(pk=expired.pk).update(expires_at=timezone.now() - datetime.timedelta(days=1))
    html = admin_client.get(tokens_url(org_a)).content.decode()
    assert "Active one" in html and "Old one" in html and "Expired" in html and f"…{active.hint}" in html
    assert "Zones and DNS" in html

    response = admin_client.post(f"{tokens_url(org_a)}{active.id.hex}/revoke/")
    assert response.url == tokens_url(org_a)
    active.refresh_from_db()
    assert active.revoked_at is not None
    assert "Revoked" in admin_client.get(tokens_url(org_a)).content.decode()
    again = admin_client.post(f"{tokens_url(org_a)}{active.id.hex}/revoke/", follow=True)
    assert "already revoked" in again.content.decode()


def test_empty_list_invites_to_create(admin_client, org_a):
    html = admin_client.get(tokens_url(org_a)).content.decode()
    assert "No API tokens yet" in html
