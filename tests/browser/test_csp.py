"""The Content-Security-Policy holds in a real browser: a member of an organisation requiring 2FA signs in and walks
the main pages (live-status websocket included) and the API docs; the browser reports no policy violation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from controlplane.actors import Actor
from controlplane.choices import Role
from controlplane.services.zones import zone_create
from tests.browser.test_signin_2fa_token import CHROMIUM, CHROMIUM_ARGS
from tests.factories import DEFAULT_PASSWORD, MembershipFactory, OrganisationFactory, UserFactory
from tests.live_server import daphne_server  # noqa: F401  (the fixture)
from tunnels.services import tunnel_create

pytestmark = [pytest.mark.slow, pytest.mark.browser]

# Reported in the page itself, so a violation on any page is seen even if the console message is missed.
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolations.push(e.violatedDirective + " blocked " + (e.blockedURI || "inline") + " at " + e.sourceFile
    + ":" + e.lineNumber);
});
"""


@pytest.fixture
def member_with_2fa(transactional_db):
    organisation = OrganisationFactory(team_name="acme", display_name="Acme Corp", require_2fa=True)
    user = UserFactory(email="ops@acme.test")
    MembershipFactory(organisation=organisation, user=user, role=Role.SUPER_ADMIN)
    device = TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)
    zone_create(organisation=organisation, name="example.com", actor=Actor.cli())
    tunnel = tunnel_create(organisation=organisation, name="home-lab", actor=Actor.cli())
    return organisation, user, device, tunnel


def test_main_pages_raise_no_csp_violation(member_with_2fa, daphne_server):  # noqa: F811
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's Chromium is not installed")
    organisation, user, device, tunnel = member_with_2fa
    base = daphne_server.url
    org = f"{base}/o/{organisation.account_id}"
    pages = [
        f"{org}/",
        f"{org}/tunnels/",
        f"{org}/tunnels/{tunnel.id.hex}/",
        f"{org}/tunnels/{tunnel.id.hex}/hostnames/new/",
        f"{org}/tunnels/notifications/",
        f"{org}/connectors/",
        f"{org}/zones/",
        f"{org}/members/",
        f"{org}/tokens/",
        f"{org}/tokens/new/",
        f"{org}/audit/",
        f"{org}/outbox/",
        f"{org}/settings/",
        f"{base}/account/",
        f"{base}/account/two-factor/",
        f"{base}/organisations/new/",
        f"{base}/no-such-page/",
        f"{base}/docs/api/",
    ]
    console_violations: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            page.set_default_timeout(15_000)
            page.add_init_script(RECORD_VIOLATIONS)
            page.on(
                "console",
                lambda message: (
                    console_violations.append(f"{page.url}: {message.text}")
                    if "Content Security Policy" in message.text
                    else None
                ),
            )
            page.goto(base + "/login/")
            page.fill("input[name=email]", user.email)
            page.fill("input[name=password]", DEFAULT_PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(re.compile(r".*/login/verify/.*"))
            page.fill("input[name=code]", f"{totp(device.bin_key):06d}")
            page.click("button[type=submit]")
            page.wait_for_url(re.compile(rf".*/o/{organisation.account_id}/.*"))

            seen: dict[str, list[str]] = {}
            for url in pages:
                page.goto(url)
                page.wait_for_load_state("networkidle") if "/tunnels/" not in url else page.wait_for_timeout(1000)
                seen[url] = page.evaluate("window.__cspViolations")
            # The scripts really ran: the live-status socket connected, Swagger UI rendered the operations.
            page.goto(f"{org}/tunnels/{tunnel.id.hex}/")
            page.wait_for_selector("[data-live-indicator].live-ok")
            page.goto(f"{base}/docs/api/")
            page.wait_for_selector(".opblock", timeout=30_000)
            seen["docs rendered"] = page.evaluate("window.__cspViolations")
        finally:
            browser.close()
    assert {url: found for url, found in seen.items() if found} == {}
    assert console_violations == []
