"""The issue's headline, in a real browser against a real daphne, with the product's defaults (the organisation
requires 2FA): an admin signs in with password and authenticator code, creates a tunnel, copies the install
command, runs the connector it names, and sees the connector Connected on the page without reloading; then adds
a public hostname with the Cloudflare-style form. The live-page tests proper are in test_live_status_2fa.py."""

from __future__ import annotations

import base64
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django_otp.plugins.otp_totp.models import TOTPDevice

from controlplane.actors import Actor
from controlplane.choices import Role
from controlplane.services.zones import zone_create, zone_mark_verified
from tests.browser.test_signin_2fa_token import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS, current_totp
from tests.factories import DEFAULT_PASSWORD, MembershipFactory, OrganisationFactory, UserFactory
from tests.live_server import daphne_server  # noqa: F401  (the fixture)
from tunnels.models import Tunnel

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture
def admin(transactional_db):
    organisation = OrganisationFactory(team_name="lab", display_name="Lab", require_2fa=True)
    user = UserFactory(email="admin@lab.test")
    TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)
    MembershipFactory(organisation=organisation, user=user, role=Role.SUPER_ADMIN)
    zone_mark_verified(
        zone=zone_create(organisation=organisation, name="example.com", actor=Actor.cli()), actor=Actor.cli()
    )
    return organisation, user


def test_create_tunnel_run_connector_see_it_live(admin, daphne_server, tmp_path):  # noqa: F811
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's Chromium is not installed")
    organisation, user = admin
    secret = base64.b32encode(TOTPDevice.objects.get(user=user).bin_key).decode()  # the user's authenticator app
    base = daphne_server.url
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    connector = None
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            page.set_default_timeout(15_000)
            page.goto(base + "/login/")
            page.fill("input[name=email]", user.email)
            page.fill("input[name=password]", DEFAULT_PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(re.compile(r".*/login/verify/.*"))
            page.fill("input[name=code]", current_totp(secret))
            page.click("button[type=submit]")
            page.wait_for_url(re.compile(r".*/o/.*"))

            page.click("nav >> text=Tunnels")
            page.fill("input[name=name]", "home-lab")
            page.click("button:has-text('Create tunnel')")
            page.wait_for_url(re.compile(r".*/tunnels/[0-9a-f]{32}/.*"))
            assert page.locator("[data-live-indicator]").first.inner_text() in ("live", "connecting…")
            page.wait_for_selector("[data-live-indicator].live-ok")
            assert page.inner_text("[data-tunnel-status] .badge") == "Inactive"

            # Copy the "From a checkout" command, exactly as shown, and run it (the edge is this server).
            page.click("button[data-tab=cmd-checkout]")
            command = page.inner_text("#cmd-text-checkout")
            args = shlex.split(command)
            assert args[:3] == ["python", "-m", "connector"]
            log = open(tmp_path / "connector.log", "wb")  # noqa: SIM115
            connector = subprocess.Popen(  # noqa: S603
                [sys.executable, *args[1:], "--metrics", "127.0.0.1:0", "--edge", base],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

            # No reload: the page turns Healthy and lists the connector with its details.
            page.wait_for_selector("[data-tunnel-status] .badge[data-status=healthy]", timeout=20_000)
            row = page.locator("[data-tunnel-connectors] tr[data-connector]")
            assert row.count() == 1
            text = row.inner_text()
            assert "Connected" in text and "2 of 2" in text and "127.0.0.1" in text
            page.screenshot(path=str(SCREENSHOTS / "tunnel-live.png"), full_page=True)

            # Add a public hostname with the form.
            page.click("text=Add a public hostname")
            page.fill("input[name=subdomain]", "ghost")
            page.select_option("select[name=zone]", "example.com")
            page.select_option("select[name=service_type]", "http")
            page.fill("input[name=url]", "localhost:3001")
            page.click("summary:has-text('Additional application settings')")
            page.fill("input[name=http_host_header]", "ghost.internal")
            page.click("button:has-text('Save hostname')")
            page.wait_for_selector("#hostnames code:has-text('ghost.example.com')")
            assert "configuration version 1" in page.inner_text("#hostnames")
            # The connector acknowledges the new version: the page shows it as current, still without reload.
            page.wait_for_selector("[data-tunnel-connectors] tr[data-connector] >> text=v1", timeout=20_000)

            # The connector stops: the page turns Down by itself.
            connector.send_signal(signal.SIGTERM)
            connector.wait(20)
            page.wait_for_selector("[data-tunnel-status] .badge[data-status=down]", timeout=20_000)
            page.screenshot(path=str(SCREENSHOTS / "tunnel-down.png"), full_page=True)
        finally:
            browser.close()
            if connector is not None and connector.poll() is None:
                connector.kill()
            print((tmp_path / "connector.log").read_text(errors="replace")[-4000:])
    tunnel = Tunnel.objects.for_org(organisation).get()
    assert tunnel.config["ingress"][0] == {
        "hostname": "ghost.example.com",
        "service": "http://localhost:3001",
        "originRequest": {"httpHostHeader": "ghost.internal"},
    }
