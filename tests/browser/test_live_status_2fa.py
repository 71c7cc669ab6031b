"""The live status pages with the product's defaults (the organisation requires 2FA), in Chromium against a real
daphne and a real connector: a member who signs in and enrols as a person does sees a connector turn Connected and
then Down without a reload; a page whose feed is down greys its status ("status unknown — reconnecting") and stops
its uptimes; a page whose feed the server refuses says why, with a link to fix it.

Screenshots go to test-results/screenshots/ (UI_SCREENSHOT_DIR to change it)."""

from __future__ import annotations

import base64
import concurrent.futures
import os
import re
import signal
from pathlib import Path
from urllib.parse import quote

import pytest
from django.urls import reverse
from django_otp.plugins.otp_totp.models import TOTPDevice

from controlplane.actors import Actor
from controlplane.choices import Role
from edge.errors import OriginErrorRecorder, write_batch
from tests.browser.test_signin_2fa_token import CHROMIUM, CHROMIUM_ARGS, current_totp
from tests.factories import DEFAULT_PASSWORD, MembershipFactory, OrganisationFactory, UserFactory
from tests.live_server import daphne_server, free_port, run_daphne, start_connector  # noqa: F401  (the fixture)
from tunnels.services import tunnel_create, tunnel_token

pytestmark = [pytest.mark.slow, pytest.mark.browser]

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(os.environ.get("UI_SCREENSHOT_DIR", REPO / "test-results" / "screenshots"))
UNKNOWN = "status unknown — reconnecting"


@pytest.fixture
def lab(transactional_db):
    """An organisation with the defaults (2FA required), its super admin and one tunnel."""
    organisation = OrganisationFactory(team_name="lab", display_name="Lab")
    organisation.require_2fa = True  # the product's default (the factory turns it off)
    organisation.save(update_fields=["require_2fa"])
    user = UserFactory(email="ops@lab.test")
    MembershipFactory(organisation=organisation, user=user, role=Role.SUPER_ADMIN)
    tunnel = tunnel_create(organisation=organisation, name="home-lab", actor=Actor(user=user))
    return organisation, user, tunnel


@pytest.fixture
def authenticator(lab) -> str:
    """The lab user's authenticator app, already set up: its base32 key."""
    device = TOTPDevice.objects.create(user=lab[1], name="Authenticator app", confirmed=True)
    return base64.b32encode(device.bin_key).decode()


@pytest.fixture
def chromium():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's Chromium is not installed")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def tunnel_path(organisation, tunnel) -> str:
    return reverse("ui:tunnel", args=[organisation.account_id, tunnel.id.hex])


def sign_in_with_authenticator(page, base: str, user, secret: str, next_path: str) -> None:
    """Password, then the code the user's authenticator app (holding the base32 `secret`) shows."""
    page.goto(base + next_path)
    page.wait_for_url(re.compile(r".*/login/.*"))
    page.fill("input[name=email]", user.email)
    page.fill("input[name=password]", DEFAULT_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/login/verify/.*"))
    page.fill("input[name=code]", current_totp(secret))
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(re.escape(next_path) + "$"))


def badge(page, scope: str = "[data-tunnel-status]") -> str:
    return page.get_attribute(f"{scope} .badge", "data-status") or ""


def test_enrol_then_see_a_connector_connect_and_die_without_reload(lab, daphne_server, chromium, tmp_path):  # noqa: F811
    organisation, user, tunnel = lab
    base = daphne_server.url
    token = tunnel_token(tunnel)
    path = tunnel_path(organisation, tunnel)
    connector = None
    page = chromium.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.set_default_timeout(15_000)
    try:
        # A new member: password, then the enrolment the organisation requires, computing the code from the key
        # shown on the page as an authenticator app does.
        page.goto(base + path)
        page.fill("input[name=email]", user.email)
        page.fill("input[name=password]", DEFAULT_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r".*/account/two-factor/.*"))
        secret = page.get_attribute("#totp-secret", "data-secret")
        page.fill("input[name=code]", current_totp(secret))
        page.click("form button[type=submit]:has-text('Turn on')")
        page.wait_for_url(re.compile(r".*/account/two-factor/backup-codes/.*"))
        page.click("text=I saved them, continue")
        page.wait_for_url(re.compile(re.escape(path) + "$"))

        # The feed is accepted (it was refused with 4404 before the fix) and vouches for "Inactive".
        page.wait_for_selector("[data-live-indicator].live-ok")
        assert page.inner_text("[data-live-indicator]") == "live"
        assert badge(page) == "inactive"

        connector = start_connector(token, base, tmp_path / "connector.log")
        page.wait_for_selector("[data-tunnel-status] .badge[data-status=healthy]", timeout=20_000)
        row = page.locator("[data-tunnel-connectors] tr[data-connector]")
        assert "Connected" in row.inner_text() and "2 of 2" in row.inner_text()
        page.screenshot(path=str(SCREENSHOTS / "live-2fa-tunnel-connected.png"), full_page=True)

        # The connector status page, in another tab of the same session, follows the same feed.
        status_page = page.context.new_page()
        status_page.set_default_timeout(15_000)
        status_page.goto(base + reverse("ui:connectors", args=[organisation.account_id]))
        status_page.wait_for_selector("[data-live-indicator].live-ok")
        card = f"[data-tunnel-card='{tunnel.id}']"
        assert badge(status_page, card) == "healthy"
        assert "Connected" in status_page.inner_text(card)

        # Killed outright (no goodbye): both pages turn Down by themselves.
        connector.send_signal(signal.SIGKILL)
        connector.wait(10)
        page.wait_for_selector("[data-tunnel-status] .badge[data-status=down]", timeout=20_000)
        status_page.wait_for_selector(f"{card} .badge[data-status=down]", timeout=20_000)
        assert page.locator("[data-tunnel-connectors] tr[data-connector]").count() == 0
        page.screenshot(path=str(SCREENSHOTS / "live-2fa-tunnel-down.png"), full_page=True)
        status_page.screenshot(path=str(SCREENSHOTS / "live-2fa-connectors-down.png"), full_page=True)
    finally:
        if connector is not None and connector.poll() is None:
            connector.kill()
            connector.wait(10)
        print((tmp_path / "connector.log").read_text(errors="replace")[-4000:] if connector else "")


