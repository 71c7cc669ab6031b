"""End to end in a real browser against a real daphne server: a member of an organisation that requires 2FA
signs in with a password, is made to enrol an authenticator, saves the backup codes, creates an API token and
reads its secret once; the token then works against the v4 API."""

from __future__ import annotations

import base64
import json
import os
import re
import urllib.request
from pathlib import Path

import pytest
from django_otp.oath import totp

from controlplane.choices import AuditAction, Role
from controlplane.models import AuditEvent
from tests.factories import DEFAULT_PASSWORD, MembershipFactory, OrganisationFactory, UserFactory
from tests.live_server import daphne_server  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(os.environ.get("UI_SCREENSHOT_DIR", "/tmp/ui-screenshots"))


def current_totp(base32_secret: str) -> str:
    key = base64.b32decode(base32_secret.replace(" ", "").upper())
    return f"{totp(key):06d}"


@pytest.fixture
def enforced_member(transactional_db):
    organisation = OrganisationFactory(team_name="acme", display_name="Acme Corp", require_2fa=True)
    user = UserFactory(email="ops@acme.test", name="Olive Ops")
    MembershipFactory(organisation=organisation, user=user, role=Role.SUPER_ADMIN)
    return organisation, user


def test_password_then_forced_enrolment_then_api_token(enforced_member, daphne_server):  # noqa: F811
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's Chromium is not installed")
    organisation, user = enforced_member
    base = daphne_server.url
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            page.set_default_timeout(15_000)

            # Anonymous → sign-in page; the password alone does not reach the organisation.
            page.goto(base + "/")
            assert page.url.startswith(base + "/login/")
            page.fill("input[name=email]", user.email)
            page.fill("input[name=password]", DEFAULT_PASSWORD)
            page.click("button[type=submit]")

            # Forced enrolment: the key is on the page as text; compute the code like an authenticator app.
            page.wait_for_url(re.compile(r".*/account/two-factor/.*"))
            assert "requires" in page.inner_text(".alert-warning")
            assert page.locator(".qr svg").count() == 1
            page.screenshot(path=str(SCREENSHOTS / "enrol.png"), full_page=True)
            secret = page.get_attribute("#totp-secret", "data-secret")
            assert secret and secret.replace(" ", "") == page.inner_text("#totp-secret").replace(" ", "")
            page.fill("input[name=code]", current_totp(secret))
            page.click("form button[type=submit]:has-text('Turn on')")

            # Backup codes, shown once.
            page.wait_for_url(re.compile(r".*/account/two-factor/backup-codes/.*"))
            codes = page.locator("#backup-codes li").all_inner_texts()
            assert len(codes) == 10 and all(re.fullmatch(r"[a-z2-7]{4}-[a-z2-7]{4}", c.strip()) for c in codes)
            page.screenshot(path=str(SCREENSHOTS / "backup-codes.png"), full_page=True)
            page.click("text=I saved them, continue")

            # Now the organisation opens; create an API token through the permission matrix.
            page.wait_for_url(re.compile(rf".*/o/{organisation.account_id}/.*"))
            assert "Acme Corp" in page.inner_text("h1")
            page.click("nav.sidebar >> text=API tokens")
            page.click("text=Create token")
            page.fill("input[name=name]", "Terraform")
            page.check("input[name=perm_zones][value=edit]")
            page.check("input[name=perm_audit][value=read]")
            page.fill("input[name=expires_on]", "2099-12-31")
            page.screenshot(path=str(SCREENSHOTS / "token-create.png"), full_page=True)
            page.click("button[type=submit]:has-text('Create token')")

            page.wait_for_url(re.compile(r".*/tokens/[0-9a-f]{32}/created/"))
            raw = page.input_value("#token-secret")
            assert raw.startswith("zt_")
            page.screenshot(path=str(SCREENSHOTS / "token-created.png"), full_page=True)

            # Shown once: a reload no longer has it.
            page.reload()
            assert page.locator("#token-secret").count() == 0
            assert "cannot be shown again" in page.inner_text("main")

            page.goto(f"{base}/o/{organisation.account_id}/tokens/")
            assert "Terraform" in page.inner_text("table")
            page.screenshot(path=str(SCREENSHOTS / "tokens.png"), full_page=True)
        finally:
            browser.close()

    request = urllib.request.Request(f"{base}/client/v4/accounts", headers={"Authorization": f"Bearer {raw}"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        assert response.status == 200
        body = json.loads(response.read())
    assert body["success"] is True
    assert [account["id"] for account in body["result"]] == [organisation.account_id]

    # The sign-in completed with the second factor was recorded in the organisation's audit log.
    assert AuditEvent.objects.for_org(organisation).filter(action=AuditAction.LOGIN, actor_user=user).exists()
