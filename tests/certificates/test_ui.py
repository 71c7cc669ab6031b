"""The Certificates pages: create in both modes, the private key shown once, downloads, revoke, expiry badges."""

from __future__ import annotations

import datetime
import re

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7
from django.test import Client
from django.utils import timezone

from certificates.logic import pki
from certificates.models import OriginCertificate
from controlplane.models import AuditEvent
from tests.certificates.conftest import make_csr
from tests.controlplane.ui.conftest import add_second_factor, sign_in


@pytest.fixture
def admin(admin_a):
    return sign_in(Client(), admin_a, device=add_second_factor(admin_a))


@pytest.fixture
def reader(reader_a):
    return sign_in(Client(), reader_a, device=add_second_factor(reader_a))


def base(org) -> str:
    return f"/o/{org.account_id}"


def create(client, org, zone, **data):
    form = {"mode": "generate", "key_type": "origin-ecc", "hostnames": f"{zone.name}\n*.{zone.name}", "validity": 90}
    return client.post(f"{base(org)}/zones/{zone.id.hex}/certificates/new/", {**form, **data})


def test_the_form_offers_the_zone_defaults(admin, org_a, zone_a):
    html = admin.get(f"{base(org_a)}/zones/{zone_a.id.hex}/certificates/new/").content.decode()
    assert "alpha.example\n*.alpha.example" in html
    assert "Generate a private key and CSR for me" in html and "Use my private key and CSR" in html
    assert "15 years" in html and "<script>" not in html  # no inline script (CSP)


def test_generated_key_is_shown_once_then_erased(admin, org_a, zone_a):
    response = create(admin, org_a, zone_a)
    assert response.status_code == 302
    certificate = OriginCertificate.objects.for_org(org_a).get()
    assert response.url == f"{base(org_a)}/certificates/{certificate.id}/"
    assert certificate.status == "issued" and certificate.key_ciphertext  # stored, encrypted, until shown
    assert "BEGIN" not in certificate.key_ciphertext
    detail = admin.get(response.url).content.decode()
    assert "Show the private key" in detail and "Expires in" not in detail

    page = admin.post(f"{base(org_a)}/certificates/{certificate.id}/key/").content.decode()
    key_pem = re.search(r'<textarea id="private-key"[^>]*>(.*?)</textarea>', page, re.S).group(1)
    key = pki.load_key(key_pem.replace("&#x2B;", "+").replace("&#x27;", "'"))
    cert = x509.load_pem_x509_certificate(certificate.certificate_pem.encode())
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()
    assert 'data-download-target="#private-key"' in page and 'data-copy-target="#private-key"' in page

    certificate.refresh_from_db()
    assert certificate.key_ciphertext == "" and certificate.key_taken_at is not None
    again = admin.post(f"{base(org_a)}/certificates/{certificate.id}/key/", follow=True).content.decode()
    assert "already shown once" in again and "BEGIN PRIVATE KEY" not in again
    changes = AuditEvent.objects.for_org(org_a).filter(resource_type="origin_certificate", action="update").get()
    assert changes.changes["private_key"][1] == "downloaded once and erased"


def test_my_csr_mode_and_the_downloads(admin, org_a, zone_a):
    response = create(admin, org_a, zone_a, mode="csr", key_type="origin-rsa", csr=make_csr(), validity=5475)
    certificate = OriginCertificate.objects.for_org(org_a).get()
    assert response.status_code == 302 and not certificate.generate_key and not certificate.key_ciphertext
    url = f"{base(org_a)}/certificates/{certificate.id}/download/"
    pem = admin.get(url + "?format=pem").content.decode()
    chain = admin.get(url + "?format=chain").content.decode()
    der = admin.get(url + "?format=der").content
    p7b = admin.get(url + "?format=p7b").content
    assert pem == certificate.certificate_pem and chain.startswith(pem) and chain.count("BEGIN CERTIFICATE") == 2
    assert x509.load_der_x509_certificate(der).serial_number == int(certificate.id)
    assert [c.serial_number for c in pkcs7.load_der_pkcs7_certificates(p7b)][0] == int(certificate.id)
    pki.verify_chain(pem, chain[len(pem) :], "alpha.example")
    assert admin.get(url + "?format=zip").status_code == 404


def test_errors_name_the_entry_and_change_nothing(admin, org_a, zone_a):
    html = create(admin, org_a, zone_a, hostnames="ok.alpha.example\n*.*.alpha.example").content.decode()
    assert "“*.*.alpha.example”: a wildcard is allowed only" in html
    html = create(admin, org_a, zone_a, mode="csr", csr="").content.decode()
    assert "Paste your CSR" in html
    assert not OriginCertificate.objects.for_org(org_a).exists()


def test_revoke_and_badges(admin, reader, org_a, zone_a):
    create(admin, org_a, zone_a)
    certificate = OriginCertificate.objects.for_org(org_a).get()
    assert reader.post(f"{base(org_a)}/certificates/{certificate.id}/revoke/").status_code == 403
    assert reader.post(f"{base(org_a)}/zones/{zone_a.id.hex}/certificates/new/").status_code == 403
    OriginCertificate.objects.for_org(org_a).filter(pk=certificate.pk).update(
        expires_on=timezone.now() + datetime.timedelta(days=6, hours=1)
    )
    listing = reader.get(f"{base(org_a)}/certificates/").content.decode()
    assert "badge-amber" in listing and "Expires in 6 days" in listing
    admin.post(f"{base(org_a)}/certificates/{certificate.id}/revoke/")
    certificate.refresh_from_db()
    assert certificate.revoked_at is not None
    assert "Revoked" in reader.get(f"{base(org_a)}/zones/{zone_a.id.hex}/certificates/").content.decode()


def test_deleting_the_zone_keeps_the_certificate(admin, org_a, zone_a):
    from controlplane.actors import Actor
    from controlplane.services.zones import zone_delete

    create(admin, org_a, zone_a)
    certificate = OriginCertificate.objects.for_org(org_a).get()
    zone_delete(zone=zone_a, actor=Actor.cli())
    certificate.refresh_from_db()
    assert certificate.zone_id is None
    assert "zone deleted" in admin.get(f"{base(org_a)}/certificates/").content.decode()
    assert admin.get(f"{base(org_a)}/certificates/{certificate.id}/").status_code == 200
