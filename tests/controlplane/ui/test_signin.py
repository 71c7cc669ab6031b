"""Signing in with a password: generic failures, lockout with doubling, per-address throttling, the audit event."""

from __future__ import annotations

import datetime

import pytest
from django.urls import reverse
from django.utils import timezone

from controlplane.choices import AuditAction, Role
from controlplane.models import AuditEvent, User
from tests.factories import DEFAULT_PASSWORD, MembershipFactory, UserFactory

LOGIN = "/login/"
GENERIC = "The email address or password is incorrect."


def post_login(client, email, password, *, ip="127.0.0.1", **fields):
    return client.post(LOGIN, {"email": email, "password": password, **fields}, REMOTE_ADDR=ip)


@pytest.fixture
def fast_lockout(settings):
    settings.LOGIN_MAX_FAILURES = 3
    settings.LOGIN_LOCKOUT_SECONDS = 60
    settings.LOGIN_IP_MAX_FAILURES = 100
    return settings


def test_login_page_renders_with_reset_link(client, db):
    response = client.get(LOGIN)
    assert response.status_code == 200
    assert b'name="email"' in response.content and b'name="password"' in response.content
    assert reverse("ui:password-reset").encode() in response.content


def test_success_signs_in_and_records_a_login_event_in_each_organisation(client, admin_a, org_a, org_b):
    MembershipFactory(organisation=org_b, user=admin_a, role=Role.READ_ONLY)
    response = post_login(client, "Admin@Alpha.test", DEFAULT_PASSWORD)
    assert response.status_code == 302 and response.url == reverse("ui:home")
    assert client.session["_auth_user_id"] == str(admin_a.pk)
    for org in (org_a, org_b):
        event = AuditEvent.objects.for_org(org).get(action=AuditAction.LOGIN)
        assert event.actor_user == admin_a and event.interface == "ui" and event.ip == "127.0.0.1"
        assert event.changes == {"method": "password"}


def test_success_follows_a_safe_next_and_ignores_an_offsite_one(client, admin_a, org_a):
    overview = f"/o/{org_a.account_id}/"
    assert post_login(client, admin_a.email, DEFAULT_PASSWORD, next=overview).url == overview
    client.logout()
    assert post_login(client, admin_a.email, DEFAULT_PASSWORD, next="https://evil.example/").url == reverse("ui:home")


def test_unknown_email_and_wrong_password_get_the_same_answer(client, admin_a):
    wrong = post_login(client, admin_a.email, "not-the-password")
    unknown = post_login(client, "nobody@alpha.test", "not-the-password")
    for response in (wrong, unknown):
        assert response.status_code == 200
        assert GENERIC in response.content.decode()
        assert "_auth_user_id" not in client.session
    assert User.objects.get(pk=admin_a.pk).failed_logins == 1


def test_invalid_input_gets_inline_errors_not_a_500(client, db):
    response = client.post(LOGIN, {"email": "not an email", "password": ""})
    assert response.status_code == 200
    html = response.content.decode()
    assert "Enter a valid email address." in html and "This field is required." in html


def test_lockout_after_max_failures_says_until_when_and_refuses_the_right_password(client, admin_a, fast_lockout):
    for _ in range(2):
        assert GENERIC in post_login(client, admin_a.email, "wrong").content.decode()
    locking = post_login(client, admin_a.email, "wrong").content.decode()
    admin_a.refresh_from_db()
    assert admin_a.lockouts == 1 and admin_a.failed_logins == 0
    assert admin_a.locked_until - timezone.now() == pytest.approx(
        datetime.timedelta(seconds=60), abs=datetime.timedelta(seconds=5)
    )
    assert "locked" in locking and f"{admin_a.locked_until:%H:%M:%S}" in locking

    # While locked, the right and the wrong password get the same answer; neither signs in.
    right = post_login(client, admin_a.email, DEFAULT_PASSWORD).content.decode()
    wrong = post_login(client, admin_a.email, "wrong").content.decode()
    assert "locked" in right and right.count("locked") == wrong.count("locked")
    assert "_auth_user_id" not in client.session


def test_each_further_lockout_lasts_twice_as_long(client, admin_a, fast_lockout):
    User.objects.filter(pk=admin_a.pk).update(lockouts=1, locked_until=timezone.now() - datetime.timedelta(seconds=1))
    for _ in range(3):
        post_login(client, admin_a.email, "wrong")
    admin_a.refresh_from_db()
    assert admin_a.lockouts == 2
    assert admin_a.locked_until - timezone.now() == pytest.approx(
        datetime.timedelta(seconds=120), abs=datetime.timedelta(seconds=5)
    )


def test_lock_expires_and_a_success_clears_the_counters(client, admin_a, fast_lockout):
    User.objects.filter(pk=admin_a.pk).update(
        failed_logins=2, lockouts=3, locked_until=timezone.now() - datetime.timedelta(seconds=1)
    )
    assert post_login(client, admin_a.email, DEFAULT_PASSWORD).status_code == 302
    admin_a.refresh_from_db()
    assert (admin_a.failed_logins, admin_a.lockouts, admin_a.locked_until) == (0, 0, None)


def test_unknown_emails_lock_like_real_accounts(client, db, fast_lockout):
    answers = [post_login(client, "ghost@alpha.test", "wrong").content.decode() for _ in range(4)]
    assert GENERIC in answers[0] and GENERIC in answers[1]
    assert "locked" in answers[2] and "locked" in answers[3]


def test_too_many_failures_from_one_address_throttle_every_account(client, admin_a, settings):
    settings.LOGIN_IP_MAX_FAILURES = 3
    settings.LOGIN_MAX_FAILURES = 100
    for index in range(3):
        post_login(client, f"someone{index}@alpha.test", "wrong")
    throttled = post_login(client, admin_a.email, DEFAULT_PASSWORD).content.decode()
    assert "Too many failed sign-in attempts from your network" in throttled
    assert "_auth_user_id" not in client.session
    # Another address is not affected.
    assert post_login(client, admin_a.email, DEFAULT_PASSWORD, ip="192.0.2.7").status_code == 302


def test_inactive_users_cannot_sign_in(client, db):
    user = UserFactory(email="gone@alpha.test", is_active=False)
    assert GENERIC in post_login(client, user.email, DEFAULT_PASSWORD).content.decode()


def test_signed_in_user_visiting_login_goes_home(admin_client):
    assert admin_client.get(LOGIN).url == reverse("ui:home")


def test_logout_is_post_only(admin_client):
    assert admin_client.get("/logout/").status_code == 405
    response = admin_client.post("/logout/")
    assert response.status_code == 302 and response.url == LOGIN
    assert "_auth_user_id" not in admin_client.session


def test_logout_needs_csrf(admin_a, db):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_a)
    assert client.post("/logout/").status_code == 403


def test_home_redirects_by_state(client, admin_a, org_a, org_b):
    assert client.get("/").url == LOGIN
    loner = UserFactory(email="loner@example.org")
    client.force_login(loner)
    assert client.get("/").url == reverse("ui:organisation-create")
    client.force_login(admin_a)
    assert client.get("/").url == f"/o/{org_a.account_id}/"
    # The organisation opened last is remembered.
    MembershipFactory(organisation=org_b, user=admin_a)
    client.get(f"/o/{org_b.account_id}/")
    assert client.get("/").url == f"/o/{org_b.account_id}/"
