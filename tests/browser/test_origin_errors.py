"""The error-page split in a real browser against a real daphne and a real connector: a visitor whose origin is
down gets a page with the status, a plain sentence and the request id, and nothing of the origin; an admin of
the organisation (2FA required, the product's default; signed in with password and code) finds that request id
on the tunnel's page with the cause. Screenshots go to test-results/screenshots/."""

from __future__ import annotations

import contextlib
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from controlplane.actors import Actor
from controlplane.choices import Role
from controlplane.services.zones import zone_create, zone_mark_verified
from tests.browser.test_signin_2fa_token import CHROMIUM, CHROMIUM_ARGS
from tests.factories import DEFAULT_PASSWORD, MembershipFactory, OrganisationFactory, UserFactory
from tests.live_server import daphne_server, free_port, start_connector  # noqa: F401  (the fixture)
from tunnels.services import tunnel_config_update, tunnel_create, tunnel_token

pytestmark = [pytest.mark.slow, pytest.mark.browser]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-results" / "screenshots"
HOST = "app.example.com"


@pytest.fixture
def broken_site(transactional_db):
    """Org "lab" (2FA required) with an admin who has an authenticator, and a tunnel routing app.example.com to a
    port where nothing listens."""
    organisation = OrganisationFactory(team_name="lab", display_name="Lab", require_2fa=True)
    user = UserFactory(email="admin@lab.test")
    MembershipFactory(organisation=organisation, user=user, role=Role.SUPER_ADMIN)
    device = TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)
    zone = zone_create(organisation=organisation, name="example.com", actor=Actor.cli())
    zone_mark_verified(zone=zone, actor=Actor.cli())
    tunnel = tunnel_create(organisation=organisation, name="home-lab", actor=Actor.cli())
    closed = free_port()
    config = {"ingress": [{"hostname": HOST, "service": f"http://127.0.0.1:{closed}"}, {"service": "http_status:404"}]}
    tunnel_config_update(tunnel=tunnel, config=config, actor=Actor.cli())
    return organisation, user, device, tunnel, closed


def visit_status(base: str) -> int:
    return visit(base)[0]


def visit(base: str, path: str = "/") -> tuple[int, str]:
    """A visitor's request through the edge: its status and request id (cf-ray)."""
    request = urllib.request.Request(base + path, headers={"Host": HOST})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, response.headers.get("cf-ray", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("cf-ray", "")


def section_screenshot(page, name: str) -> None:
    """The origin errors card alone, from a full-page capture (an element capture scrolls it under the sticky
    top bar)."""
    page.evaluate("window.scrollTo(0, 0)")
    box = page.locator("#origin-errors").bounding_box()
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True, clip=box)


def test_the_visitor_sees_the_request_id_and_the_admin_sees_the_cause(broken_site, daphne_server, tmp_path):  # noqa: F811
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's Chromium is not installed")
    organisation, user, device, tunnel, closed = broken_site
    base = daphne_server.url
    port = base.rsplit(":", 1)[1]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    connector = start_connector(tunnel_token(tunnel), base, tmp_path / "connector.log", ha_connections=1)
    try:
        deadline = time.monotonic() + 20
        while visit_status(base) != 502:  # 530 until the connector is connected
            assert time.monotonic() < deadline, "the connector did not connect"
            time.sleep(0.2)
        with sync_api.sync_playwright() as playwright:
            # The visitor's browser resolves the public hostname to this machine, as DNS would to the edge.
            args = [*CHROMIUM_ARGS, f"--host-resolver-rules=MAP {HOST} 127.0.0.1"]
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
            try:
                visitor = browser.new_page(viewport={"width": 1280, "height": 800})
                answer = visitor.goto(f"http://{HOST}:{port}/account?next=/")
                assert answer is not None and answer.status == 502
                text = visitor.inner_text("main")
                request_id = answer.headers["cf-ray"]
                assert request_id in text and "Error 502" in text
                for internal in ("127.0.0.1", str(closed), "refused", "ingress", "noTLSVerify"):
                    assert internal not in text, (internal, text)
                visitor.screenshot(path=str(SCREENSHOTS / "origin-error-visitor.png"), full_page=True)

                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.set_default_timeout(15_000)
                page.goto(base + "/login/")
                page.fill("input[name=email]", user.email)
                page.fill("input[name=password]", DEFAULT_PASSWORD)
                page.click("button[type=submit]")
                page.wait_for_url(re.compile(r".*/login/verify/.*"))
                page.fill("input[name=code]", f"{totp(device.bin_key):06d}")
                page.click("button[type=submit]")
                page.wait_for_url(re.compile(rf".*/o/{organisation.account_id}/.*"))

                page.goto(f"{base}/o/{organisation.account_id}/tunnels/{tunnel.id.hex}/")
                page.wait_for_selector("[data-live-indicator].live-ok")
                # Written within a second, off the request path; the open page lists it by itself, no reload.
                page.wait_for_selector(f"#origin-errors tr[data-request-id='{request_id}']", timeout=10_000)
                status, later = visit(base, "/later")
                assert status == 502 and later != request_id
                page.wait_for_selector(f"#origin-errors tr[data-request-id='{later}']", timeout=10_000)
                assert page.locator("#origin-errors tbody tr").first.get_attribute("data-request-id") == later
                assert "/later" in page.locator("#origin-errors tbody tr").first.inner_text()
                page.fill("#origin-error-request-id", request_id)
                page.click("#origin-errors button:has-text('Find')")
                page.wait_for_url(re.compile(r".*request_id=.*"))
                page.wait_for_selector("[data-live-indicator].live-ok")
                found = page.locator("#origin-errors tbody tr")
                assert found.count() == 1
                # While a search is shown, new errors that do not match it stay off the list.
                assert visit(base, "/unrelated")[0] == 502
                page.wait_for_timeout(2500)
                assert found.count() == 1
                row = found.first.inner_text()
                assert request_id in row and "502" in row and HOST in row and "/account" in row
                assert f"127.0.0.1:{closed}" in row and "refused" in row
                page.screenshot(path=str(SCREENSHOTS / "origin-error-admin.png"), full_page=True)
                section_screenshot(page, "origin-error-admin-detail.png")
                page.set_viewport_size({"width": 390, "height": 844})
                section_screenshot(page, "origin-error-admin-390.png")
            finally:
                browser.close()
    finally:
        connector.terminate()
        with contextlib.suppress(Exception):
            connector.wait(10)
    log = (tmp_path / "connector.log").read_text()
    assert any(f"cf-ray={request_id}" in line and "refused" in line for line in log.splitlines()), log[-3000:]
