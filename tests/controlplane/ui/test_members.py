"""Members and invitations: invite (mail by Celery), change role, remove, revoke; service refusals shown on the
page; the invitation link for new and existing users."""

from __future__ import annotations

import re

import pytest

from controlplane.actors import Actor
from controlplane.choices import InvitationStatus, Role
from controlplane.models import Invitation, Membership, OutboxMessage, User
from controlplane.services.members import invitation_create
from tests.controlplane.ui.conftest import sign_in
from tests.factories import DEFAULT_PASSWORD, MembershipFactory, UserFactory


def members_url(org):
    return f"/o/{org.account_id}/members/"


def membership_of(org, user):
    return Membership.objects.for_org(org).get(user=user)


def invite(org, email, role=Role.READ_ONLY):
    return invitation_create(organisation=org, email=email, role=role, actor=Actor.cli())


def test_members_page_lists_roles_2fa_and_pending_invitations(admin_client, org_a, admin_a, reader_a):
    invite(org_a, "pending@alpha.test", Role.TUNNEL_ADMIN)
    html = admin_client.get(members_url(org_a)).content.decode()
    for text in [
        "admin@alpha.test",
        "reader@alpha.test",
        "pending@alpha.test",
        "Tunnel Administrator",
        "See everything, change nothing.",
        "Send invitation",
    ]:
        assert text in html


def test_invite_sends_the_mail_through_the_outbox(admin_client, org_a, settings, django_capture_on_commit_callbacks):
    settings.EMAIL_BACKEND = "controlplane.mail.OutboxEmailBackend"
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(members_url(org_a), {"email": "New@Alpha.test", "role": Role.ADMIN})
    assert response.url == members_url(org_a)
    invitation = Invitation.objects.for_org(org_a).get(email="new@alpha.test")
    assert invitation.role == Role.ADMIN and invitation.status == InvitationStatus.PENDING
    [mail] = OutboxMessage.objects.for_org(org_a)
    assert mail.to == ["new@alpha.test"] and "/invitations/" in mail.body
    assert "Invitation sent to new@alpha.test" in admin_client.get(members_url(org_a)).content.decode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"email": "not-an-email", "role": Role.ADMIN}, "Enter a valid email address."),
        ({"email": "x@alpha.test", "role": "emperor"}, "Select a valid choice."),
        ({"email": "reader@alpha.test", "role": Role.ADMIN}, "already a member of this organisation"),
    ],
)
def test_invite_errors_are_inline(admin_client, org_a, reader_a, data, message):
    response = admin_client.post(members_url(org_a), data)
    assert response.status_code == 200 and message in response.content.decode()


def test_duplicate_pending_invitation_is_a_form_error(admin_client, org_a):
    invite(org_a, "twice@alpha.test")
    response = admin_client.post(members_url(org_a), {"email": "twice@alpha.test", "role": Role.READ_ONLY})
    assert "already has a pending invitation" in response.content.decode()


def test_administrators_cannot_offer_the_super_administrator_role(client, org_a, admin_a):
    admin = MembershipFactory(organisation=org_a, user=UserFactory(email="plain@alpha.test"), role=Role.ADMIN).user
    sign_in(client, admin)
    html = client.get(members_url(org_a)).content.decode()
    assert 'value="super_admin"' not in html
    response = client.post(members_url(org_a), {"email": "boss@alpha.test", "role": Role.SUPER_ADMIN})
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    # …nor change or remove a Super Administrator (the service says so, shown on that member's row).
    target = membership_of(org_a, admin_a)
    refused = client.post(f"{members_url(org_a)}{target.pk}/role/", {"role": Role.READ_ONLY})
    assert refused.status_code == 200 and "Only a Super Administrator" in refused.content.decode()
    assert membership_of(org_a, admin_a).role == Role.SUPER_ADMIN


def test_change_role(admin_client, org_a, reader_a):
    membership = membership_of(org_a, reader_a)
    response = admin_client.post(f"{members_url(org_a)}{membership.pk}/role/", {"role": Role.ACCESS_ADMIN})
    assert response.url == members_url(org_a)
    assert membership_of(org_a, reader_a).role == Role.ACCESS_ADMIN


def test_invalid_role_is_an_error_on_the_row(admin_client, org_a, reader_a):
    membership = membership_of(org_a, reader_a)
    response = admin_client.post(f"{members_url(org_a)}{membership.pk}/role/", {"role": "emperor"})
    assert response.status_code == 200 and "Choose one of the roles." in response.content.decode()


def test_the_last_super_administrator_cannot_be_demoted_or_removed(admin_client, org_a, admin_a):
    me = membership_of(org_a, admin_a)
    demote = admin_client.post(f"{members_url(org_a)}{me.pk}/role/", {"role": Role.READ_ONLY})
    assert demote.status_code == 200 and "last Super Administrator cannot be demoted" in demote.content.decode()
    remove = admin_client.post(f"{members_url(org_a)}{me.pk}/remove/")
    assert remove.status_code == 200 and "last Super Administrator cannot be removed" in remove.content.decode()
    assert membership_of(org_a, admin_a).role == Role.SUPER_ADMIN


def test_remove_member_and_leave(admin_client, client, org_a, reader_a):
    membership = membership_of(org_a, reader_a)
    assert admin_client.post(f"{members_url(org_a)}{membership.pk}/remove/").url == members_url(org_a)
    assert not Membership.objects.for_org(org_a).filter(user=reader_a).exists()

    leaver = MembershipFactory(organisation=org_a, user=UserFactory(email="leaver@alpha.test"), role=Role.ADMIN)
    other = sign_in(type(client)(), leaver.user)
    assert other.post(f"{members_url(org_a)}{leaver.pk}/remove/").url == "/"


