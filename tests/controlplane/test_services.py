"""Service rules of members, invitations, API tokens and organisations, and the audit event each write leaves."""

from __future__ import annotations

import datetime

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from controlplane.actors import Actor
from controlplane.choices import TOKEN_RESOURCES, Interface, InvitationStatus, Role
from controlplane.errors import NotFound
from controlplane.models import AppendOnlyError, AuditEvent, Invitation, Membership, Organisation, User
from controlplane.services.members import (
    invitation_accept,
    invitation_create,
    invitation_decline,
    invitation_get_by_secret,
    invitation_revoke,
    membership_remove,
    membership_update_role,
)
from controlplane.services.organisations import organisation_create, organisation_update
from controlplane.services.tokens import TokenRejected, api_token_authenticate, api_token_create, api_token_revoke
from controlplane.validators import validate_team_name
from tests.factories import MembershipFactory, UserFactory

CLI = Actor.cli()
STRONG_PASSWORD = "a-long-and-unusual-passphrase-7"


def ui(user: User) -> Actor:
    return Actor(user=user, interface=Interface.UI, ip="192.0.2.10", user_agent="pytest")


def member(organisation: Organisation, role: str, email: str | None = None) -> Membership:
    user = UserFactory(email=email) if email else UserFactory()
    return MembershipFactory(organisation=organisation, user=user, role=role)


def events(organisation: Organisation) -> list[tuple[str, str, str]]:
    """(action, resource_type, resource_name) of the organisation's audit events, oldest first."""
    return [
        (event.action, event.resource_type, event.resource_name)
        for event in AuditEvent.objects.for_org(organisation).order_by("created_at", "id")
    ]


class AuditDelta:
    """The audit events written since it was created."""

    def __init__(self, organisation: Organisation) -> None:
        self.organisation = organisation
        self.before = {event.pk for event in AuditEvent.objects.for_org(organisation)}

    def new(self) -> list[AuditEvent]:
        return [
            e for e in AuditEvent.objects.for_org(self.organisation).order_by("created_at") if e.pk not in self.before
        ]


# members


def test_the_last_super_admin_can_be_neither_removed_nor_demoted(org_a, admin_a):
    only = Membership.objects.for_org(org_a).get(user=admin_a)
    audit = AuditDelta(org_a)
    with pytest.raises(ValidationError, match="last Super Administrator cannot be demoted"):
        membership_update_role(membership=only, role=Role.ADMIN, actor=ui(admin_a))
    with pytest.raises(ValidationError, match="last Super Administrator cannot be removed"):
        membership_remove(membership=only, actor=ui(admin_a))
    with pytest.raises(ValidationError, match="last Super Administrator"):
        membership_remove(membership=only, actor=CLI)
    only.refresh_from_db()
    assert only.role == Role.SUPER_ADMIN
    assert audit.new() == []


def test_with_a_second_super_admin_one_can_step_down(org_a, admin_a):
    second = member(org_a, Role.SUPER_ADMIN, "second@alpha.test")
    first = Membership.objects.for_org(org_a).get(user=admin_a)
    audit = AuditDelta(org_a)

    membership_update_role(membership=first, role=Role.ADMIN, actor=ui(second.user))

    first.refresh_from_db()
    assert first.role == Role.ADMIN
    [event] = audit.new()
    assert (event.action, event.resource_type, event.resource_name) == ("update", "member", "admin@alpha.test")
    assert event.changes == {"role": ["super_admin", "admin"]}
    assert (event.actor_user, event.actor_email, event.interface, event.ip) == (
        second.user,
        "second@alpha.test",
        "ui",
        "192.0.2.10",
    )
    with pytest.raises(ValidationError, match="last Super Administrator"):
        membership_remove(membership=second, actor=ui(second.user))


