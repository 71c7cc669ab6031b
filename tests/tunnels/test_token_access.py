"""Reading a tunnel's token (a credential that takes over the tunnel's traffic) needs `tunnels:edit`, as rotating
it does: for every role in the UI and every token grant in the API (issue 14, item 10)."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from controlplane.actors import Actor
from controlplane.choices import ROLE_GRANTS, TOKEN_RESOURCES, Role
from tests.conftest import make_token
from tests.controlplane.ui.conftest import add_second_factor, sign_in
from tests.factories import MembershipFactory, UserFactory
from tunnels.services import tunnel_create, tunnel_token


@pytest.fixture
def secured_org(org_a):
    org_a.require_2fa = True  # the product's default
    org_a.save(update_fields=["require_2fa"])
    return org_a


@pytest.fixture
def tunnel(secured_org):
    return tunnel_create(organisation=secured_org, name="lab", actor=Actor.cli())


def _token_grants():
    """Every grant of tunnels (none, read, edit) beside every other group at read or at edit."""
    for tunnels in (None, "read", "edit"):
        for others in ("read", "edit"):
            grants = {r.value: others for r in TOKEN_RESOURCES if r.value != "tunnels"}
            if tunnels:
                grants["tunnels"] = tunnels
            yield pytest.param(grants, tunnels == "edit", id=f"tunnels={tunnels}-others={others}")


@pytest.mark.parametrize(("grants", "allowed"), list(_token_grants()))
def test_api_token_read_needs_tunnels_edit(client, secured_org, tunnel, grants, allowed):
    raw = make_token(secured_org, grants=grants)
    url = reverse("api-tunnel-token", args=[secured_org.account_id, tunnel.id.hex])
    response = client.get(url, HTTP_AUTHORIZATION=f"Bearer {raw}")
    if allowed:
        assert response.status_code == 200
        assert response.json()["result"] == tunnel_token(tunnel)
    else:
        assert response.status_code == 403, response.content
        assert tunnel_token(tunnel) not in response.content.decode()
        assert response.json()["success"] is False


@pytest.mark.parametrize("role", list(Role))
def test_ui_shows_the_token_only_to_roles_that_can_edit_tunnels(secured_org, tunnel, role):
    user = UserFactory(email=f"{role.value}@alpha.test")
    MembershipFactory(organisation=secured_org, user=user, role=role)
    client = sign_in(Client(), user, device=add_second_factor(user))
    response = client.get(reverse("ui:tunnel", args=[secured_org.account_id, tunnel.id.hex]))
    assert response.status_code == 200
    page = response.content.decode()
    shown = tunnel_token(tunnel) in page
    assert shown == (ROLE_GRANTS[role].get("tunnels") == "edit"), role
