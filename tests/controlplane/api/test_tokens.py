"""API tokens through the SDK. Members manage them with their session; any token verifies itself."""

from __future__ import annotations

import datetime

import cloudflare
import pytest
from django.utils import timezone

from controlplane.choices import Role
from controlplane.models import ApiToken, AuditEvent
from tests.conftest import make_token
from tests.controlplane.api.conftest import session_sdk, token_sdk


def policy(*groups: str, resources: dict | None = None, effect: str = "allow") -> dict:
    return {
        "effect": effect,
        "permission_groups": [{"id": group} for group in groups],
        "resources": resources if resources is not None else {},
    }


def test_create_with_policies_then_use_and_verify_the_secret(admin_sdk_a, org_a, admin_a):
    created = admin_sdk_a.accounts.tokens.create(
        account_id=org_a.account_id,
        name="ci",
        policies=[
            policy("tunnels.edit", "zones.read", resources={f"com.cloudflare.api.account.{org_a.account_id}": "*"})
        ],
        condition={"request_ip": {"in": ["127.0.0.0/8"]}},
    )
    assert created.value.startswith("zt_")
    assert created.status == "active" and created.name == "ci"
    assert created.creator_email_at_creation == "admin@alpha.test"
    assert [g.id for g in created.policies[0].permission_groups] == ["tunnels.edit", "zones.read"]
    assert created.condition.request_ip.in_ == ["127.0.0.0/8"]
    token = ApiToken.objects.for_org(org_a).get(pk=created.id)
    assert token.grants == {"tunnels": "edit", "zones": "read"}
    assert token.allowed_networks == ["127.0.0.0/8"]
    assert token.created_by == admin_a

    own = token_sdk(created.value)
    assert own.user.tokens.verify().model_dump() == {
        "id": created.id,
        "status": "active",
        "expires_on": None,
        "not_before": None,
    }
    assert own.accounts.tokens.verify(account_id=org_a.account_id).id == created.id
    assert list(own.zones.list()) == []
    # The secret is never shown again.
    assert getattr(admin_sdk_a.accounts.tokens.get(created.id, account_id=org_a.account_id), "value", None) is None


def test_create_with_our_simple_grants(admin_sdk_a, org_a):
    expires = timezone.now() + datetime.timedelta(days=30)
    created = admin_sdk_a.post(
        f"/accounts/{org_a.account_id}/tokens",
        body={"name": "deploy", "permissions": {"tunnels": "edit", "audit": "read"}, "expires_on": expires.isoformat()},
        cast_to=object,
    )["result"]
    assert created["permissions"] == {"tunnels": "edit", "audit": "read"}
    assert datetime.datetime.fromisoformat(created["expires_on"]) == expires.replace(microsecond=expires.microsecond)
    verified = token_sdk(created["value"]).user.tokens.verify()
    assert verified.expires_on is not None and verified.status == "active"


def test_a_token_restricted_to_other_addresses_is_refused(admin_sdk_a, org_a):
    created = admin_sdk_a.accounts.tokens.create(
        account_id=org_a.account_id,
        name="office",
        policies=[policy("zones.read")],
        condition={"request_ip": {"in": ["10.0.0.0/8"]}},
    )
    with pytest.raises(cloudflare.AuthenticationError):
        token_sdk(created.value).user.tokens.verify()


def test_list_get_and_pages(admin_sdk_a, org_a):
    for _ in range(5):
        make_token(org_a, {"zones": "read"})
    expired = ApiToken.objects.for_org(org_a).order_by("created_at").first()
    ApiToken.objects.for_org(org_a).filter(pk=expired.pk).update(expires_at=timezone.now() - datetime.timedelta(days=1))
    listed = admin_sdk_a.accounts.tokens.list
    assert len(list(listed(account_id=org_a.account_id, per_page=2))) == 4
    assert len(list(listed(account_id=org_a.account_id, include_expired=True))) == 5
    assert listed(account_id=org_a.account_id, page=3, per_page=2).result == []
    assert listed(account_id=org_a.account_id, include_expired=True, direction="asc").result[0].id == expired.id.hex
    one = admin_sdk_a.accounts.tokens.get(expired.id.hex, account_id=org_a.account_id)
    assert one.status == "expired" and one.permissions == {"zones": "read"}  # type: ignore[attr-defined]


