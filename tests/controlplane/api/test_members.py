"""Members and invitations through the SDK: members show as accepted, invitations as pending."""

from __future__ import annotations

import cloudflare
import pytest

from controlplane.choices import InvitationStatus, Role
from controlplane.models import AuditEvent, Invitation, Membership
from tests.controlplane.api.conftest import session_sdk


def test_list_shows_members_and_pending_invitations(
    admin_sdk_a, org_a, admin_a, reader_a, django_capture_on_commit_callbacks, mailoutbox
):
    with django_capture_on_commit_callbacks(execute=True):
        invited = admin_sdk_a.accounts.members.create(
            account_id=org_a.account_id, email="New@Example.org", roles=["admin"]
        )
    assert invited.status == "pending"
    assert invited.email == "new@example.org"
    assert invited.user.email == "new@example.org" and invited.user.id is None
    assert [role.id for role in invited.roles] == ["admin"]
    assert len(invited.id) == 32

    members = {m.email: m for m in admin_sdk_a.accounts.members.list(account_id=org_a.account_id)}
    assert set(members) == {"admin@alpha.test", "reader@alpha.test", "new@example.org"}
    assert members["admin@alpha.test"].status == "accepted"
    assert members["admin@alpha.test"].roles[0].name == "Super Administrator"
    assert members["admin@alpha.test"].user.id == str(admin_a.pk)
    assert members["admin@alpha.test"].user.two_factor_authentication_enabled is False
    assert members["new@example.org"].status == "pending"

    # The invitation email went out once the invitation committed, through the Celery task.
    [mail] = mailoutbox
    assert mail.to == ["new@example.org"] and "/invitations/" in mail.body


def test_filters_and_order(admin_sdk_a, org_a, admin_a, reader_a):
    admin_sdk_a.accounts.members.create(
        account_id=org_a.account_id, email="zed@example.org", roles=[{"id": "read_only"}]
    )
    listed = admin_sdk_a.accounts.members.list
    assert [m.email for m in listed(account_id=org_a.account_id, status="pending")] == ["zed@example.org"]
    assert [m.email for m in listed(account_id=org_a.account_id, status="accepted")] == [
        "admin@alpha.test",
        "reader@alpha.test",
    ]
    assert [m.email for m in listed(account_id=org_a.account_id, order="user.email", direction="desc")] == [
        "zed@example.org",
        "reader@alpha.test",
        "admin@alpha.test",
    ]
    assert [m.status for m in listed(account_id=org_a.account_id, order="status")][0] == "accepted"
    assert list(listed(account_id=org_a.account_id, status="rejected")) == []


def test_get_a_member_and_an_invitation(admin_sdk_a, org_a, reader_a):
    membership = Membership.objects.for_org(org_a).get(user=reader_a)
    member = admin_sdk_a.accounts.members.get(str(membership.pk), account_id=org_a.account_id)
    assert (member.email, member.status, member.roles[0].id) == ("reader@alpha.test", "accepted", "read_only")
    invited = admin_sdk_a.accounts.members.create(
        account_id=org_a.account_id, email="x@example.org", roles=["read_only"]
    )
    assert admin_sdk_a.accounts.members.get(invited.id, account_id=org_a.account_id).status == "pending"
    for missing in ("999999", "0" * 32, "nonsense"):
        with pytest.raises(cloudflare.NotFoundError):
            admin_sdk_a.accounts.members.get(missing, account_id=org_a.account_id)


def test_change_a_members_role(admin_sdk_a, org_a, reader_a):
    membership = Membership.objects.for_org(org_a).get(user=reader_a)
    member = admin_sdk_a.accounts.members.update(
        str(membership.pk),
        account_id=org_a.account_id,
        roles=[{"id": "tunnel_admin"}],  # type: ignore[list-item]
    )
    assert member.roles[0].id == "tunnel_admin"
    membership.refresh_from_db()
    assert membership.role == Role.TUNNEL_ADMIN
    event = AuditEvent.objects.for_org(org_a).get(resource_type="member", action="update")
    assert event.changes == {"role": ["read_only", "tunnel_admin"]} and event.actor_type == "user"


def test_only_super_admins_grant_super_admin(sdk_a, org_a, reader_a, admin_a):
    membership = Membership.objects.for_org(org_a).get(user=reader_a)
    with pytest.raises(cloudflare.PermissionDeniedError):
        sdk_a.accounts.members.update(str(membership.pk), account_id=org_a.account_id, roles=["super_admin"])  # type: ignore[list-item]
    with pytest.raises(cloudflare.PermissionDeniedError):
        sdk_a.accounts.members.create(account_id=org_a.account_id, email="boss@example.org", roles=["super_admin"])
    promoted = session_sdk(admin_a).accounts.members.update(
        str(membership.pk),
        account_id=org_a.account_id,
        roles=["super_admin"],  # type: ignore[list-item]
    )
    assert promoted.roles[0].id == "super_admin"


