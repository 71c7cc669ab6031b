"""Roles through the SDK: our fixed roles, with their grants as permissions."""

from __future__ import annotations

import warnings

import cloudflare
import pytest

from controlplane.choices import Role


@pytest.fixture(autouse=True)
def _sdk_deprecation():
    # The SDK marks account roles deprecated in favour of IAM permission groups; the endpoint is still what it calls.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def test_list_roles(sdk_a, org_a):
    roles = list(sdk_a.accounts.roles.list(account_id=org_a.account_id))
    assert [role.id for role in roles] == list(Role.values)
    tunnel_admin = roles[2]
    assert tunnel_admin.name == "Tunnel Administrator"
    assert tunnel_admin.permissions.zones.read and tunnel_admin.permissions.zones.write
    assert tunnel_admin.permissions.tunnels == {"read": True, "write": True}
    assert tunnel_admin.permissions.members == {"read": True, "write": False}
    assert [r.id for r in sdk_a.accounts.roles.list(account_id=org_a.account_id, per_page=2)] == list(Role.values)
    assert sdk_a.accounts.roles.list(account_id=org_a.account_id, page=4, per_page=2).result == []


def test_get_a_role(sdk_a, org_a, org_b):
    role = sdk_a.accounts.roles.get("read_only", account_id=org_a.account_id)
    assert (role.id, role.name, role.description) == ("read_only", "Read only", "See everything, change nothing.")
    assert role.permissions.zones.read and not role.permissions.zones.write
    with pytest.raises(cloudflare.NotFoundError):
        sdk_a.accounts.roles.get("emperor", account_id=org_a.account_id)
    with pytest.raises(cloudflare.NotFoundError):
        sdk_a.accounts.roles.get("read_only", account_id=org_b.account_id)
