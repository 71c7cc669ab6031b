"""The second factor: verifying at sign-in (TOTP or a backup code), enrolment, backup codes, removal, and the
enrolment forced by organisations that require 2FA."""

from __future__ import annotations

import base64
import re

import pytest
from django.urls import reverse
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import totp
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from controlplane.choices import AuditAction
from controlplane.models import AuditEvent, Organisation
from tests.controlplane.ui.conftest import BACKUP_CODES, add_second_factor, sign_in, totp_code
from tests.factories import DEFAULT_PASSWORD

VERIFY = "/login/verify/"
ENROL = "/account/two-factor/"


def password_step(client, user, **fields):
    return client.post("/login/", {"email": user.email, "password": DEFAULT_PASSWORD, **fields})


@pytest.fixture
def strict_org(org_a):
    Organisation.objects.filter(pk=org_a.pk).update(require_2fa=True)
    org_a.refresh_from_db()
    return org_a


# --- sign-in with a second factor --------------------------------------------------------------------------------


def test_a_user_with_a_device_is_asked_for_a_code_before_being_signed_in(client, admin_a, org_a):
    add_second_factor(admin_a)
    response = password_step(client, admin_a, next=f"/o/{org_a.account_id}/zones/")
    assert response.url == VERIFY
    assert "_auth_user_id" not in client.session
    page = client.get(VERIFY)
    assert page.status_code == 200 and admin_a.email in page.content.decode()
    assert not AuditEvent.objects.for_org(org_a).filter(action=AuditAction.LOGIN).exists()


def test_totp_code_completes_sign_in_verified_and_follows_next(client, admin_a, org_a):
    device = add_second_factor(admin_a)
    password_step(client, admin_a, next=f"/o/{org_a.account_id}/zones/")
    response = client.post(VERIFY, {"code": totp_code(device)})
    assert response.status_code == 302 and response.url == f"/o/{org_a.account_id}/zones/"
    assert client.session["_auth_user_id"] == str(admin_a.pk)
    assert client.session[DEVICE_ID_SESSION_KEY] == device.persistent_id
    event = AuditEvent.objects.for_org(org_a).get(action=AuditAction.LOGIN)
    assert event.changes == {"method": "password+totp"}


def test_backup_code_works_once_with_dashes_and_spaces(client, admin_a, org_a):
    add_second_factor(admin_a)
    password_step(client, admin_a)
    code = BACKUP_CODES[0]
    response = client.post(VERIFY, {"code": f" {code[:4].upper()}-{code[4:]} "})
    assert response.status_code == 302
    assert client.session[DEVICE_ID_SESSION_KEY].startswith("otp_static.")
    assert not StaticToken.objects.filter(token=code).exists()
    assert AuditEvent.objects.for_org(org_a).get(action=AuditAction.LOGIN).changes == {"method": "password+backup code"}
    client.logout()
    password_step(client, admin_a)
    again = client.post(VERIFY, {"code": code})
    assert again.status_code == 200 and "not valid" in again.content.decode()


def test_wrong_code_is_an_inline_error_and_counts_as_a_failure(client, admin_a):
    add_second_factor(admin_a)
    password_step(client, admin_a)
    response = client.post(VERIFY, {"code": "000000"})
    assert response.status_code == 200
    assert "That code is not valid" in response.content.decode()
    assert "or an unused backup code" in response.content.decode()
    assert "_auth_user_id" not in client.session
    admin_a.refresh_from_db()
    assert admin_a.failed_logins == 1


def test_wrong_code_suggests_backup_codes_only_while_some_are_left(client, admin_a):
    add_second_factor(admin_a)
    StaticToken.objects.filter(device__user=admin_a).delete()  # every backup code used
    password_step(client, admin_a)
    response = client.post(VERIFY, {"code": "000000"})
    assert "That code is not valid" in response.content.decode()
    assert "backup code." not in response.content.decode()