def test_revoke_invitation(admin_client, org_a):
    invitation, _ = invite(org_a, "gone@alpha.test")
    response = admin_client.post(f"/o/{org_a.account_id}/invitations/{invitation.id.hex}/revoke/")
    assert response.url == members_url(org_a)
    invitation.refresh_from_db()
    assert invitation.status == InvitationStatus.REVOKED
    again = admin_client.post(f"/o/{org_a.account_id}/invitations/{invitation.id.hex}/revoke/")
    assert again.status_code == 200 and "Only pending invitations can be revoked." in again.content.decode()


# --- the invitation link -----------------------------------------------------------------------------------------


def test_new_user_sets_a_password_and_joins(client, org_a):
    invitation, secret = invite(org_a, "newbie@alpha.test", Role.TUNNEL_ADMIN)
    url = f"/invitations/{secret}/"
    page = client.get(url).content.decode()
    assert "Join Alpha" in page and "Tunnel Administrator" in page and 'name="password1"' in page
    weak = client.post(url, {"action": "accept", "name": "New Bie", "password1": "123", "password2": "123"})
    assert weak.status_code == 200 and "too short" in weak.content.decode()
    differ = client.post(url, {"action": "accept", "password1": "long-enough-pass-1", "password2": "other-pass-22"})
    assert "The two passwords differ." in differ.content.decode()
    response = client.post(
        url,
        {"action": "accept", "name": "New Bie", "password1": "long-enough-pass-1", "password2": "long-enough-pass-1"},
    )
    assert response.url == f"/o/{org_a.account_id}/"
    user = User.objects.get(email="newbie@alpha.test")
    assert user.name == "New Bie" and user.check_password("long-enough-pass-1")
    assert membership_of(org_a, user).role == Role.TUNNEL_ADMIN
    assert client.session["_auth_user_id"] == str(user.pk)
    assert client.get(url).status_code == 404  # used


def test_new_user_joining_a_2fa_org_is_sent_to_enrol(client, org_a):
    org_a.require_2fa = True
    org_a.save()
    _, secret = invite(org_a, "strict@alpha.test")
    response = client.post(
        f"/invitations/{secret}/",
        {"action": "accept", "password1": "long-enough-pass-1", "password2": "long-enough-pass-1"},
        follow=True,
    )
    assert response.redirect_chain[-1][0].startswith("/account/two-factor/")


def test_existing_user_signs_in_first_then_accepts(client, org_a, admin_b):
    _, secret = invite(org_a, admin_b.email, Role.ADMIN)
    url = f"/invitations/{secret}/"
    response = client.get(url)
    assert response.url == f"/login/?next={url}"
    signed_in = client.post("/login/", {"email": admin_b.email, "password": DEFAULT_PASSWORD, "next": url})
    assert signed_in.url == url
    assert "Accept and join Alpha" in client.get(url).content.decode()
    assert client.post(url, {"action": "accept"}).url == f"/o/{org_a.account_id}/"
    assert membership_of(org_a, admin_b).role == Role.ADMIN


def test_signed_in_as_someone_else_is_told_clearly(client, org_a, admin_b):
    invitation, secret = invite(org_a, "someone.else@alpha.test")
    sign_in(client, admin_b)
    url = f"/invitations/{secret}/"
    page = client.get(url).content.decode()
    assert "This invitation is for <strong>someone.else@alpha.test</strong>" in page
    assert "you are signed in as <strong>admin@bravo.test</strong>" in page
    assert client.post(url, {"action": "accept"}).status_code == 200
    assert not Membership.objects.for_org(org_a).filter(user=admin_b).exists()
    # "Sign out and continue" signs out and returns to the link (which now offers to create the account).
    response = client.post(url, {"action": "switch-user"})
    assert response.url == url and "_auth_user_id" not in client.session


def test_decline(client, org_a):
    invitation, secret = invite(org_a, "nothanks@alpha.test")
    assert client.post(f"/invitations/{secret}/", {"action": "decline"}).url == "/login/"
    invitation.refresh_from_db()
    assert invitation.status == InvitationStatus.DECLINED


@pytest.mark.parametrize("secret", ["nonsense", "x" * 43])
def test_unknown_links_are_a_friendly_404(client, db, secret):
    response = client.get(f"/invitations/{secret}/")
    assert response.status_code == 404 and "cannot be used" in response.content.decode()


def test_revoked_link_is_a_404(client, org_a):
    invitation, secret = invite(org_a, "revoked@alpha.test")
    Invitation.objects.for_org(org_a).filter(pk=invitation.pk).update(status=InvitationStatus.REVOKED)
    assert client.get(f"/invitations/{secret}/").status_code == 404


def test_invitation_mail_link_matches_the_page(client, org_a, settings, django_capture_on_commit_callbacks):
    settings.EMAIL_BACKEND = "controlplane.mail.OutboxEmailBackend"
    with django_capture_on_commit_callbacks(execute=True):
        invite(org_a, "mail@alpha.test")
    body = OutboxMessage.objects.for_org(org_a).get().body
    path = re.search(r"https?://[^/\s]+(/invitations/\S+/)", body).group(1)
    assert client.get(path).status_code == 200
