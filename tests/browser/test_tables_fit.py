"""Every table fits its card or scrolls visibly inside it, at a laptop's 1280 px and a phone's 390 px: the tunnel
page (connectors, public hostnames), the connector status page, the tunnel list, the audit log and the overview,
with a real connector connected, signed in with two-factor authentication as the product requires by default.
Screenshots go to test-results/screenshots/<page>-<width>.png."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from controlplane.actors import Actor
from controlplane.choices import Role
from controlplane.services.zones import zone_create, zone_mark_verified
from tests.browser.test_signin_2fa_token import CHROMIUM, CHROMIUM_ARGS
from tests.controlplane.ui.conftest import add_second_factor, totp_code
from tests.factories import DEFAULT_PASSWORD, MembershipFactory, OrganisationFactory, UserFactory
from tests.live_server import daphne_server  # noqa: F401  (the fixture)
from tunnels.models import Connector
from tunnels.services import public_hostname_save, tunnel_create, tunnel_token

pytestmark = [pytest.mark.slow, pytest.mark.browser]

SCREENSHOTS = Path("test-results/screenshots")
WIDTHS = (1280, 390)

# Every table on the page: it fits inside its card, or its nearest horizontally scrollable ancestor (inside the
# card) really scrolls and shows a scrollbar. And the page itself never scrolls sideways.
CLIPPED_TABLES = """
() => {
  const problems = [];
  const root = document.documentElement;
  if (root.scrollWidth > root.clientWidth + 1) {
    problems.push(`the page is ${root.scrollWidth}px wide in ${root.clientWidth}px`);
  }
  for (const table of document.querySelectorAll("main table")) {
    if (!table.getClientRects().length) continue;  // not shown (an empty live list waits hidden for its rows)
    const card = table.closest(".card");
    const name = (card && card.id) || (table.querySelector("th") || {}).textContent || "table";
    if (!card) { problems.push(`${name}: not in a card`); continue; }
    const cardBox = card.getBoundingClientRect(), box = table.getBoundingClientRect();
    if (cardBox.right > root.clientWidth + 1) problems.push(`${name}: its card overflows the window`);
    if (box.left >= cardBox.left - 1 && box.right <= cardBox.right + 1) continue;
    let scroller = table.parentElement;
    while (scroller !== card && !["auto", "scroll"].includes(getComputedStyle(scroller).overflowX)) {
      scroller = scroller.parentElement;
    }
    if (!["auto", "scroll"].includes(getComputedStyle(scroller).overflowX)) {
      problems.push(`${name}: ${Math.round(box.width)}px wide in a ${Math.round(cardBox.width)}px card, no scrolling`);
      continue;
    }
    const scrollBox = scroller.getBoundingClientRect();
    if (scrollBox.left < cardBox.left - 1 || scrollBox.right > cardBox.right + 1) {
      problems.push(`${name}: scroller leaves its card`);
    }
    if (scroller.scrollWidth <= scroller.clientWidth) problems.push(`${name}: cut off without scrolling`);
    if (scroller.offsetHeight - scroller.clientHeight < 4) {
      problems.push(`${name}: scrolls without a visible scrollbar`);
    }
  }
  return problems;
}
"""

# Whether an element can be seen whole: inside its card, or brought into view by scrolling its container.
REACHABLE = """
(element) => {
  const card = element.closest(".card");
  const inside = (outer, inner) => inner.left >= outer.left - 1 && inner.right <= outer.right + 1;
  let scroller = element.parentElement;
  while (scroller && scroller !== card && scroller.scrollWidth <= scroller.clientWidth) {
    scroller = scroller.parentElement;
  }
  const box = element.getBoundingClientRect();
  const view = (scroller || card).getBoundingClientRect();
  return {inCard: inside(card.getBoundingClientRect(), box), inView: inside(view, box), width: box.width};
}
"""


def settle(page) -> None:
    """Wait for the page to be painted: Chromium adds scrollbars at the first frames, not at layout."""
    page.wait_for_load_state("load")
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")


@pytest.fixture
def running_tunnel(transactional_db, tmp_path, daphne_server):  # noqa: F811
    """The product's defaults (2FA required) and the tutorial done: a verified zone, a tunnel with a connector
    running, public hostnames with settings, and audit entries."""
    organisation = OrganisationFactory(team_name="lab", display_name="Lab", require_2fa=True)
    user = UserFactory(email="admin@lab.test")
    MembershipFactory(organisation=organisation, user=user, role=Role.SUPER_ADMIN)
    device = add_second_factor(user)
    cli = Actor.cli()
    zone_mark_verified(zone=zone_create(organisation=organisation, name="example.com", actor=cli), actor=cli)
    tunnel = tunnel_create(organisation=organisation, name="home-lab-with-a-rather-long-name", actor=cli)
    for index, origin in enumerate(
        [
            {"noTLSVerify": True, "originServerName": "ghost.internal.example", "connectTimeout": 5},
            {"httpHostHeader": "blog.internal", "http2Origin": True, "disableChunkedEncoding": True},
            {},
        ]
    ):
        rule = {
            "hostname": f"service-{index}-with-a-long-name.example.com",
            "service": f"https://localhost:{9440 + index}",
        }
        public_hostname_save(tunnel=tunnel, actor=cli, rule={**rule, **({"originRequest": origin} if origin else {})})
    log = open(tmp_path / "connector.log", "wb")  # noqa: SIM115
    connector = subprocess.Popen(  # noqa: S603
        [
            sys.executable,
            "-m",
            "connector",
            "run",
            "--token",
            tunnel_token(tunnel),
            "--edge",
            daphne_server.url,
            "--metrics",
            "127.0.0.1:0",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield organisation, user, device, tunnel
    finally:
        connector.terminate()
        try:
            connector.wait(15)
        except subprocess.TimeoutExpired:
            connector.kill()
        log.close()


def test_tables_fit_or_scroll_visibly_at_1280_and_390_px(running_tunnel, daphne_server):  # noqa: F811
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's Chromium is not installed")
    organisation, user, device, tunnel = running_tunnel
    base = f"{daphne_server.url}/o/{organisation.account_id}"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # The connector is up before the pages open (its table is the one that overflowed).
    for _ in range(100):
        if Connector.objects.for_org(organisation).filter(connections__closed_at__isnull=True).exists():
            break
        time.sleep(0.2)
    else:
        pytest.fail("the connector did not connect")
    with sync_api.sync_playwright() as playwright:
        # Playwright hides scrollbars by default; a user's browser shows them, and this test is about them.
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, ignore_default_args=["--hide-scrollbars"]
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(15_000)
            page.goto(daphne_server.url + "/login/")
            page.fill("input[name=email]", user.email)
            page.fill("input[name=password]", DEFAULT_PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(re.compile(r".*/login/verify/.*|.*/verify.*"))
            page.fill("input[name=code]", totp_code(device))
            page.click("button:has-text('Verify')")
            page.wait_for_url(re.compile(rf".*/o/{organisation.account_id}/.*"))

            for width in WIDTHS:
                page.set_viewport_size({"width": width, "height": 900})
                for name, path, ready in [
                    ("tunnel", f"/tunnels/{tunnel.id.hex}/", "[data-tunnel-connectors] tr[data-connector]"),
                    ("connectors", "/connectors/", "[data-all-connectors] tr[data-connector]"),
                    ("tunnels", "/tunnels/", "[data-tunnel-table]"),
                    ("audit", "/audit/", "table.audit-table"),
                    ("overview", "/", "[data-overview=get-started]"),
                ]:
                    page.goto(base + path)
                    page.wait_for_selector(ready)
                    settle(page)
                    problems = page.evaluate(CLIPPED_TABLES)
                    page.screenshot(path=str(SCREENSHOTS / f"{name}-{width}.png"), full_page=True)
                    assert problems == [], f"{name} at {width}px"

                page.goto(base + "/")
                summary = page.inner_text("[data-overview=tunnels]")
                assert "1 healthy" in summary and "3 public hostnames" in summary, summary
                assert "You are set up" in page.inner_text("[data-overview=get-started]")

                page.goto(f"{base}/tunnels/{tunnel.id.hex}/")
                page.wait_for_selector("[data-tunnel-connectors] tr[data-connector]")
                settle(page)
                assert "No TLS verify" in page.inner_text("#hostnames")
                assert "noTLSVerify" not in page.inner_text("#hostnames")
                for selector in [
                    "[data-tunnel-connectors] button:has-text('Disconnect')",
                    "#hostnames button:has-text('Delete')",
                ]:
                    button = page.locator(selector).first
                    before = button.evaluate(REACHABLE)
                    if not before["inCard"]:
                        button.scroll_into_view_if_needed()
                    after = button.evaluate(REACHABLE)
                    assert after["inView"] and after["inCard"], (selector, width, before, after)
                    assert after["width"] > 40, (selector, width, after)  # the whole label, not "D"
        finally:
            browser.close()