def test_a_feed_that_is_down_greys_the_page_and_a_refused_one_says_why(lab, authenticator, chromium, tmp_path):
    organisation, user, tunnel = lab
    secret = authenticator
    token = tunnel_token(tunnel)
    path = tunnel_path(organisation, tunnel)
    earlier = OriginErrorRecorder()  # an origin error the edge recorded before the page was opened
    earlier.record(
        organisation_id=organisation.pk,
        tunnel_id=tunnel.pk,
        request_id="0123456789abcdef-lab",
        hostname="app.example.com",
        status=502,
        reason="connection refused by 127.0.0.1:9",
    )
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # off Playwright's event loop (Django's ORM is sync)
        pool.submit(write_batch, earlier.take(), "test").result()
    port = free_port()
    env = {"LIVE_STATUS_RECHECK_SECONDS": "1"}
    server = run_daphne(port=port, env=env)
    live = server.__enter__()
    base = live.url
    connector = None
    page = chromium.new_context(viewport={"width": 390, "height": 844}).new_page()
    page.set_default_timeout(15_000)
    try:
        sign_in_with_authenticator(page, base, user, secret, path)
        page.wait_for_selector("[data-live-indicator].live-ok")
        connector = start_connector(token, base, tmp_path / "connector.log", ha_connections=1)
        page.wait_for_selector("[data-tunnel-status] .badge[data-status=healthy]", timeout=20_000)

        # The server goes away: within seconds nothing on the page claims "Healthy" or "Connected", and the uptime
        # stops counting.
        server.__exit__(None, None, None)
        server = None
        page.wait_for_selector("[data-tunnel-status] .badge[data-status=unknown]", timeout=10_000)
        assert page.inner_text("[data-live-indicator]") == UNKNOWN
        row = page.locator("[data-tunnel-connectors] tr[data-connector]")
        assert "Connected" not in row.inner_text() and "Unknown" in row.inner_text()
        assert "Last known: Healthy" in page.get_attribute("[data-tunnel-status] .badge", "title")
        assert page.inner_text("[data-tunnel-explanation]").startswith("Last known: ")
        errors = page.locator("[data-origin-errors]")  # the recent origin errors are live state too
        assert errors.is_visible() and "0123456789abcdef-lab" in errors.inner_text()
        assert "stale" in errors.get_attribute("class") and "Last known" in errors.get_attribute("title")
        uptime = row.locator("td[data-since]")
        frozen = uptime.inner_text()
        page.wait_for_timeout(2500)
        assert uptime.inner_text() == frozen
        page.screenshot(path=str(SCREENSHOTS / "live-status-unknown.png"), full_page=True)

        # Back on the same address: the page catches up by itself (the connector reconnects too).
        server = run_daphne(port=port, env=env)
        live = server.__enter__()
        page.wait_for_selector("[data-live-indicator].live-ok", timeout=30_000)
        assert badge(page) != "unknown"
        assert "stale" not in (errors.get_attribute("class") or "")
        page.wait_for_selector("[data-tunnel-status] .badge[data-status=healthy]", timeout=30_000)

        # Signed out in another tab: the open feed is closed within a recheck, and the page says why and how.
        other = page.context.new_page()
        other.goto(base + reverse("ui:account"))
        other.click("summary[aria-label='Your account']")
        other.click("button:has-text('Sign out')")
        other.wait_for_url(re.compile(r".*/login/.*"))
        notice = page.wait_for_selector("[data-live-notice][data-code='4401']", timeout=10_000)
        assert "You are signed out." in notice.inner_text()
        assert badge(page) == "unknown"
        fix = page.locator("[data-live-fix]")
        assert fix.inner_text() == "Sign in"
        assert fix.get_attribute("href") == "/login/?next=" + quote(path, safe="")
        page.screenshot(path=str(SCREENSHOTS / "live-status-signed-out.png"), full_page=True)
        fix.click()
        page.wait_for_url(re.compile(r".*/login/\?next=.*"))
        assert page.locator("input[name=password]").count() == 1
    finally:
        if connector is not None and connector.poll() is None:
            connector.kill()
            connector.wait(10)
        if server is not None:
            print(f"--- daphne log ---\n{live.log_text()[-8000:]}")
            server.__exit__(None, None, None)