def test_only_super_admins_grant_or_take_away_super_admin(org_a, admin_a):
    admin = member(org_a, Role.ADMIN, "admin2@alpha.test")
    reader = member(org_a, Role.READ_ONLY, "reader2@alpha.test")
    boss = Membership.objects.for_org(org_a).get(user=admin_a)
    audit = AuditDelta(org_a)

    with pytest.raises(PermissionDenied, match="Only a Super Administrator"):
        membership_update_role(membership=reader, role=Role.SUPER_ADMIN, actor=ui(admin.user))
    with pytest.raises(PermissionDenied):
        membership_update_role(membership=admin, role=Role.SUPER_ADMIN, actor=ui(admin.user))
    with pytest.raises(PermissionDenied):
        membership_update_role(membership=boss, role=Role.READ_ONLY, actor=ui(admin.user))
    with pytest.raises(PermissionDenied):
        membership_remove(membership=boss, actor=ui(admin.user))
    with pytest.raises(PermissionDenied):
        invitation_create(organisation=org_a, email="x@corp.test", role=Role.SUPER_ADMIN, actor=ui(admin.user))
    assert audit.new() == []

    # An Administrator manages the other roles; a Super Administrator everything.
    membership_update_role(membership=reader, role=Role.TUNNEL_ADMIN, actor=ui(admin.user))
    membership_update_role(membership=reader, role=Role.SUPER_ADMIN, actor=ui(admin_a))
    reader.refresh_from_db()
    assert reader.role == Role.SUPER_ADMIN
    assert [e.changes for e in audit.new()] == [
        {"role": ["read_only", "tunnel_admin"]},
        {"role": ["tunnel_admin", "super_admin"]},
    ]


def test_an_unchanged_role_writes_nothing_and_an_unknown_role_is_refused(org_a, admin_a):
    reader = member(org_a, Role.READ_ONLY)
    audit = AuditDelta(org_a)
    membership_update_role(membership=reader, role=Role.READ_ONLY, actor=ui(admin_a))
    with pytest.raises(ValidationError, match="Unknown role"):
        membership_update_role(membership=reader, role="owner", actor=ui(admin_a))
    assert audit.new() == []


def test_removing_a_member_and_leaving(org_a, admin_a):
    admin = member(org_a, Role.ADMIN, "admin2@alpha.test")
    reader = member(org_a, Role.READ_ONLY, "reader2@alpha.test")
    audit = AuditDelta(org_a)

    membership_remove(membership=reader, actor=ui(admin.user))
    membership_remove(membership=admin, actor=ui(admin.user))  # leaving is always allowed but for the last SA

    assert list(Membership.objects.for_org(org_a).values_list("user__email", flat=True)) == ["admin@alpha.test"]
    assert [(e.action, e.resource_type, e.resource_name, e.changes) for e in audit.new()] == [
        ("delete", "member", "reader2@alpha.test", {"role": ["read_only", None]}),
        ("delete", "member", "admin2@alpha.test", {"role": ["admin", None]}),
    ]
    assert User.objects.filter(email="reader2@alpha.test").exists(), "the person keeps their account"


# invitations


def test_an_invitation_is_created_with_a_hashed_secret_and_one_audit_event(org_a, admin_a):
    audit = AuditDelta(org_a)
    invitation, raw = invitation_create(
        organisation=org_a, email=" New@Corp.TEST ", role=Role.ACCESS_ADMIN, actor=ui(admin_a)
    )
    assert invitation.email == "new@corp.test" and invitation.status == InvitationStatus.PENDING
    assert raw not in invitation.token_hash and len(raw) >= 40
    assert invitation.invited_by == admin_a
    assert timezone.now() + datetime.timedelta(days=6) < invitation.expires_at
    [event] = audit.new()
    assert (event.action, event.resource_type, event.resource_name, event.changes) == (
        "create",
        "invitation",
        "new@corp.test",
        {"email": [None, "new@corp.test"], "role": [None, "access_admin"]},
    )
    assert invitation_get_by_secret(raw) == invitation


@pytest.mark.parametrize(
    ("email", "role", "message"),
    [
        ("not-an-email", Role.READ_ONLY, "valid email"),
        ("new@corp.test", "owner", "Unknown role"),
        ("admin@alpha.test", Role.READ_ONLY, "already a member"),
        ("ADMIN@alpha.test", Role.READ_ONLY, "already a member"),
    ],
)
def test_invalid_invitations_are_refused(org_a, admin_a, email, role, message):
    with pytest.raises(ValidationError, match=message):
        invitation_create(organisation=org_a, email=email, role=role, actor=ui(admin_a))
    assert not Invitation.objects.for_org(org_a).exists()


