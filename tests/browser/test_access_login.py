"""The Access login page in a real browser, at phone width: the organisation's login design (colours, header and
footer text) applied with no CSP violation, the form usable by keyboard alone and labelled for a screen reader."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest

from access.services.applications import application_save
from access.services.policies import policy_save
from access.services.settings import access_settings_update
from controlplane.actors import Actor
from controlplane.services.zones import zone_create, zone_mark_verified
from tests.browser.test_csp import RECORD_VIOLATIONS
from tests.browser.test_signin_2fa_token import CHROMIUM, CHROMIUM_ARGS
from tests.factories import OrganisationFactory
from tests.live_server import run_daphne

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture
def designed_team(transactional_db):
    organisation = OrganisationFactory(team_name="alpha", display_name="Alpha", require_2fa=True)
    actor = Actor.cli()
    zone_mark_verified(zone=zone_create(organisation=organisation, name="example.com", actor=actor), actor=actor)
    policy = policy_save(
        organisation=organisation,
        actor=actor,
        data={"name": "Me", "decision": "allow", "include": [{"email": {"email": "ana@example.com"}}]},
    )
    application_save(
        organisation=organisation,
        actor=actor,
        data={"name": "Portainer", "domain": "portainer.example.com", "policies": [str(policy.pk)]},
    )
    access_settings_update(
        organisation=organisation,
        actor=actor,
        data={
            "login_design": {
                "background_color": "#112233",
                "text_color": "#fafafa",
                "header_text": "Alpha internal tools",
                "footer_text": "Trouble signing in? it@example.com",
            }
        },
    )
    return organisation


def test_the_login_page_wears_the_design_and_works_by_keyboard_at_phone_width(designed_team, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's Chromium is not installed")
    args = [*CHROMIUM_ARGS, "--host-resolver-rules=MAP *.localhost 127.0.0.1"]
    with (
        run_daphne(env={"EMAIL_URL": "", "REDIS_URL": ""}, log_dir=str(tmp_path)) as server,
        sync_api.sync_playwright() as playwright,
    ):
        target = quote("http://portainer.example.com/dashboard", safe="")
        url = f"http://alpha.access.localhost:{server.port}/cdn-cgi/access/login/portainer.example.com?redirect_url={target}"
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            page = browser.new_page(viewport={"width": 360, "height": 740})
            page.set_default_timeout(15_000)
            page.add_init_script(RECORD_VIOLATIONS)
            page.goto(url)
            assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(17, 34, 51)"
            header = page.locator("header.page-text")
            assert header.inner_text() == "Alpha internal tools"
            assert header.evaluate("e => getComputedStyle(e).color") == "rgb(250, 250, 250)"
            assert page.locator("footer.page-text").inner_text() == "Trouble signing in? it@example.com"
            assert page.evaluate("document.documentElement.scrollWidth") <= 360  # nothing wider than the phone
            # Keyboard only: the email field has the focus and its label; Enter sends the form.
            assert page.evaluate("document.activeElement.id") == "email"
            assert page.get_by_label("Email").count() == 1
            page.keyboard.type("ana@example.com")
            page.keyboard.press("Enter")
            page.get_by_role("status").wait_for()
            assert "A code has been emailed" in page.get_by_role("status").inner_text()
            assert page.evaluate("document.activeElement.id") == "code" and page.get_by_label("Login code").count() == 1
            assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(17, 34, 51)"
            assert page.evaluate("window.__cspViolations") == []
        finally:
            browser.close()