def test_delete_revokes(admin_sdk_a, org_a):
    raw = make_token(org_a, {"zones": "read"})
    token = ApiToken.objects.for_org(org_a).get()
    assert admin_sdk_a.accounts.tokens.delete(token.id.hex, account_id=org_a.account_id).id == token.id.hex
    with pytest.raises(cloudflare.AuthenticationError) as error:
        token_sdk(raw).user.tokens.verify()
    assert "disabled" in error.value.errors[0].message
    assert admin_sdk_a.accounts.tokens.get(token.id.hex, account_id=org_a.account_id).status == "disabled"
    assert AuditEvent.objects.for_org(org_a).filter(resource_type="api_token", action="delete").count() == 1
    # Revoking again changes nothing.
    admin_sdk_a.accounts.tokens.delete(token.id.hex, account_id=org_a.account_id)
    assert AuditEvent.objects.for_org(org_a).filter(resource_type="api_token", action="delete").count() == 1


def test_update_changes_name_grants_networks_and_then_disable(admin_sdk_a, org_a):
    created = admin_sdk_a.accounts.tokens.create(
        account_id=org_a.account_id, name="ci", policies=[policy("zones.read")]
    )
    update = admin_sdk_a.accounts.tokens.update
    renamed = update(
        created.id,
        account_id=org_a.account_id,
        name="deploy",
        policies=[policy("zones.edit"), policy("tunnels.read")],
        condition={"request_ip": {"in": ["10.0.0.0/8"]}},
    )
    assert renamed.name == "deploy" and renamed.status == "active"
    stored = ApiToken.objects.for_org(org_a).get(pk=created.id)
    assert stored.grants == {"zones": "edit", "tunnels": "read"}
    assert stored.allowed_networks == ["10.0.0.0/8"]
    assert AuditEvent.objects.for_org(org_a).filter(resource_type="api_token", action="update").count() == 1
    # The secret did not change, but the token now refuses callers outside 10.0.0.0/8.
    with pytest.raises(cloudflare.AuthenticationError):
        token_sdk(created.value).user.tokens.verify()
    with pytest.raises(cloudflare.BadRequestError) as error:
        admin_sdk_a.put(
            f"/accounts/{org_a.account_id}/tokens/{created.id}",
            body={"name": "deploy", "permissions": {"zones": "sudo"}},
            cast_to=object,
        )
    assert error.value.errors[0].source.pointer == "/permissions/zones"
    disabled = update(
        created.id, account_id=org_a.account_id, name="deploy", policies=[policy("zones.read")], status="disabled"
    )
    assert disabled.status == "disabled"
    with pytest.raises(cloudflare.BadRequestError) as error:
        update(created.id, account_id=org_a.account_id, name="ci", policies=[policy("zones.read")], status="active")
    assert error.value.errors[0].source.pointer == "/status"


def test_tokens_cannot_manage_tokens_but_can_list_permission_groups(sdk_a, org_a):
    with pytest.raises(cloudflare.PermissionDeniedError):
        list(sdk_a.accounts.tokens.list(account_id=org_a.account_id))
    with pytest.raises(cloudflare.PermissionDeniedError):
        sdk_a.accounts.tokens.create(account_id=org_a.account_id, name="x", policies=[policy("zones.read")])
    groups = list(sdk_a.accounts.tokens.permission_groups.list(account_id=org_a.account_id))
    assert "tunnels.edit" in [g.id for g in groups] and "settings.edit" not in [g.id for g in groups]
    assert [
        g.id for g in sdk_a.accounts.tokens.permission_groups.list(account_id=org_a.account_id, name="tunnels")
    ] == [
        "tunnels.read",
        "tunnels.edit",
    ]
    assert (
        list(sdk_a.accounts.tokens.permission_groups.list(account_id=org_a.account_id, scope="com.cloudflare.api.user"))
        == []
    )


