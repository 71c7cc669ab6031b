"""Origin certificates in a real browser against a real daphne: the form's two modes, the one-time key screen with
its copy and download buttons, and a pending certificate's page turning into the issued one without a reload by
hand (certificates/static/certificates/certificates.js; no inline script)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cryptography import x509

from certificates.logic import pki
from certificates.models import OriginCertificate
from certificates.services import certificate_issue
from controlplane.actors import Actor
from controlplane.choices import Role
from controlplane.services.zones import zone_create, zone_mark_verified
from tests.browser.test_signin_2fa_token import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS
from tests.factories import DEFAULT_PASSWORD, MembershipFactory, OrganisationFactory, UserFactory
from tests.live_server import daphne_server  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture
def admin(transactional_db):
    organisation = OrganisationFactory(team_name="lab", display_name="Lab", require_2fa=False)
    user = UserFactory(email="admin@lab.test")
    MembershipFactory(organisation=organisation, user=user, role=Role.SUPER_ADMIN)
    zone = zone_mark_verified(
        zone=zone_create(organisation=organisation, name="example.com", actor=Actor.cli()), actor=Actor.cli()
    )
    return organisation, user, zone


def test_create_take_the_key_once_and_follow_a_pending_certificate(admin, daphne_server, tmp_path, monkeypatch):  # noqa: F811
    # Playwright's sync API runs an event loop in this thread; the test's own database calls are still synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's Chromium is not installed")
    organisation, user, zone = admin
    base = daphne_server.url
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 900}, accept_downloads=True)
            page.set_default_timeout(15_000)
            page.goto(base + "/login/")
            page.fill("input[name=email]", user.email)
            page.fill("input[name=password]", DEFAULT_PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(re.compile(r".*/o/.*"))

            page.click("nav >> text=Certificates")
            page.click("text=Create certificate")
            page.wait_for_url(re.compile(r".*/certificates/new/$"))
            assert not page.is_visible("textarea[name=csr]")  # generate mode: no CSR field
            page.check("input[name=mode][value=csr]")
            assert page.is_visible("textarea[name=csr]")
            page.check("input[name=mode][value=generate]")
            assert not page.is_visible("textarea[name=csr]")
            assert page.input_value("textarea[name=hostnames]") == "example.com\n*.example.com"
            page.check("input[name=key_type][value=origin-ecc]")
            page.select_option("select[name=validity]", "90")
            page.screenshot(path=str(SCREENSHOTS / "certificate-create.png"), full_page=True)
            page.click("button:has-text('Create')")
            page.wait_for_url(re.compile(r".*/certificates/\d+/$"))

            page.click("button:has-text('Show the private key')")
            page.wait_for_selector("#private-key")
            key_pem = page.input_value("#private-key")
            page.screenshot(path=str(SCREENSHOTS / "certificate-key.png"), full_page=True)
            page.click("button[data-copy-target='#private-key']")
            page.wait_for_selector("button[data-copy-target='#private-key']:has-text('Copied')")
            with page.expect_download() as download:
                page.click("button[data-download-target='#private-key']")
            saved = tmp_path / "origin.key"
            download.value.save_as(saved)
            assert download.value.suggested_filename == "origin.key"
            assert saved.read_text().strip() == key_pem.strip()
            certificate = OriginCertificate.objects.for_org(organisation).get()
            cert = x509.load_pem_x509_certificate(certificate.certificate_pem.encode())
            assert cert.public_key().public_numbers() == pki.load_key(key_pem).public_key().public_numbers()
            assert certificate.key_ciphertext == ""  # erased once shown

            # A certificate whose job has not run yet: the page says so and turns into the issued one by itself.
            pending = OriginCertificate.objects.create(
                id="4242424242",
                organisation=organisation,
                zone=zone,
                hostnames=["later.example.com"],
                request_type="origin-ecc",
                requested_validity=30,
                csr=pki.build_csr(pki.generate_key("ecc"), ["later.example.com"]),
            )
            page.goto(f"{base}/o/{organisation.account_id}/certificates/{pending.id}/")
            assert "Issuing" in page.inner_text("[data-certificate-pending]")
            certificate_issue(organisation_id=str(organisation.pk), certificate_id=pending.id)
            page.wait_for_selector("#certificate-pem", timeout=20_000)
            assert "BEGIN CERTIFICATE" in page.input_value("#certificate-pem")
        finally:
            browser.close()