def test_the_last_super_admin_cannot_be_demoted(admin_a, org_a):
    membership = Membership.objects.for_org(org_a).get(user=admin_a)
    with pytest.raises(cloudflare.BadRequestError) as error:
        session_sdk(admin_a).accounts.members.update(
            str(membership.pk),
            account_id=org_a.account_id,
            roles=["admin"],  # type: ignore[list-item]
        )
    assert error.value.errors[0].source.pointer == "/roles"


def test_remove_a_member_and_revoke_an_invitation(admin_sdk_a, org_a, reader_a):
    membership = Membership.objects.for_org(org_a).get(user=reader_a)
    assert admin_sdk_a.accounts.members.delete(str(membership.pk), account_id=org_a.account_id).id == str(membership.pk)
    assert not Membership.objects.for_org(org_a).filter(user=reader_a).exists()

    invited = admin_sdk_a.accounts.members.create(
        account_id=org_a.account_id, email="x@example.org", roles=["read_only"]
    )
    assert admin_sdk_a.accounts.members.delete(invited.id, account_id=org_a.account_id).id == invited.id
    assert Invitation.objects.for_org(org_a).get().status == InvitationStatus.REVOKED
    with pytest.raises(cloudflare.NotFoundError):
        admin_sdk_a.accounts.members.delete(invited.id, account_id=org_a.account_id)


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"email": "not-an-email", "roles": ["admin"]}, "/email"),
        ({"email": "a@example.org", "roles": ["admin", "read_only"]}, "/roles"),
        ({"email": "a@example.org", "roles": ["emperor"]}, "/roles/0"),
        ({"email": "a@example.org", "roles": [42]}, "/roles/0"),
        ({"email": "a@example.org", "roles": "admin"}, "/roles"),
        ({"email": "a@example.org", "roles": ["admin"], "status": "accepted"}, "/status"),
        ({"email": "a@example.org", "roles": ["admin"], "policies": [{}]}, "/policies"),
        ({"roles": ["admin"]}, "/email"),
        ({"email": "reader@alpha.test", "roles": ["admin"]}, "/email"),
    ],
)
def test_invalid_invitations_name_the_field(admin_sdk_a, org_a, reader_a, body, pointer):
    with pytest.raises(cloudflare.BadRequestError) as error:
        admin_sdk_a.post(f"/accounts/{org_a.account_id}/members", body=body, cast_to=object)
    assert pointer in [e.source.pointer for e in error.value.errors if e.source]
    assert not Invitation.objects.for_org(org_a).exists()


def test_a_second_pending_invitation_is_refused_without_retries(admin_sdk_a, org_a):
    admin_sdk_a.accounts.members.create(account_id=org_a.account_id, email="x@example.org", roles=["read_only"])
    with pytest.raises(cloudflare.BadRequestError) as error:
        admin_sdk_a.post(
            f"/accounts/{org_a.account_id}/members",
            body={"email": "x@example.org", "roles": ["read_only"]},
            cast_to=object,
        )
    assert error.value.errors[0].source.pointer == "/email"


def test_a_pending_invitations_role_cannot_change(admin_sdk_a, org_a):
    invited = admin_sdk_a.accounts.members.create(
        account_id=org_a.account_id, email="x@example.org", roles=["read_only"]
    )
    same = admin_sdk_a.accounts.members.update(invited.id, account_id=org_a.account_id, roles=["read_only"])  # type: ignore[list-item]
    assert same.status == "pending"
    with pytest.raises(cloudflare.BadRequestError) as error:
        admin_sdk_a.accounts.members.update(invited.id, account_id=org_a.account_id, roles=["admin"])  # type: ignore[list-item]
    assert error.value.errors[0].source.pointer == "/roles"


def test_a_token_without_member_grants_is_refused(make_sdk, org_a):
    client = make_sdk(org_a, {"tunnels": "edit"})
    with pytest.raises(cloudflare.PermissionDeniedError):
        list(client.accounts.members.list(account_id=org_a.account_id))
    reader = make_sdk(org_a, {"members": "read"})
    assert list(reader.accounts.members.list(account_id=org_a.account_id)) == []
    with pytest.raises(cloudflare.PermissionDeniedError):
        reader.accounts.members.create(account_id=org_a.account_id, email="x@example.org", roles=["read_only"])
