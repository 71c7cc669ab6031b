"""The operator commands: thin over the services, clean errors (exit code 1, no traceback), usable output."""

from __future__ import annotations

import datetime
import os
import re
import subprocess
import sys
from io import StringIO

import pytest
from django.conf import settings
from django.contrib.auth.tokens import default_token_generator
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from django.utils.http import urlsafe_base64_decode

from controlplane.actors import Actor
from controlplane.choices import TOKEN_RESOURCES, Interface, Role, ZoneStatus
from controlplane.models import ApiToken, AuditEvent, Membership, Organisation, OutboxMessage, User, Zone
from controlplane.services.members import invitation_create
from controlplane.services.tokens import TokenRejected, api_token_authenticate
from tests.factories import OrganisationFactory, UserFactory, ZoneFactory

# The set-password page; the UI's password-reset confirmation page takes the same token.
LINK = re.compile(r"(?P<base>\S+?)/(?:account/set-password|reset)/(?P<uid>[\w-]+)/(?P<token>[\w-]+)/")


def run(*args: str, **options) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


def user_from_link(output: str) -> User:
    """The user a printed set-password link opens, checked the way the confirm view checks it."""
    match = LINK.search(output)
    assert match, output
    assert match["base"] == settings.PUBLIC_URL
    user = User.objects.get(pk=urlsafe_base64_decode(match["uid"]).decode())
    assert default_token_generator.check_token(user, match["token"])
    return user


# create_organisation


def test_create_organisation_makes_the_admin_a_super_administrator_with_a_sign_in_link(db):
    output = run("create_organisation", "acme", "--admin-email", "Ops@Acme.test", "--display-name", "Acme Corp")

    organisation = Organisation.objects.get(team_name="acme")
    assert organisation.display_name == "Acme Corp"
    assert organisation.require_2fa is True
    user = User.objects.get(email="ops@acme.test")
    assert not user.has_usable_password()
    membership = Membership.objects.for_org(organisation).get()
    assert (membership.user, membership.role) == (user, Role.SUPER_ADMIN)
    assert user_from_link(output) == user
    assert organisation.account_id in output
    events = AuditEvent.objects.for_org(organisation).order_by("created_at")
    assert [(e.resource_type, e.action, e.interface) for e in events] == [
        ("organisation", "create", Interface.CLI),
        ("member", "create", Interface.CLI),
    ]


def test_create_organisation_reuses_an_existing_user_and_keeps_their_password(db):
    existing = UserFactory(email="ops@acme.test")
    output = run("create_organisation", "acme", "--admin-email", "ops@acme.test", "--no-require-2fa")
    existing.refresh_from_db()
    assert existing.has_usable_password()
    assert "existing account" in output
    assert User.objects.filter(email__iexact="ops@acme.test").count() == 1
    assert Organisation.objects.get(team_name="acme").require_2fa is False
    assert user_from_link(output) == existing


@pytest.mark.parametrize(
    ("team_name", "email", "message"),
    [
        ("Bad_Name", "ops@acme.test", "team_name"),
        ("acme-", "ops@acme.test", "hyphen"),
        ("admin", "ops@acme.test", "reserved"),
        ("x" * 64, "ops@acme.test", "63"),
        ("acme", "not-an-email", "not a valid email"),
        (" ", "ops@acme.test", "Give a team name"),
    ],
)
def test_create_organisation_refuses_bad_input_and_creates_nothing(db, team_name, email, message):
    with pytest.raises(CommandError, match=message) as excinfo:
        run("create_organisation", team_name, "--admin-email", email)
    assert excinfo.value.returncode == 1
    assert not Organisation.objects.exists()
    assert not User.objects.exists(), "the admin's account is rolled back with the organisation"


def test_create_organisation_refuses_a_taken_team_name(db):
    OrganisationFactory(team_name="acme")
    with pytest.raises(CommandError, match="“acme” is already taken"):
        run("create_organisation", "acme", "--admin-email", "ops@acme.test")
    assert not User.objects.filter(email="ops@acme.test").exists()