def test_a_second_pending_invitation_for_the_same_email_is_refused(org_a, org_b, admin_a):
    invitation, _ = invitation_create(organisation=org_a, email="new@corp.test", role=Role.READ_ONLY, actor=CLI)
    with pytest.raises(ValidationError, match="already has a pending invitation"):
        invitation_create(organisation=org_a, email="NEW@corp.test", role=Role.ADMIN, actor=CLI)
    # Another organisation may invite the same person, and after a revoke a new invitation may be sent.
    invitation_create(organisation=org_b, email="new@corp.test", role=Role.READ_ONLY, actor=CLI)
    invitation_revoke(invitation=invitation, actor=CLI)
    invitation_create(organisation=org_a, email="new@corp.test", role=Role.ADMIN, actor=CLI)
    statuses = sorted(Invitation.objects.for_org(org_a).values_list("status", flat=True))
    assert statuses == ["pending", "revoked"]


def test_accepting_creates_the_account_and_the_membership(org_a, admin_a):
    invitation, raw = invitation_create(organisation=org_a, email="new@corp.test", role=Role.TUNNEL_ADMIN, actor=CLI)
    audit = AuditDelta(org_a)

    membership = invitation_accept(
        invitation=invitation_get_by_secret(raw),
        user=None,
        password=STRONG_PASSWORD,
        name=" New Person ",
        actor=Actor(interface=Interface.UI, ip="192.0.2.20"),
    )

    user = User.objects.get(email="new@corp.test")
    assert user.check_password(STRONG_PASSWORD) and user.name == "New Person"
    assert (membership.user, membership.role) == (user, Role.TUNNEL_ADMIN)
    invitation.refresh_from_db()
    assert invitation.status == InvitationStatus.ACCEPTED and invitation.responded_at is not None
    [event] = audit.new()
    assert (event.action, event.resource_type, event.actor_user, event.ip) == ("create", "member", user, "192.0.2.20")
    with pytest.raises(NotFound):
        invitation_get_by_secret(raw)
    with pytest.raises(NotFound):
        invitation_accept(invitation=invitation, user=None, password=STRONG_PASSWORD, actor=CLI)


def test_accepting_as_a_signed_in_user_needs_the_invited_email(org_a, org_b):
    existing = member(org_b, Role.ADMIN, "someone@corp.test").user
    other = UserFactory(email="other@corp.test")
    invitation, _ = invitation_create(organisation=org_a, email="someone@corp.test", role=Role.READ_ONLY, actor=CLI)

    with pytest.raises(PermissionDenied, match="This invitation is for someone@corp.test"):
        invitation_accept(invitation=invitation, user=other, actor=ui(other))
    with pytest.raises(PermissionDenied, match="sign in to accept"):
        invitation_accept(invitation=invitation, user=None, password=STRONG_PASSWORD, actor=CLI)

    membership = invitation_accept(invitation=invitation, user=existing, actor=ui(existing))
    assert membership.organisation == org_a and membership.role == Role.READ_ONLY


def test_accepting_with_a_weak_password_is_refused_and_creates_nothing(org_a):
    invitation, _ = invitation_create(organisation=org_a, email="new@corp.test", role=Role.READ_ONLY, actor=CLI)
    with pytest.raises(ValidationError) as excinfo:
        invitation_accept(invitation=invitation, user=None, password="password", actor=CLI)
    assert "password" in excinfo.value.message_dict
    assert not User.objects.filter(email="new@corp.test").exists()
    invitation.refresh_from_db()
    assert invitation.status == InvitationStatus.PENDING


def test_declining_closes_the_invitation_once(org_a):
    invitation, raw = invitation_create(organisation=org_a, email="new@corp.test", role=Role.READ_ONLY, actor=CLI)
    audit = AuditDelta(org_a)
    invitation_decline(invitation=invitation, actor=Actor(interface=Interface.UI))
    invitation_decline(invitation=invitation, actor=Actor(interface=Interface.UI))
    invitation.refresh_from_db()
    assert invitation.status == InvitationStatus.DECLINED
    assert [(e.action, e.changes) for e in audit.new()] == [("update", {"status": ["pending", "declined"]})]
    with pytest.raises(NotFound):
        invitation_get_by_secret(raw)


def test_an_expired_invitation_cannot_be_opened_or_accepted(org_a):
    invitation, raw = invitation_create(organisation=org_a, email="new@corp.test", role=Role.READ_ONLY, actor=CLI)
    Invitation.objects.for_org(org_a).filter(pk=invitation.pk).update(
        expires_at=timezone.now() - datetime.timedelta(seconds=1)
    )
    with pytest.raises(NotFound, match="expired"):
        invitation_get_by_secret(raw)
    with pytest.raises(NotFound):
        invitation_accept(invitation=invitation, user=None, password=STRONG_PASSWORD, actor=CLI)
    assert not User.objects.filter(email="new@corp.test").exists()