def test_repeated_wrong_codes_are_throttled_then_lock_the_account(client, admin_a, settings):
    settings.LOGIN_MAX_FAILURES = 3
    device = add_second_factor(admin_a)
    password_step(client, admin_a)
    client.post(VERIFY, {"code": "000000"})
    throttled = client.post(VERIFY, {"code": totp_code(device)})  # right code, but too soon after a wrong one
    assert "Too many wrong codes" in throttled.content.decode()
    TOTPDevice.objects.filter(pk=device.pk).update(throttling_failure_timestamp=None, throttling_failure_count=0)
    client.post(VERIFY, {"code": "000000"})
    TOTPDevice.objects.filter(pk=device.pk).update(throttling_failure_timestamp=None, throttling_failure_count=0)
    locked = client.post(VERIFY, {"code": "000000"}, follow=True)
    assert locked.redirect_chain[-1][0] == "/login/"
    assert "locked" in locked.content.decode()
    admin_a.refresh_from_db()
    assert admin_a.locked_until is not None


def test_verify_without_a_pending_sign_in_goes_back_to_login(client, db):
    assert client.get(VERIFY).url == "/login/"


def test_pending_sign_in_expires(client, admin_a, monkeypatch):
    add_second_factor(admin_a)
    password_step(client, admin_a)
    session = client.session
    session["ui_pending_since"] -= 3600
    session.save()
    assert client.get(VERIFY).url == "/login/"


# --- forced enrolment --------------------------------------------------------------------------------------------


def test_org_requiring_2fa_forces_enrolment_on_every_page_but_not_enrolment_or_logout(client, admin_a, strict_org):
    password_step(client, admin_a)
    assert client.session["_auth_user_id"] == str(admin_a.pk)
    for path in [
        "/",
        f"/o/{strict_org.account_id}/",
        f"/o/{strict_org.account_id}/tokens/",
        "/account/",
        "/organisations/new/",
    ]:
        response = client.get(path, follow=True)
        assert response.redirect_chain[-1][0].startswith(ENROL), path
    page = client.get(ENROL)
    assert page.status_code == 200 and "Alpha" in page.content.decode()
    assert client.post(f"/o/{strict_org.account_id}/zones/", {"name": "example.com"}).url.startswith(ENROL)
    assert client.post("/logout/").url == "/login/"


def test_member_of_another_strict_org_is_forced_even_on_a_relaxed_org(client, admin_a, org_a, org_b):
    from tests.factories import MembershipFactory

    Organisation.objects.filter(pk=org_b.pk).update(require_2fa=True)
    MembershipFactory(organisation=org_b, user=admin_a)
    sign_in(client, admin_a)
    assert client.get(f"/o/{org_a.account_id}/").url.startswith(ENROL)


def test_enrolment_confirms_with_the_typed_secret_and_shows_backup_codes_once(client, admin_a, strict_org):
    sign_in(client, admin_a)
    page = client.get(ENROL).content.decode()
    assert "<svg" in page and "http" not in re.search(r"<svg.*?</svg>", page, re.S).group(0).replace(
        "http://www.w3.org", ""
    )
    secret = re.search(r'data-secret="([A-Z2-7]+)"', page).group(1)
    assert client.get(ENROL).content.decode().count(secret) >= 1  # the same key across page loads
    wrong = client.post(ENROL, {"code": "123456"})
    assert "That code is not valid" in wrong.content.decode()
    # No backup code exists yet, nor would one be accepted here: the error does not suggest one.
    assert "backup code." not in wrong.content.decode()
    assert "Enter the 6-digit code your app shows now" in wrong.content.decode()
    TOTPDevice.objects.filter(user=admin_a).update(throttling_failure_timestamp=None, throttling_failure_count=0)

    code = f"{totp(base64.b32decode(secret)):06d}"
    response = client.post(ENROL, {"code": code, "next": f"/o/{strict_org.account_id}/"})
    assert response.status_code == 302 and response.url.startswith("/account/two-factor/backup-codes/")
    assert client.session.get(DEVICE_ID_SESSION_KEY, "").startswith("otp_totp.")

    codes_page = client.get(response.url).content.decode()
    codes = re.findall(r"<li><code>([a-z2-7]{4}-[a-z2-7]{4})</code></li>", codes_page)
    assert len(codes) == 10
    assert f'href="/o/{strict_org.account_id}/"' in codes_page
    assert "shown only when they are made" in client.get("/account/two-factor/backup-codes/").content.decode()
    assert client.get(f"/o/{strict_org.account_id}/").status_code == 200
    event = AuditEvent.objects.for_org(strict_org).get(action=AuditAction.UPDATE, resource_type="user")
    assert event.changes == {"two_factor": [False, True]}

    # The next sign-in asks for a code; a backup code shown above works.
    client.post("/logout/")
    password_step(client, admin_a)
    assert client.post(VERIFY, {"code": codes[3]}).status_code == 302


