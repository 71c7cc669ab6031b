"""Accounts (organisations) through the SDK."""

from __future__ import annotations

import cloudflare
import pytest

from controlplane.choices import Role
from controlplane.models import AuditEvent, Organisation
from tests.controlplane.api.conftest import session_sdk
from tests.factories import MembershipFactory, OrganisationFactory


def test_a_token_lists_only_its_own_account(sdk_a, org_a, org_b):
    accounts = list(sdk_a.accounts.list())
    assert [account.id for account in accounts] == [org_a.account_id]
    assert accounts[0].name == "Alpha"
    assert accounts[0].team_name == "alpha"  # type: ignore[attr-defined]
    assert accounts[0].settings.enforce_twofactor is False


def test_a_user_lists_every_organisation_they_belong_to_across_pages(admin_a, org_a):
    for index in range(4):
        MembershipFactory(organisation=OrganisationFactory(display_name=f"Org {index}"), user=admin_a)
    client = session_sdk(admin_a)
    page = client.accounts.list(per_page=2)
    assert len(page.result) == 2
    names = [account.name for account in client.accounts.list(per_page=2)]
    assert names == ["Alpha", "Org 0", "Org 1", "Org 2", "Org 3"]
    assert client.accounts.list(page=9, per_page=2).result == []
    assert [a.name for a in client.accounts.list(direction="desc")][0] == "Org 3"
    assert [a.name for a in client.accounts.list(name="org 1")] == ["Org 1"]


def test_get_an_account(sdk_a, org_a):
    account = sdk_a.accounts.get(account_id=org_a.account_id)
    assert account.id == org_a.account_id
    assert account.type == "standard"
    assert account.auth_domain == "alpha.access.localhost"  # type: ignore[attr-defined]


def test_another_account_is_not_found(sdk_a, org_b):
    with pytest.raises(cloudflare.NotFoundError):
        sdk_a.accounts.get(account_id=org_b.account_id)
    with pytest.raises(cloudflare.NotFoundError):
        sdk_a.accounts.get(account_id="not-an-id")


def test_a_super_admin_renames_the_account_and_requires_2fa(admin_a, org_a):
    client = session_sdk(admin_a)
    account = client.accounts.update(
        account_id=org_a.account_id,
        id=org_a.account_id,
        name="Alpha Inc",
        type="standard",
        settings={"enforce_twofactor": True},
    )
    assert account.name == "Alpha Inc"
    assert account.settings.enforce_twofactor is True
    org_a.refresh_from_db()
    assert (org_a.display_name, org_a.require_2fa) == ("Alpha Inc", True)
    assert AuditEvent.objects.for_org(org_a).filter(resource_type="organisation", action="update").exists()


def test_an_admin_cannot_rename_the_team_but_can_rename_the_account(org_a, member_of):
    admin = member_of(org_a, "second@alpha.test", Role.ADMIN).user
    client = session_sdk(admin)
    with pytest.raises(cloudflare.PermissionDeniedError):
        client.accounts.update(
            account_id=org_a.account_id, id="x", name="Alpha", type="standard", extra_body={"team_name": "alpha2"}
        )
    account = client.accounts.update(account_id=org_a.account_id, id="x", name="Alpha 2", type="standard")
    assert account.name == "Alpha 2"
    assert Organisation.objects.get(pk=org_a.pk).team_name == "alpha"


def test_tokens_read_the_account_but_cannot_change_it(sdk_a, org_a):
    with pytest.raises(cloudflare.PermissionDeniedError):
        sdk_a.accounts.update(account_id=org_a.account_id, id=org_a.account_id, name="Hijacked", type="standard")
    assert Organisation.objects.get(pk=org_a.pk).display_name == "Alpha"


def test_invalid_account_changes_name_the_field(admin_a, org_a, org_b):
    client = session_sdk(admin_a)
    with pytest.raises(cloudflare.BadRequestError) as error:
        client.accounts.update(account_id=org_a.account_id, id="x", name="", type="standard")
    assert error.value.errors[0].source.pointer == "/name"
    with pytest.raises(cloudflare.BadRequestError) as error:
        client.accounts.update(
            account_id=org_a.account_id, id="x", name="A", type="standard", extra_body={"team_name": "bravo"}
        )
    assert error.value.errors[0].source.pointer == "/team_name"
    with pytest.raises(cloudflare.BadRequestError) as error:
        client.accounts.update(
            account_id=org_a.account_id,
            id="x",
            name="A",
            type="standard",
            settings={"enforce_twofactor": "sometimes"},  # type: ignore[typeddict-item]
        )
    assert error.value.errors[0].source.pointer == "/settings/enforce_twofactor"