def test_an_unknown_secret_opens_nothing(org_a):
    invitation_create(organisation=org_a, email="new@corp.test", role=Role.READ_ONLY, actor=CLI)
    for secret in ["", "nope", "x" * 43]:
        with pytest.raises(NotFound):
            invitation_get_by_secret(secret)


def test_revoking_needs_a_pending_invitation_and_super_admin_for_super_admin_invitations(org_a, admin_a):
    admin = member(org_a, Role.ADMIN).user
    top, _ = invitation_create(organisation=org_a, email="top@corp.test", role=Role.SUPER_ADMIN, actor=ui(admin_a))
    with pytest.raises(PermissionDenied):
        invitation_revoke(invitation=top, actor=ui(admin))
    audit = AuditDelta(org_a)
    invitation_revoke(invitation=top, actor=ui(admin_a))
    with pytest.raises(ValidationError, match="Only pending invitations"):
        invitation_revoke(invitation=top, actor=ui(admin_a))
    assert [(e.action, e.resource_type, e.changes) for e in audit.new()] == [
        ("delete", "invitation", {"status": ["pending", "revoked"]})
    ]


# API tokens


@pytest.mark.parametrize(
    ("grants", "message"),
    [
        ({}, "at least one permission"),
        (["tunnels"], "at least one permission"),
        ({"tunnels": "write"}, "must be “read” or “edit”"),
        ({"dns": "read"}, "Unknown resource group"),
        ({"settings": "read"}, "Unknown resource group"),
        ({"tokens": "edit"}, "Unknown resource group"),
    ],
)
def test_token_grants_are_validated(org_a, grants, message):
    with pytest.raises(ValidationError, match=message):
        api_token_create(organisation=org_a, name="t", grants=grants, actor=CLI)
    assert not AuditEvent.objects.for_org(org_a).exists()


@pytest.mark.parametrize(("name", "message"), [("", "Give the token a name"), ("  ", "name"), ("x" * 121, "120")])
def test_token_names_are_validated(org_a, name, message):
    with pytest.raises(ValidationError, match=message):
        api_token_create(organisation=org_a, name=name, grants={"tunnels": "read"}, actor=CLI)


def test_a_token_is_capped_to_its_creators_role(org_a, org_b):
    reader = member(org_a, Role.READ_ONLY).user
    tunnel_admin = member(org_a, Role.TUNNEL_ADMIN).user
    outsider = member(org_b, Role.SUPER_ADMIN).user

    with pytest.raises(PermissionDenied, match=r"Your role \(Read only\) cannot grant edit on tunnels"):
        api_token_create(organisation=org_a, name="t", grants={"tunnels": "edit"}, actor=ui(reader))
    api_token_create(organisation=org_a, name="t", grants={"tunnels": "read", "audit": "read"}, actor=ui(reader))

    api_token_create(organisation=org_a, name="t", grants={"tunnels": "edit", "zones": "edit"}, actor=ui(tunnel_admin))
    with pytest.raises(PermissionDenied, match="cannot grant edit on access"):
        api_token_create(organisation=org_a, name="t", grants={"access": "edit"}, actor=ui(tunnel_admin))

    with pytest.raises(PermissionDenied, match="Only members"):
        api_token_create(organisation=org_a, name="t", grants={"tunnels": "read"}, actor=ui(outsider))


def test_a_token_authenticates_and_records_its_use(org_a):
    audit = AuditDelta(org_a)
    token, raw = api_token_create(
        organisation=org_a, name="deploy", grants={"tunnels": "edit"}, actor=CLI, allowed_networks=None
    )
    assert raw.startswith("zt_") and token.hint == raw[-4:] and raw not in token.token_hash
    assert token.scopes == frozenset({"tunnels:read", "tunnels:edit"})
    [event] = audit.new()
    assert (event.action, event.resource_type, event.resource_name, event.actor_type, event.interface) == (
        "create",
        "api_token",
        "deploy",
        "system",
        "cli",
    )

    found = api_token_authenticate(raw, ip="203.0.113.9")
    assert found == token and found.organisation == org_a and found.last_used_at is not None
    first_use = found.last_used_at
    assert api_token_authenticate(raw, ip=None).last_used_at == first_use, "recorded at most once a minute"
    with pytest.raises(TokenRejected, match="Invalid API Token"):
        api_token_authenticate(raw + "x", ip=None)
    with pytest.raises(TokenRejected, match="Invalid API Token"):
        api_token_authenticate("", ip=None)