@pytest.mark.slow
def test_command_errors_exit_1_without_a_traceback(tmp_path):
    env = {**os.environ, "DATA_DIR": str(tmp_path)}
    env.pop("DATABASE_URL", None)
    manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, check=True, timeout=120)
    result = subprocess.run(
        [*manage, "create_organisation", "Not Valid", "--admin-email", "ops@acme.test"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "team_name" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


# create_api_token


def test_create_api_token_prints_the_token_alone_on_the_last_line(db):
    organisation = OrganisationFactory(team_name="acme")
    output = run(
        "create_api_token",
        "--organisation",
        "acme",
        "--name",
        "deploy",
        "--permissions",
        "tunnels:edit, zones:read",
        "--expires-in-days",
        "30",
        "--allow-ip",
        "10.0.0.0/8",
        "--allow-ip",
        "192.0.2.7",
    )
    raw = output.rstrip("\n").splitlines()[-1]
    assert re.fullmatch(r"zt_[\w-]+", raw)
    token = api_token_authenticate(raw, ip="10.1.2.3")
    assert token.organisation == organisation
    assert token.name == "deploy"
    assert token.grants == {"tunnels": "edit", "zones": "read"}
    assert token.allowed_networks == ["10.0.0.0/8", "192.0.2.7/32"]
    expected = timezone.now() + datetime.timedelta(days=30)
    assert abs(token.expires_at - expected) < datetime.timedelta(minutes=1)
    with pytest.raises(TokenRejected):
        api_token_authenticate(raw, ip="198.51.100.1")
    event = AuditEvent.objects.for_org(organisation).get()
    assert (event.resource_type, event.action, event.interface) == ("api_token", "create", Interface.CLI)


def test_create_api_token_all_grants_edit_on_every_token_resource(db):
    OrganisationFactory(team_name="acme")
    raw = run("create_api_token", "--organisation", "acme", "--name", "ci", "--all").splitlines()[-1]
    token = api_token_authenticate(raw, ip=None)
    assert token.grants == {resource.value: "edit" for resource in TOKEN_RESOURCES}
    assert token.expires_at is None and token.allowed_networks == []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--organisation", "nope", "--all"], "No organisation with team name “nope”"),
        (["--organisation", "acme", "--permissions", "tunnels:write"], "read” or “edit"),
        (["--organisation", "acme", "--permissions", "settings:edit"], "Unknown resource group"),
        (["--organisation", "acme", "--permissions", "tunnels"], "<resource>:<read|edit>"),
        (["--organisation", "acme", "--all", "--allow-ip", "not-an-ip"], "not an IP address"),
        (["--organisation", "acme", "--all", "--expires-in-days", "0"], "at least 1"),
    ],
)
def test_create_api_token_refuses_bad_input(db, arguments, message):
    organisation = OrganisationFactory(team_name="acme")
    with pytest.raises(CommandError, match=re.escape(message)):
        run("create_api_token", "--name", "ci", *arguments)
    assert not ApiToken.objects.for_org(organisation).exists()


def test_create_api_token_needs_permissions_or_all(db):
    OrganisationFactory(team_name="acme")
    with pytest.raises(CommandError, match="--permissions --all"):
        run("create_api_token", "--organisation", "acme", "--name", "ci")


# verify_zone


def test_verify_zone_activates_a_pending_zone_with_an_audit_event(db):
    zone = ZoneFactory(name="xn--bcher-kva.example", status=ZoneStatus.PENDING)
    output = run("verify_zone", "BÜCHER.example.")
    zone.refresh_from_db()
    assert zone.status == ZoneStatus.ACTIVE and zone.verified_at is not None
    assert "xn--bcher-kva.example" in output
    event = AuditEvent.objects.for_org(zone.organisation).get()
    assert (event.resource_type, event.action, event.changes) == (
        "zone",
        "update",
        {"status": ["pending", "active"]},
    )
    assert "already verified" in run("verify_zone", "xn--bcher-kva.example")
    assert AuditEvent.objects.for_org(zone.organisation).count() == 1


def test_verify_zone_names_an_unknown_or_invalid_zone(db):
    with pytest.raises(CommandError, match="No zone named example.com"):
        run("verify_zone", "example.com")
    with pytest.raises(CommandError, match="port"):
        run("verify_zone", "example.com:443")


# bootstrap and signin_link


def test_bootstrap_creates_the_first_organisation_once_and_prints_working_credentials(db, monkeypatch):
    monkeypatch.delenv("BOOTSTRAP_TEAM", raising=False)
    monkeypatch.delenv("BOOTSTRAP_ADMIN_EMAIL", raising=False)
    monkeypatch.delenv("BOOTSTRAP_ADMIN_PASSWORD", raising=False)
    output = run("bootstrap")

    organisation = Organisation.objects.get()
    assert organisation.team_name == "my-team" and organisation.require_2fa
    user = User.objects.get(email="admin@example.com")
    assert Membership.objects.for_org(organisation).get(user=user).role == Role.SUPER_ADMIN
    password = re.search(r"Password:\s+(\S+)", output)[1]
    assert len(password) >= 20 and user.check_password(password)
    assert f"URL:       {settings.PUBLIC_URL}/" in output
    assert "admin@example.com" in output
    assert "two-factor" in output
    assert user_from_link(output) == user

    again = run("bootstrap")
    assert Organisation.objects.count() == 1
    assert settings.PUBLIC_URL in again and "signin_link" in again
    assert "Password" not in again
    assert len(again.strip().splitlines()) == 1


