"""The Origin CA API through the official Cloudflare SDK: create, get, list by zone, revoke; the CRL lists revoked
serials; every issued chain verifies; bad input is refused with errors naming the entry."""

from __future__ import annotations

import shutil
import subprocess

import cloudflare
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.test import Client

from certificates.logic import pki
from certificates.models import OriginCARoot
from controlplane.models import AuditEvent
from tests.certificates.conftest import make_csr, rsa_csr
from tests.conftest import make_token
from tests.factories import ZoneFactory
from tests.sdk import sdk_client


@pytest.fixture
def cf(token_a, zone_a):
    return sdk_client(token_a)


def openssl_verify(leaf: str, root: str, tmp_path) -> None:
    """`openssl verify` of the chain too, where the machine has the tool (a second implementation's opinion)."""
    if shutil.which("openssl") is None:
        return
    (tmp_path / "root.pem").write_text(root)
    (tmp_path / "leaf.pem").write_text(leaf)
    result = subprocess.run(  # noqa: S603
        [
            "openssl",
            "verify",
            "-x509_strict",
            "-purpose",
            "sslserver",
            "-CAfile",
            str(tmp_path / "root.pem"),
            str(tmp_path / "leaf.pem"),
        ],  # fmt: skip
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("OK"), result.stdout + result.stderr


def root_pem(key_type: str) -> str:
    return OriginCARoot.objects.get(key_type=key_type, status="signing").certificate_pem


@pytest.mark.parametrize("request_type,key_type", [("origin-ecc", "ecc"), ("origin-rsa", "rsa")])
def test_create_then_get_then_list_then_revoke(cf, zone_a, request_type, key_type, org_a, tmp_path):
    csr = make_csr(["alpha.example", "*.alpha.example"])
    created = cf.origin_ca_certificates.create(
        csr=csr, hostnames=["alpha.example", "*.alpha.example"], request_type=request_type, requested_validity=90
    )
    assert created.id.isdigit()
    assert created.hostnames == ["alpha.example", "*.alpha.example"]
    assert created.requested_validity == 90
    assert created.certificate.startswith("-----BEGIN CERTIFICATE-----")
    cert = x509.load_pem_x509_certificate(created.certificate.encode())
    assert cert.serial_number == int(created.id)  # the serial is the id
    pki.verify_chain(created.certificate, root_pem(key_type), "alpha.example")
    pki.verify_chain(created.certificate, root_pem(key_type), "www.alpha.example")
    openssl_verify(created.certificate, root_pem(key_type), tmp_path)
    days = (cert.not_valid_after_utc - cert.not_valid_before_utc).days
    assert 90 <= days <= 91

    fetched = cf.origin_ca_certificates.get(created.id)
    assert fetched.certificate == created.certificate and fetched.expires_on == created.expires_on

    listed = list(cf.origin_ca_certificates.list(zone_id=zone_a.id.hex))
    assert [c.id for c in listed] == [created.id]

    revoked = cf.origin_ca_certificates.delete(created.id)
    assert revoked.id == created.id and revoked.revoked_at
    crl_url = f"/origin-ca/crl/{OriginCARoot.objects.get(key_type=key_type).pk.hex}.crl"
    crl = x509.load_der_x509_crl(Client().get(crl_url).content)
    assert crl.get_revoked_certificate_by_serial_number(int(created.id)) is not None
    root = x509.load_pem_x509_certificate(root_pem(key_type).encode())
    assert crl.is_signature_valid(root.public_key())
    actions = list(
        AuditEvent.objects.for_org(org_a).filter(resource_type="origin_certificate").values_list("action", flat=True)
    )
    assert sorted(actions) == ["create", "delete"]


def test_default_validity_is_15_years(cf):
    created = cf.origin_ca_certificates.create(csr=make_csr(), hostnames=["alpha.example"], request_type="origin-ecc")
    assert created.requested_validity == 5475


def test_idn_names_become_punycode(cf):
    created = cf.origin_ca_certificates.create(
        csr=make_csr(), hostnames=["bücher.alpha.example"], request_type="origin-ecc", requested_validity=7
    )
    assert created.hostnames == ["xn--bcher-kva.alpha.example"]


def error_of(call) -> str:
    with pytest.raises(cloudflare.BadRequestError) as info:
        call()
    return " ".join(error.message for error in info.value.errors)


@pytest.mark.parametrize(
    "hostnames,expected",
    [
        (["*.*.alpha.example"], "“*.*.alpha.example”: a wildcard is allowed only as one leading"),
        (["foo.*.alpha.example"], "“foo.*.alpha.example”: a wildcard is allowed only as one leading"),
        (["192.0.2.1"], "“192.0.2.1” is an IP address"),
        (["::1"], "“::1” is an IP address"),
        (["alpha.example", "elsewhere.test"], "“elsewhere.test” is not under one of this organisation's active zones"),
        (["bravo.example"], "“bravo.example” is not under one of this organisation's active zones"),
        ([f"h{i}.alpha.example" for i in range(201)], "at most 200"),
    ],
)
def test_bad_hostnames_are_named(cf, zone_b, hostnames, expected):
    message = error_of(
        lambda: cf.origin_ca_certificates.create(csr=make_csr(), hostnames=hostnames, request_type="origin-ecc")
    )
    assert expected in message


def test_another_tenants_zone_is_refused_like_a_missing_one(cf, zone_b):
    message = error_of(
        lambda: cf.origin_ca_certificates.create(
            csr=make_csr(), hostnames=["x.bravo.example"], request_type="origin-rsa"
        )
    )
    assert "“x.bravo.example” is not under one of this organisation's active zones" in message


def test_a_pending_zone_does_not_count(cf, org_a):
    ZoneFactory(organisation=org_a, name="pending.test", status="pending")
    message = error_of(
        lambda: cf.origin_ca_certificates.create(csr=make_csr(), hostnames=["pending.test"], request_type="origin-ecc")
    )
    assert "pending.test" in message


def test_200_names_are_accepted(cf):
    names = [f"h{i}.alpha.example" for i in range(200)]
    created = cf.origin_ca_certificates.create(csr=make_csr(), hostnames=names, request_type="origin-ecc")
    assert len(created.hostnames) == 200


@pytest.mark.parametrize(
    "make,expected",
    [
        (lambda: rsa_csr(1024), "1024 bits: at least 2048"),
        (lambda: pki.build_csr(ec.generate_private_key(ec.SECP521R1()), ["alpha.example"]), "secp521r1"),
        (lambda: "not a csr", "not a valid PEM"),
        (lambda: "", "csr"),
    ],
)
def test_bad_csrs_are_refused(cf, make, expected):
    message = error_of(
        lambda: cf.origin_ca_certificates.create(csr=make(), hostnames=["alpha.example"], request_type="origin-rsa")
    )
    assert expected in message


def test_a_csr_with_a_bad_signature_is_refused(cf):
    key = ec.generate_private_key(ec.SECP256R1())
    good = x509.load_pem_x509_csr(make_csr(key=key).encode())
    der = bytearray(good.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # flip a bit of the signature
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM).decode()
    message = error_of(
        lambda: cf.origin_ca_certificates.create(csr=tampered, hostnames=["alpha.example"], request_type="origin-ecc")
    )
    assert "signature does not verify" in message


@pytest.mark.parametrize("validity", [1, 60, 5476])
def test_validity_outside_the_offer_is_refused(cf, validity):
    with pytest.raises(cloudflare.BadRequestError):
        cf.origin_ca_certificates.create(
            csr=make_csr(), hostnames=["alpha.example"], request_type="origin-ecc", requested_validity=validity
        )


def test_another_tenant_gets_404_and_a_reader_403(cf, org_a, org_b, zone_a):
    created = cf.origin_ca_certificates.create(csr=make_csr(), hostnames=["alpha.example"], request_type="origin-ecc")
    other = sdk_client(make_token(org_b))
    with pytest.raises(cloudflare.NotFoundError):
        other.origin_ca_certificates.get(created.id)
    with pytest.raises(cloudflare.NotFoundError):
        other.origin_ca_certificates.delete(created.id)
    with pytest.raises(cloudflare.NotFoundError):
        list(other.origin_ca_certificates.list(zone_id=zone_a.id.hex))
    reader = sdk_client(make_token(org_a, {"certificates": "read"}))
    assert reader.origin_ca_certificates.get(created.id).id == created.id
    with pytest.raises(cloudflare.PermissionDeniedError):
        reader.origin_ca_certificates.delete(created.id)
    with pytest.raises(cloudflare.PermissionDeniedError):
        reader.origin_ca_certificates.create(csr=make_csr(), hostnames=["alpha.example"], request_type="origin-ecc")


def test_roots_are_public_and_in_the_api(cf):
    body = Client().get("/.well-known/origin-ca.pem").content.decode()
    roots = x509.load_pem_x509_certificates(body.encode())
    assert len(roots) == 2
    assert Client().get("/origin-ca/roots.pem").content.decode() == body
    api = cf.get("/origin_ca/roots", cast_to=object)["result"]
    assert sorted(r["key_type"] for r in api) == ["ecc", "rsa"]
    assert {r["fingerprint_sha256"] for r in api} == {c.fingerprint(hashes.SHA256()).hex() for c in roots}


def test_an_accounts_certificates_in_the_uis_terms(cf, org_a, org_b, zone_a):
    created = cf.origin_ca_certificates.create(csr=make_csr(), hostnames=["alpha.example"], request_type="origin-ecc")
    listed = cf.get(f"/accounts/{org_a.account_id}/origin_certificates", cast_to=object)
    assert [c["id"] for c in listed["result"]] == [created.id] and listed["result_info"]["total_count"] == 1
    one = cf.get(f"/accounts/{org_a.account_id}/origin_certificates/{created.id}", cast_to=object)["result"]
    assert one["certificate"] == created.certificate
    other = sdk_client(make_token(org_b))
    with pytest.raises(cloudflare.NotFoundError):
        other.get(f"/accounts/{org_a.account_id}/origin_certificates/{created.id}", cast_to=object)
    with pytest.raises(cloudflare.NotFoundError):
        other.get(f"/accounts/{org_b.account_id}/origin_certificates/{created.id}", cast_to=object)


@pytest.mark.parametrize(
    "key",
    [
        lambda: ec.generate_private_key(ec.SECP384R1()),
        lambda: rsa.generate_private_key(public_exponent=65537, key_size=3072),
    ],
    ids=["P-384", "RSA-3072"],
)
def test_other_accepted_csr_keys(cf, key):
    created = cf.origin_ca_certificates.create(
        csr=pki.build_csr(key(), ["alpha.example"]), hostnames=["alpha.example"], request_type="origin-rsa"
    )
    pki.verify_chain(created.certificate, root_pem("rsa"), "alpha.example")
