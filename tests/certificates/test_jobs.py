"""The issuing job's idempotency and failures, expiry reminders (30/7/1 days, once each), CRL numbers, root
rotation reaching connectors through their configuration, and the POST that answers pending."""

from __future__ import annotations

import datetime
import io

import cloudflare
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from certificates import ca, services
from certificates.models import OriginCARoot, OriginCertificate
from connector import protocol
from controlplane.actors import Actor
from controlplane.choices import Role
from tests.certificates.conftest import make_csr
from tests.conftest import make_token
from tests.factories import MembershipFactory, UserFactory
from tests.sdk import sdk_client


def create(org, **kwargs):
    return services.certificate_create(
        organisation=org,
        actor=Actor.cli(),
        hostnames=kwargs.pop("hostnames", ["alpha.example"]),
        request_type=kwargs.pop("request_type", "origin-ecc"),
        **kwargs,
    )


def test_the_job_is_idempotent(org_a, zone_a):
    certificate = create(org_a, csr=make_csr())
    certificate.refresh_from_db()
    assert certificate.status == "issued"
    pem = certificate.certificate_pem
    assert services.certificate_issue(organisation_id=str(org_a.pk), certificate_id=certificate.id) == "skipped"
    certificate.refresh_from_db()
    assert certificate.certificate_pem == pem


def test_a_duplicate_job_that_lost_the_race_changes_nothing(org_a, zone_a):
    certificate = create(org_a, csr=make_csr())
    certificate.refresh_from_db()
    OriginCertificate.objects.for_org(org_a).filter(pk=certificate.pk).update(status="pending")
    # A second job started before the first finished: it signs again, but its conditional update loses.
    OriginCertificate.objects.for_org(org_a).filter(pk=certificate.pk).update(status="issued")
    assert services.certificate_issue(organisation_id=str(org_a.pk), certificate_id=certificate.id) == "skipped"


def test_a_failure_is_recorded_with_its_reason(org_a, zone_a, settings):
    ca.ensure_roots()
    OriginCARoot.objects.update(key_ciphertext="not a fernet token")
    certificate = create(org_a, csr=make_csr())
    certificate.refresh_from_db()
    assert certificate.status == "failed"
    assert "cannot be decrypted" in certificate.failure_reason


def test_a_certificate_revoked_while_pending_is_never_issued(org_a, zone_a, settings):
    certificate = OriginCertificate.objects.create(
        id="12345",
        organisation=org_a,
        zone=zone_a,
        hostnames=["alpha.example"],
        request_type="origin-ecc",
        requested_validity=7,
        csr=make_csr(),
    )
    services.certificate_revoke(certificate=certificate, actor=Actor.cli())
    assert services.certificate_issue(organisation_id=str(org_a.pk), certificate_id="12345") == "skipped"
    certificate.refresh_from_db()
    assert certificate.certificate_pem == ""


def test_crl_numbers_grow_and_list_revoked_serials(org_a, zone_a):
    first, second = create(org_a, csr=make_csr()), create(org_a, csr=make_csr())
    root = OriginCARoot.objects.get(key_type="ecc")
    url = f"/origin-ca/crl/{root.pk.hex}.crl"
    before = x509.load_der_x509_crl(Client().get(url).content)
    services.certificate_revoke(certificate=first, actor=Actor.cli())
    after = x509.load_der_x509_crl(Client().get(url).content)
    number = lambda crl: crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number  # noqa: E731
    assert number(after) == number(before) + 1
    assert after.get_revoked_certificate_by_serial_number(int(first.id)) is not None
    assert after.get_revoked_certificate_by_serial_number(int(second.id)) is None
    assert Client().get("/origin-ca/crl/nothing.crl").status_code == 404


def test_expiry_reminders_go_to_administrators_once_per_threshold(org_a, admin_a, reader_a, zone_a, mailoutbox):
    MembershipFactory(organisation=org_a, user=UserFactory(email="second-admin@alpha.test"), role=Role.ADMIN)
    certificate = create(org_a, csr=make_csr(), requested_validity=90)
    now = timezone.now()
    expires = now + datetime.timedelta(days=90)
    OriginCertificate.objects.for_org(org_a).filter(pk=certificate.pk).update(expires_on=expires)

    def run(days_before: float) -> list:
        before = len(mailoutbox)
        services.expiry_reminders_send(now=expires - datetime.timedelta(days=days_before))
        return mailoutbox[before:]

    assert run(45) == []
    sent = run(29.5)
    assert len(sent) == 1 and "expires in 30 days" in sent[0].subject
    assert sorted(sent[0].to) == ["admin@alpha.test", "second-admin@alpha.test"]  # not the read-only member
    assert certificate.id in sent[0].body and "alpha.example" in sent[0].body
    assert run(20) == []  # once per threshold
    assert "expires in 7 days" in run(6.8)[0].subject
    assert run(6) == []
    assert "expires in 1 day" in run(0.5)[0].subject
    assert run(0.2) == []
    services.certificate_revoke(certificate=certificate, actor=Actor.cli())
    assert run(0.1) == []