def test_bootstrap_takes_team_and_email_from_the_environment(db, monkeypatch):
    monkeypatch.setenv("BOOTSTRAP_TEAM", "ops")
    monkeypatch.setenv("BOOTSTRAP_ADMIN_EMAIL", "root@corp.test")
    monkeypatch.setenv("BOOTSTRAP_ADMIN_PASSWORD", "a-chosen-password-42")
    output = run("bootstrap")
    assert Organisation.objects.get().team_name == "ops"
    assert User.objects.get(email="root@corp.test").check_password("a-chosen-password-42")
    assert "root@corp.test" in output


def test_bootstrap_refuses_an_invalid_team_from_the_environment(db, monkeypatch):
    monkeypatch.setenv("BOOTSTRAP_TEAM", "Not Valid")
    with pytest.raises(CommandError, match="team_name"):
        run("bootstrap")
    assert not User.objects.exists()


def test_signin_link_opens_the_set_password_page_for_that_user(db):
    user = UserFactory(email="someone@corp.test")
    output = run("signin_link", "SOMEONE@corp.test")
    assert user_from_link(output) == user
    with pytest.raises(CommandError, match="No user with email"):
        run("signin_link", "nobody@corp.test")
    user.is_active = False
    user.save()
    with pytest.raises(CommandError, match="deactivated"):
        run("signin_link", "someone@corp.test")


def test_a_sign_in_link_stops_working_once_the_password_is_set(db):
    user = UserFactory(email="someone@corp.test")
    output = run("signin_link", "someone@corp.test")
    token = LINK.search(output)["token"]
    user.set_password("a-new-password-for-me")
    user.save()
    assert not default_token_generator.check_token(user, token)


# outbox


def test_outbox_prints_kept_messages_newest_first_with_bodies(db, settings, django_capture_on_commit_callbacks):
    settings.EMAIL_BACKEND = "controlplane.mail.OutboxEmailBackend"  # the test runner swaps in locmem
    organisation = OrganisationFactory(team_name="acme")
    with django_capture_on_commit_callbacks(execute=True):
        invitation_create(organisation=organisation, email="first@corp.test", role=Role.READ_ONLY, actor=Actor.cli())
    with django_capture_on_commit_callbacks(execute=True):
        invitation_create(organisation=organisation, email="second@corp.test", role=Role.ADMIN, actor=Actor.cli())
    assert OutboxMessage.objects.for_org(organisation).count() == 2

    output = run("outbox")
    assert output.index("second@corp.test") < output.index("first@corp.test")
    assert "/invitations/" in output and "Organisation: acme" in output
    assert "You are invited to join" in output

    only_first = run("outbox", "--to", "FIRST@corp.test")
    assert "first@corp.test" in only_first and "second@corp.test" not in only_first
    newest = run("outbox", "--limit", "1")
    assert "second@corp.test" in newest and "first@corp.test" not in newest


def test_outbox_says_when_it_is_empty(db):
    assert "empty" in run("outbox")
    assert "empty for nobody@corp.test" in run("outbox", "--to", "nobody@corp.test")
    with pytest.raises(CommandError):
        run("outbox", "--limit", "0")


def test_check_zones_without_pending_zones(db):
    ZoneFactory(name="example.com", status=ZoneStatus.ACTIVE)
    assert "No pending zones" in run("check_zones")
    assert Zone.objects.unscoped("test").get().status == ZoneStatus.ACTIVE


def test_the_sign_in_link_opens_a_page_that_sets_the_password(client, db):
    user = User.objects.create_user("new@corp.test")  # no usable password yet, as create_organisation makes it
    link = LINK.search(run("signin_link", "new@corp.test"))
    path = link[0][len(link["base"]) :]

    page = client.get(path, follow=True)
    assert page.status_code == 200
    form_path = page.redirect_chain[-1][0] if page.redirect_chain else path
    done = client.post(form_path, {"new_password1": "a-fresh-passphrase-8", "new_password2": "a-fresh-passphrase-8"})
    assert done.status_code in (200, 302)
    user.refresh_from_db()
    assert user.check_password("a-fresh-passphrase-8")
    assert client.get(path, follow=True).status_code in (200, 404), "a used link is refused, not a server error"
    assert not default_token_generator.check_token(user, link["token"])