def test_only_roles_that_edit_tokens_create_them(org_a, member_of):
    tunnel_admin = session_sdk(member_of(org_a, "tunnels@alpha.test", Role.TUNNEL_ADMIN).user)
    with pytest.raises(cloudflare.PermissionDeniedError):
        tunnel_admin.accounts.tokens.create(account_id=org_a.account_id, name="x", policies=[policy("tunnels.edit")])
    assert list(tunnel_admin.accounts.tokens.list(account_id=org_a.account_id)) == []
    admin = session_sdk(member_of(org_a, "second@alpha.test", Role.ADMIN).user)
    created = admin.accounts.tokens.create(account_id=org_a.account_id, name="x", policies=[policy("members.edit")])
    assert [t.id for t in tunnel_admin.accounts.tokens.list(account_id=org_a.account_id)] == [created.id]


def test_verify_needs_a_bearer_token_of_that_account(admin_sdk_a, org_a, org_b, sdk_a):
    with pytest.raises(cloudflare.BadRequestError):
        admin_sdk_a.user.tokens.verify()
    with pytest.raises(cloudflare.BadRequestError):
        admin_sdk_a.accounts.tokens.verify(account_id=org_a.account_id)
    with pytest.raises(cloudflare.NotFoundError):
        sdk_a.accounts.tokens.verify(account_id=org_b.account_id)
    with pytest.raises(cloudflare.AuthenticationError):
        token_sdk("zt_not-a-real-token").user.tokens.verify()


@pytest.mark.parametrize(
    ("body", "pointers"),
    [
        ({"name": "x"}, ["/policies"]),
        ({"name": "", "permissions": {"zones": "read"}}, ["/name"]),
        ({"name": "x", "permissions": {}}, ["/permissions"]),
        ({"name": "x", "permissions": {"zones": "write"}}, ["/permissions/zones"]),
        ({"name": "x", "permissions": {"settings": "edit"}}, ["/permissions/settings"]),
        ({"name": "x", "permissions": "all"}, ["/permissions"]),
        ({"name": "x", "permissions": {"zones": "read"}, "policies": [policy("zones.read")]}, ["/policies"]),
        ({"name": "x", "policies": [policy("zones.read", effect="deny")]}, ["/policies/0/effect"]),
        ({"name": "x", "policies": [policy("zones.read", "root.edit")]}, ["/policies/0/permission_groups/1/id"]),
        ({"name": "x", "policies": [policy()]}, ["/policies/0/permission_groups"]),
        ({"name": "x", "policies": [{"effect": "allow"}]}, ["/policies/0/permission_groups"]),
        ({"name": "x", "policies": "zones.read"}, ["/policies"]),
        (
            {"name": "x", "policies": [policy("zones.read", resources={"com.cloudflare.api.account.0000": "*"})]},
            ["/policies/0/resources"],
        ),
        (
            {"name": "x", "policies": [policy("zones.read")], "condition": {"request_ip": {"not_in": ["1.2.3.4"]}}},
            ["/condition/request_ip/not_in"],
        ),
        (
            {"name": "x", "policies": [policy("zones.read")], "condition": {"request_ip": {"in": ["not-an-ip"]}}},
            ["/condition/request_ip/in"],
        ),
        ({"name": "x", "policies": [policy("zones.read")], "expires_on": "2001-01-01T00:00:00Z"}, ["/expires_on"]),
        ({"name": "x", "policies": [policy("zones.read")], "expires_on": "soon"}, ["/expires_on"]),
        (
            {
                "name": "x",
                "policies": [policy("zones.read")],
                "expires_on": "2999-01-01T00:00:00Z",
                "not_before": "2999-02-01T00:00:00Z",
            },
            ["/not_before"],
        ),
    ],
)
def test_invalid_tokens_name_the_field(admin_sdk_a, org_a, body, pointers):
    with pytest.raises(cloudflare.BadRequestError) as error:
        admin_sdk_a.post(f"/accounts/{org_a.account_id}/tokens", body=body, cast_to=object)
    assert sorted(e.source.pointer for e in error.value.errors if e.source) == pointers
    assert not ApiToken.objects.for_org(org_a).exists()
