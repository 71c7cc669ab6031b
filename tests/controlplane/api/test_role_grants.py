"""Nobody grants more than they hold (issue 14, item 3): a member or API token invites with, changes a member to
or from, and removes only roles whose permissions it holds itself; Super Administrator is granted only by a Super
Administrator. The expectations are written out, not recomputed from the rule under test."""

from __future__ import annotations

import cloudflare
import pytest
from django.core.exceptions import PermissionDenied

from controlplane.actors import Actor
from controlplane.choices import TOKEN_RESOURCES, Interface, Role
from controlplane.models import ApiToken, Invitation, Membership
from controlplane.services.members import (
    invitation_create,
    invitation_revoke,
    membership_remove,
    membership_update_role,
)
from controlplane.services.tokens import api_token_create
from tests.conftest import make_token
from tests.controlplane.api.conftest import session_sdk, token_sdk
from tests.factories import MembershipFactory, UserFactory

SA, AD, TU, AC, RO = Role.SUPER_ADMIN, Role.ADMIN, Role.TUNNEL_ADMIN, Role.ACCESS_ADMIN, Role.READ_ONLY
ROLES = [SA, AD, TU, AC, RO]

# Which roles each role may grant. Only the two administrator roles hold members:edit; an Administrator holds
# every permission but may not touch Super Administrators.
MEMBER_CAN_GRANT = {SA: {SA, AD, TU, AC, RO}, AD: {AD, TU, AC, RO}, TU: set(), AC: set(), RO: set()}

# Tokens never hold the token or settings groups, and every role reads both: no token grants any role, whatever
# its grants (an all-edit token with members:edit included).
TOKEN_GRANTS = {
    "members-edit": {"members": "edit"},
    "members-edit-all-read": {resource.value: "read" for resource in TOKEN_RESOURCES} | {"members": "edit"},
    "all-edit": {resource.value: "edit" for resource in TOKEN_RESOURCES},
    "members-read": {"members": "read"},
    "tunnels-edit": {"tunnels": "edit", "zones": "edit"},
}


@pytest.fixture
def grantor_of(org_a):
    """An actor of `org_a` with a given role (a second Super Administrator always exists, so the last-one rule
    never hides what is under test)."""
    MembershipFactory(organisation=org_a, user=UserFactory(email="owner@alpha.test"), role=SA)

    def build(role: str) -> Actor:
        user = UserFactory(email=f"grantor-{role}@alpha.test")
        MembershipFactory(organisation=org_a, user=user, role=role)
        return Actor(user=user, interface=Interface.UI)

    return build


def token_actor(organisation, grants) -> Actor:
    token, _ = api_token_create(organisation=organisation, name="grants", grants=grants, actor=Actor.cli())
    return Actor(token=ApiToken.objects.for_org(organisation).get(pk=token.pk), interface=Interface.API)


def member(organisation, role: str) -> Membership:
    return MembershipFactory(organisation=organisation, user=UserFactory(), role=role)


def allowed(call) -> bool:
    try:
        call()
    except PermissionDenied:
        return False
    return True


@pytest.mark.django_db
@pytest.mark.parametrize("grantor", ROLES)
@pytest.mark.parametrize("target", ROLES)
def test_members_invite_only_with_roles_they_hold(org_a, grantor_of, grantor, target):
    actor = grantor_of(grantor)
    ok = allowed(lambda: invitation_create(organisation=org_a, email="new@example.org", role=target, actor=actor))
    assert ok is (target in MEMBER_CAN_GRANT[grantor])
    assert Invitation.objects.for_org(org_a).exists() is ok


@pytest.mark.django_db
@pytest.mark.parametrize("grantor", ROLES)
@pytest.mark.parametrize("old", ROLES)
@pytest.mark.parametrize("new", ROLES)
def test_members_change_roles_only_between_roles_they_hold(org_a, grantor_of, grantor, old, new):
    actor = grantor_of(grantor)
    subject = member(org_a, old)
    ok = allowed(lambda: membership_update_role(membership=subject, role=new, actor=actor))
    expected = old == new or {old, new} <= MEMBER_CAN_GRANT[grantor]
    assert ok is expected
    subject.refresh_from_db()
    assert subject.role == (new if ok else old)