def test_a_token_restricted_to_networks(org_a):
    token, raw = api_token_create(
        organisation=org_a,
        name="ci",
        grants={"zones": "read"},
        actor=CLI,
        allowed_networks="10.0.0.0/8, 192.0.2.7\n2001:db8::/32",
    )
    assert token.allowed_networks == ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"]
    for ip in ["10.200.0.1", "192.0.2.7", "2001:db8::1"]:
        assert api_token_authenticate(raw, ip=ip) == token
    for ip in ["192.0.2.8", "11.0.0.1", "2001:db9::1", None, "not-an-ip"]:
        with pytest.raises(TokenRejected, match="cannot be used from this IP address"):
            api_token_authenticate(raw, ip=ip)
    with pytest.raises(ValidationError, match="not an IP address or CIDR range"):
        api_token_create(organisation=org_a, name="t", grants={"zones": "read"}, actor=CLI, allowed_networks=["x"])


def test_token_expiry_and_not_before(org_a):
    now = timezone.now()
    with pytest.raises(ValidationError, match="must be in the future"):
        api_token_create(organisation=org_a, name="t", grants={"zones": "read"}, actor=CLI, expires_at=now)
    with pytest.raises(ValidationError, match="must be before the expiry"):
        api_token_create(
            organisation=org_a,
            name="t",
            grants={"zones": "read"},
            actor=CLI,
            expires_at=now + datetime.timedelta(days=1),
            not_before=now + datetime.timedelta(days=2),
        )

    token, raw = api_token_create(
        organisation=org_a, name="t", grants={"zones": "read"}, actor=CLI, expires_at=now + datetime.timedelta(days=1)
    )
    assert token.status == "active"
    type(token).objects.for_org(org_a).filter(pk=token.pk).update(expires_at=now - datetime.timedelta(seconds=1))
    with pytest.raises(TokenRejected, match="This API Token is expired"):
        api_token_authenticate(raw, ip=None)

    later, later_raw = api_token_create(
        organisation=org_a, name="later", grants={"zones": "read"}, actor=CLI, not_before=now + datetime.timedelta(1)
    )
    assert later.status == "disabled"
    with pytest.raises(TokenRejected, match="This API Token is disabled"):
        api_token_authenticate(later_raw, ip=None)


def test_a_revoked_token_is_refused_and_revoking_twice_writes_one_event(org_a, admin_a):
    token, raw = api_token_create(organisation=org_a, name="t", grants={"zones": "read"}, actor=CLI)
    audit = AuditDelta(org_a)
    api_token_revoke(token=token, actor=ui(admin_a))
    api_token_revoke(token=token, actor=ui(admin_a))
    assert token.revoked_at is not None and token.status == "disabled"
    with pytest.raises(TokenRejected, match="disabled"):
        api_token_authenticate(raw, ip=None)
    assert [(e.action, e.resource_type, e.changes) for e in audit.new()] == [
        ("delete", "api_token", {"status": ["active", "disabled"]})
    ]


def test_tokens_of_every_resource_group(org_a):
    grants = {resource.value: "read" for resource in TOKEN_RESOURCES}
    token, _ = api_token_create(organisation=org_a, name="all", grants=grants, actor=CLI)
    assert {s.split(":")[0] for s in token.scopes} == set(grants)
    assert not any(s.endswith(":edit") for s in token.scopes)


# organisations


@pytest.mark.parametrize("name", ["a", "0", "acme", "acme-corp", "a1-b2-c3", "x" * 63, "123"])
def test_valid_team_names(name):
    validate_team_name(name)


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("Acme", "team_name_case"),
        ("ACME", "team_name_case"),
        ("", "team_name_length"),
        ("x" * 64, "team_name_length"),
        ("-acme", "team_name_chars"),
        ("acme-", "team_name_chars"),
        ("ac_me", "team_name_chars"),
        ("ac.me", "team_name_chars"),
        ("ac me", "team_name_chars"),
        ("bücher", "team_name_chars"),
        ("admin", "team_name_reserved"),
        ("www", "team_name_reserved"),
        ("api", "team_name_reserved"),
    ],
)
def test_invalid_team_names(name, code):
    with pytest.raises(ValidationError) as excinfo:
        validate_team_name(name)
    assert excinfo.value.code == code