def test_signed_in_but_unverified_user_with_a_device_is_sent_to_verify(client, admin_a, strict_org):
    device = add_second_factor(admin_a)
    sign_in(client, admin_a)  # e.g. the device was set up from another session
    response = client.get(f"/o/{strict_org.account_id}/members/")
    assert response.url.startswith(VERIFY)
    assert client.post(VERIFY + "?next=/account/", {"code": totp_code(device)}).url == "/account/"
    assert client.get(f"/o/{strict_org.account_id}/members/").status_code == 200


def test_regenerating_backup_codes_replaces_them(client, admin_a, org_a):
    device = add_second_factor(admin_a)
    sign_in(client, admin_a, device=device)
    response = client.post("/account/two-factor/backup-codes/")
    assert response.url == "/account/two-factor/backup-codes/"
    codes = re.findall(r"<li><code>([a-z2-7]{4}-[a-z2-7]{4})</code></li>", client.get(response.url).content.decode())
    assert len(codes) == 10
    assert not StaticToken.objects.filter(token__in=BACKUP_CODES).exists()
    assert AuditEvent.objects.for_org(org_a).filter(action=AuditAction.ROTATE, resource_type="user").exists()


def test_two_factor_pages_need_a_verified_session(client, admin_a):
    add_second_factor(admin_a)
    sign_in(client, admin_a)
    assert client.get("/account/two-factor/backup-codes/").url.startswith(VERIFY)
    assert client.post("/account/two-factor/backup-codes/").url.startswith(VERIFY)
    assert client.post("/account/two-factor/remove/", {"remove-code": BACKUP_CODES[0]}).url.startswith(VERIFY)


def test_removing_2fa_needs_the_current_code(client, admin_a, org_a):
    device = add_second_factor(admin_a)
    sign_in(client, admin_a, device=device)
    wrong = client.post("/account/two-factor/remove/", {"remove-code": "000000"})
    assert wrong.status_code == 200 and "That code is not valid" in wrong.content.decode()
    TOTPDevice.objects.filter(pk=device.pk).update(throttling_failure_timestamp=None, throttling_failure_count=0)
    response = client.post("/account/two-factor/remove/", {"remove-code": totp_code(device)})
    assert response.url == "/account/"
    assert not TOTPDevice.objects.filter(user=admin_a).exists()
    assert not StaticToken.objects.filter(device__user=admin_a).exists()


def test_removing_2fa_is_refused_while_an_organisation_requires_it(client, admin_a, strict_org):
    device = add_second_factor(admin_a)
    sign_in(client, admin_a, device=device)
    page = client.get(ENROL).content.decode()
    assert "You cannot turn it off" in page
    response = client.post("/account/two-factor/remove/", {"remove-code": totp_code(device)})
    assert response.status_code == 200 and "You cannot turn it off" in response.content.decode()
    assert TOTPDevice.objects.filter(user=admin_a).exists()


def test_second_factor_required_from_access_resolution_becomes_a_redirect_not_a_500(client, admin_a, org_a):
    """Even if the up-front check were bypassed, the org mixin turns SecondFactorRequired into the enrolment."""
    from controlplane.ui import mixins

    sign_in(client, admin_a)
    Organisation.objects.filter(pk=org_a.pk).update(require_2fa=True)
    original = mixins.second_factor_redirect
    calls = []

    def first_call_lets_through(request, **kwargs):
        calls.append(1)
        return None if len(calls) == 1 else original(request, **kwargs)

    mixins.second_factor_redirect = first_call_lets_through
    try:
        response = client.get(f"/o/{org_a.account_id}/")
    finally:
        mixins.second_factor_redirect = original
    assert response.status_code == 302 and response.url.startswith(ENROL)


def test_enrolment_page_for_anonymous_goes_to_login(client, db):
    response = client.get(ENROL)
    assert response.status_code == 302 and response.url.startswith(reverse("ui:login"))