@pytest.mark.django_db
@pytest.mark.parametrize("grantor", ROLES)
@pytest.mark.parametrize("target", ROLES)
def test_members_remove_only_members_whose_role_they_hold(org_a, grantor_of, grantor, target):
    actor = grantor_of(grantor)
    subject = member(org_a, target)
    ok = allowed(lambda: membership_remove(membership=subject, actor=actor))
    assert ok is (target in MEMBER_CAN_GRANT[grantor])
    assert Membership.objects.for_org(org_a).filter(pk=subject.pk).exists() is not ok


@pytest.mark.django_db
@pytest.mark.parametrize("grants", list(TOKEN_GRANTS), ids=list(TOKEN_GRANTS))
@pytest.mark.parametrize("target", ROLES)
def test_tokens_grant_no_role(org_a, grantor_of, grants, target):
    grantor_of(RO)  # the second Super Administrator
    actor = token_actor(org_a, TOKEN_GRANTS[grants])
    assert not allowed(lambda: invitation_create(organisation=org_a, email="new@example.org", role=target, actor=actor))
    subject = member(org_a, RO if target != RO else TU)
    assert not allowed(lambda: membership_update_role(membership=subject, role=target, actor=actor))
    victim = member(org_a, target)
    assert not allowed(lambda: membership_remove(membership=victim, actor=actor))
    assert not Invitation.objects.for_org(org_a).exists()
    assert Membership.objects.for_org(org_a).filter(pk=victim.pk, role=target).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("grantor", ROLES)
@pytest.mark.parametrize("target", ROLES)
def test_pending_invitations_are_revoked_only_by_who_could_grant_them(org_a, grantor_of, grantor, target):
    invitation, _ = invitation_create(organisation=org_a, email="new@example.org", role=target, actor=Actor.cli())
    actor = grantor_of(grantor)
    assert allowed(lambda: invitation_revoke(invitation=invitation, actor=actor)) is (
        target in MEMBER_CAN_GRANT[grantor]
    )


def test_the_reported_attack_a_members_edit_token_cannot_make_an_administrator(org_a, admin_a, reader_a):
    """The probe: invite with roles ["admin"] (or promote someone) using a members:edit token; accepted, the
    invitee would mint an all-edit token and open Settings. Both steps are refused through the API."""
    attacker = token_sdk(make_token(org_a, {"members": "edit"}))
    with pytest.raises(cloudflare.PermissionDeniedError) as error:
        attacker.accounts.members.create(account_id=org_a.account_id, email="mallory@example.org", roles=["admin"])
    assert "settings:edit" in error.value.errors[0].message
    reader = Membership.objects.for_org(org_a).get(user=reader_a)
    with pytest.raises(cloudflare.PermissionDeniedError):
        attacker.accounts.members.update(str(reader.pk), account_id=org_a.account_id, roles=["admin"])  # type: ignore[list-item]
    assert not Invitation.objects.for_org(org_a).exists()
    reader.refresh_from_db()
    assert reader.role == RO
    # A Super Administrator, signed in, still manages members through the same API.
    invited = session_sdk(admin_a).accounts.members.create(
        account_id=org_a.account_id, email="mallory@example.org", roles=["admin"]
    )
    assert invited.status == "pending"


def test_the_ui_refuses_what_the_role_cannot_grant(client, org_a, admin_a):
    """The UI goes through the same rule: an Administrator may invite an Administrator, not a Super
    Administrator; a Tunnel Administrator cannot invite at all."""
    from tests.controlplane.ui.conftest import add_second_factor, sign_in

    org_a.require_2fa = True  # the product's default
    org_a.save()

    administrator = member(org_a, AD).user
    sign_in(client, administrator, device=add_second_factor(administrator))
    url = f"/o/{org_a.account_id}/members/"
    client.post(url, {"email": "a@example.org", "role": AD})
    client.post(url, {"email": "b@example.org", "role": SA})
    assert list(Invitation.objects.for_org(org_a).values_list("email", "role")) == [("a@example.org", AD)]
    client.logout()
    tunnel_admin = member(org_a, TU).user
    sign_in(client, tunnel_admin, device=add_second_factor(tunnel_admin))
    assert client.post(url, {"email": "c@example.org", "role": RO}).status_code == 403
    assert Invitation.objects.for_org(org_a).count() == 1