@pytest.mark.parametrize("name", ["Acme", "-acme", "admin", "x" * 64, ""])
def test_organisation_create_refuses_invalid_team_names_and_writes_nothing(db, name):
    with pytest.raises(ValidationError) as excinfo:
        organisation_create(team_name=name, owner=None, actor=CLI)
    if name:  # an empty name is reported on display_name (derived from it); still refused
        assert "team_name" in excinfo.value.message_dict
    assert not Organisation.objects.exists()
    assert not AuditEvent.objects.unscoped("test").exists()


def test_organisation_create_writes_the_organisation_and_owner_events(db):
    owner = UserFactory(email="owner@corp.test")
    organisation = organisation_create(team_name=" acme ", display_name="", owner=owner, actor=CLI)
    assert organisation.team_name == "acme" and organisation.display_name == "acme" and organisation.require_2fa
    assert organisation.team_domain.startswith("acme.")
    assert events(organisation) == [("create", "organisation", "acme"), ("create", "member", "owner@corp.test")]
    created = AuditEvent.objects.for_org(organisation).filter(resource_type="organisation").get()
    assert created.changes == {
        "display_name": [None, "acme"],
        "require_2fa": [None, True],
        "team_name": [None, "acme"],
    }
    assert Membership.objects.for_org(organisation).get().role == Role.SUPER_ADMIN
    with pytest.raises(ValidationError, match="team_name"):
        organisation_create(team_name="acme", owner=None, actor=CLI)


def test_renaming_keeps_team_names_unique_and_audits_the_change(org_a, org_b, admin_a):
    audit = AuditDelta(org_a)
    with pytest.raises(ValidationError, match="team_name"):
        organisation_update(organisation=org_a, team_name="bravo", actor=ui(admin_a))
    with pytest.raises(ValidationError, match="team_name"):
        organisation_update(organisation=org_a, team_name="Alpha-2", actor=ui(admin_a))
    with pytest.raises(ValidationError, match="cannot be changed"):
        organisation_update(organisation=org_a, id="x", actor=ui(admin_a))
    organisation_update(organisation=org_a, team_name="alpha", display_name="Alpha", actor=ui(admin_a))
    assert audit.new() == []

    renamed = organisation_update(organisation=org_a, team_name="alpha-2", require_2fa=True, actor=ui(admin_a))
    assert renamed.team_name == "alpha-2"
    [event] = audit.new()
    assert (event.action, event.resource_type, event.resource_name) == ("update", "organisation", "alpha-2")
    assert event.changes == {"team_name": ["alpha", "alpha-2"], "require_2fa": [False, True]}
    assert Organisation.objects.get(pk=org_b.pk).team_name == "bravo"


def test_emptying_the_display_name_falls_back_to_the_team_name(org_a, admin_a):
    organisation = organisation_update(organisation=org_a, display_name="  ", actor=ui(admin_a))
    assert organisation.display_name == "alpha"


# the audit log


def test_audit_events_cannot_be_changed_or_deleted(org_a, admin_a):
    organisation_update(organisation=org_a, display_name="Renamed", actor=ui(admin_a))
    event = AuditEvent.objects.for_org(org_a).get()
    event.action = "delete"
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    event.refresh_from_db()
    assert event.action == "update"
    assert AuditEvent.objects.for_org(org_a).count() == 1


def test_audit_events_cannot_be_changed_or_deleted_in_bulk(org_a, admin_a):
    organisation_update(organisation=org_a, display_name="Renamed", actor=ui(admin_a))
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.for_org(org_a).update(action="delete")
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.for_org(org_a).delete()


def test_audit_events_are_scoped_to_their_organisation(org_a, org_b, admin_a, admin_b):
    organisation_update(organisation=org_a, display_name="A", actor=ui(admin_a))
    organisation_update(organisation=org_b, display_name="B", actor=ui(admin_b))
    assert events(org_a) == [("update", "organisation", "alpha")]
    assert events(org_b) == [("update", "organisation", "bravo")]
