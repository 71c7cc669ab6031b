"""The Access dashboard in a real browser against a real daphne: an admin of an organisation that requires 2FA
signs in (password, then a backup code), adds portainer.<zone> with the wizard and a new policy allowing one
email, then the policy tester says Allow for that email and Block for another. Screenshots at 1280 and 390 px."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from access.models import Application
from controlplane.actors import Actor
from controlplane.choices import Role
from controlplane.services.zones import zone_create, zone_mark_verified
from tests.browser.test_signin_2fa_token import CHROMIUM, CHROMIUM_ARGS
from tests.controlplane.ui.conftest import BACKUP_CODES, add_second_factor
from tests.factories import DEFAULT_PASSWORD, MembershipFactory, OrganisationFactory, UserFactory
from tests.live_server import daphne_server  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.slow, pytest.mark.browser]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-results" / "screenshots"


@pytest.fixture
def admin(transactional_db):
    organisation = OrganisationFactory(team_name="homelab", display_name="Home Lab", require_2fa=True)
    user = UserFactory(email="admin@homelab.test")
    MembershipFactory(organisation=organisation, user=user, role=Role.SUPER_ADMIN)
    add_second_factor(user)
    zone_mark_verified(
        zone=zone_create(organisation=organisation, name="example.com", actor=Actor.cli()), actor=Actor.cli()
    )
    return organisation, user


def shoot(page, name: str) -> None:
    for width, height in ((1280, 900), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        page.screenshot(path=str(SCREENSHOTS / f"access-{name}-{width}.png"), full_page=True)
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 1, f"{name} at {width}px scrolls sideways by {overflow}px"
    page.set_viewport_size({"width": 1280, "height": 900})


def test_add_an_application_with_the_wizard_then_test_its_policy(admin, daphne_server):  # noqa: F811
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's Chromium is not installed")
    organisation, user = admin
    base = daphne_server.url
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(15_000)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(base + "/login/")
            page.fill("input[name=email]", user.email)
            page.fill("input[name=password]", DEFAULT_PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(re.compile(r".*/login/verify/.*"))
            page.fill("input[name=code]", BACKUP_CODES[0])
            page.click("button[type=submit]:has-text('Verify')")
            page.wait_for_url(re.compile(rf".*/o/{organisation.account_id}/.*"))

            page.click("nav.sidebar >> text=Access")
            page.wait_for_url(re.compile(r".*/access/$"))
            page.wait_for_selector(".empty-state")
            assert "No applications yet" in page.inner_text("main")
            shoot(page, "empty")
            page.click("main a.btn:has-text('Add an application')")
            page.wait_for_url(re.compile(r".*/access/apps/new/"))
            # Only the first domain row shows; "Add another domain" reveals the next.
            assert page.locator("[data-destination-row]:visible").count() == 1
            page.click("[data-add-destination]")
            assert page.locator("[data-destination-row]:visible").count() == 2
            page.fill("input[name=name]", "Portainer")
            page.select_option("select[name=session_duration]", "168h")
            page.fill("input[name=dest_0_subdomain]", "portainer")
            page.select_option("select[name=dest_0_zone]", "example.com")
            page.check("text=One-time PIN")
            page.fill("input[name=policy_name]", "Only me")
            page.select_option("select[name=decision]", "allow")
            page.select_option("select[name=include_0_selector]", "email")
            page.fill("textarea[name=include_0_values]", "ana@example.com")
            shoot(page, "wizard")
            page.click("button:has-text('Add application')")
            page.wait_for_url(re.compile(r".*/access/apps/[0-9a-f]{32}/$"))
            assert "Application “Portainer” added." in page.inner_text(".messages")
            assert "portainer.example.com" in page.inner_text("main")
            shoot(page, "application")

            page.click(".access-tabs >> text=Policy tester")
            page.wait_for_url(re.compile(r".*/access/tester/$"))
            page.fill("input[name=email]", "ana@example.com")
            page.click("button:has-text('Test')")
            page.wait_for_url(re.compile(r".*email=ana.*"))
            row = page.locator("tr[data-app=Portainer]")
            assert row.locator("[data-decision]").inner_text() == "Allow"
            assert "Only me" in row.inner_text()
            shoot(page, "tester-allow")
            page.fill("input[name=email]", "eve@example.org")
            page.click("button:has-text('Test')")
            page.wait_for_url(re.compile(r".*email=eve.*"))
            decision = page.locator("tr[data-app=Portainer] [data-decision]").inner_text()
            assert decision.startswith("Block")
            shoot(page, "tester-block")

            # The other tabs render and fit a phone; a service token's secret is shown once with copy buttons.
            page.click(".access-tabs >> text=Service tokens")
            page.wait_for_url(re.compile(r".*/access/service-tokens/$"))
            page.fill("input[name=name]", "Backup job")
            page.click("button:has-text('Create service token')")
            page.wait_for_url(re.compile(r".*/created/$"))
            assert re.fullmatch(r"[0-9a-f]{64}", page.input_value("#client-secret"))
            shoot(page, "service-token-created")
            for tab, name in (("Policies", "policies"), ("Access log", "logs"), ("Settings", "settings")):
                page.click(f".access-tabs >> text={tab}")
                page.wait_for_selector(f".access-tab.active:has-text('{tab}')")
                shoot(page, name)
            assert errors == []
        finally:
            browser.close()
    app = Application.objects.for_org(organisation).get()
    assert app.destinations == [{"type": "public", "uri": "portainer.example.com"}] and app.session_duration == "168h"