def test_the_hub_sends_the_trusted_roots_with_every_config(org_a):
    from dataplane.hub import _load_tunnels
    from tunnels.models import Tunnel
    from tunnels.services import tunnel_create

    tunnel = tunnel_create(organisation=org_a, name="t", actor=Actor.cli())
    assert _load_tunnels([tunnel.pk])[tunnel.pk].origin_ca == ""  # no roots before the first certificate
    version = Tunnel.objects.for_org(org_a).get(pk=tunnel.pk).config_version
    ca.ensure_roots()  # creating the roots pushes every tunnel's configuration again
    assert Tunnel.objects.for_org(org_a).get(pk=tunnel.pk).config_version == version + 2  # RSA, then ECC
    frame = _load_tunnels([tunnel.pk])[tunnel.pk].config_frame()
    message = protocol.decode(frame)
    roots = x509.load_pem_x509_certificates(message.origin_ca.encode())
    assert sorted(r.fingerprint(hashes.SHA256()).hex() for r in roots) == sorted(
        OriginCARoot.objects.values_list("fingerprint_sha256", flat=True)
    )


def test_rotation_keeps_the_old_root_trusted_and_bumps_every_tunnel(org_a, zone_a):
    from dataplane.hub import _load_tunnels
    from tunnels.models import Tunnel
    from tunnels.services import tunnel_create

    tunnel = tunnel_create(organisation=org_a, name="t", actor=Actor.cli())
    old = create(org_a, csr=make_csr())
    version = Tunnel.objects.for_org(org_a).get(pk=tunnel.pk).config_version
    out = io.StringIO()
    call_command("origin_ca", "rotate", "ecc", stdout=out)
    assert Tunnel.objects.for_org(org_a).get(pk=tunnel.pk).config_version == version + 1
    statuses = sorted(OriginCARoot.objects.filter(key_type="ecc").values_list("status", flat=True))
    assert statuses == ["signing", "trusted"]
    new = create(org_a, csr=make_csr())
    old.refresh_from_db(), new.refresh_from_db()
    assert old.root_id != new.root_id
    bundle = _load_tunnels([tunnel.pk])[tunnel.pk].origin_ca
    assert bundle.count("BEGIN CERTIFICATE") == 2  # the old and the new ECC root (no RSA one was needed yet)

    old_root = OriginCARoot.objects.get(pk=old.root_id)
    call_command("origin_ca", "retire", old_root.pk.hex, stdout=out)
    assert _load_tunnels([tunnel.pk])[tunnel.pk].origin_ca.count("BEGIN CERTIFICATE") == 1
    assert old_root.certificate_pem not in Client().get("/origin-ca/roots.pem").content.decode()
    call_command("origin_ca", "show", stdout=out)
    assert "retired" in out.getvalue()


def test_post_answers_pending_when_the_job_is_queued_and_get_returns_the_pem(token_a, org_a, zone_a, settings):
    """Production: the job runs on a worker. With no time to wait, POST answers `pending`; GET gives the PEM once
    the worker issued it (the SDK's create then get)."""
    from controlplane.celery import app

    settings.CERTIFICATE_ISSUE_WAIT_SECONDS = 0
    app.conf.task_always_eager = False
    try:
        cf = sdk_client(token_a)
        created = cf.origin_ca_certificates.create(
            csr=make_csr(), hostnames=["alpha.example"], request_type="origin-ecc"
        )
    finally:
        app.conf.task_always_eager = True
    assert created.certificate == "" and created.model_extra["status"] == "pending"
    services.certificate_issue(organisation_id=str(org_a.pk), certificate_id=created.id)  # the worker
    assert cf.origin_ca_certificates.get(created.id).certificate.startswith("-----BEGIN CERTIFICATE-----")


def test_a_token_without_the_certificates_scope_gets_403(org_a, zone_a):
    cf = sdk_client(make_token(org_a, {"zones": "read"}))

    with pytest.raises(cloudflare.PermissionDeniedError):
        list(cf.origin_ca_certificates.list(zone_id=zone_a.id.hex))


def test_origin_ca_command_refuses_to_retire_the_signing_root_and_writes_the_bundle(db, tmp_path):
    from django.core.management.base import CommandError

    call_command("origin_ca", "init", stdout=io.StringIO())
    signing = OriginCARoot.objects.get(key_type="rsa", status="signing")
    with pytest.raises(CommandError, match="rotate first"):
        call_command("origin_ca", "retire", signing.fingerprint_sha256[:12], stdout=io.StringIO())
    with pytest.raises(CommandError, match="No single root"):
        call_command("origin_ca", "retire", "nothing", stdout=io.StringIO())
    call_command("origin_ca", "bundle", str(tmp_path / "roots.pem"), stdout=io.StringIO())
    assert len(x509.load_pem_x509_certificates((tmp_path / "roots.pem").read_bytes())) == 2


def test_a_lost_job_is_queued_again_by_the_periodic_sweep(org_a, zone_a):
    from certificates.tasks import send_expiry_reminders

    certificate = OriginCertificate.objects.create(
        id="777",
        organisation=org_a,
        zone=zone_a,
        hostnames=["alpha.example"],
        request_type="origin-ecc",
        requested_validity=7,
        csr=make_csr(),
    )
    send_expiry_reminders()
    certificate.refresh_from_db()
    assert certificate.status == "pending"  # recent: its job may just be slow
    OriginCertificate.objects.for_org(org_a).filter(pk="777").update(
        created_at=timezone.now() - datetime.timedelta(minutes=10)
    )
    send_expiry_reminders.delay()  # embedded mode: queued on the in-process pool
    from controlplane.embedded_tasks import runner

    assert runner().wait_until_idle(30)
    certificate.refresh_from_db()
    assert certificate.status == "issued" and certificate.certificate_pem
