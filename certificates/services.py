"""Writes of the Origin CA: accept a certificate request, issue it (the Celery job's body), reveal a generated key
once, revoke, remind before expiry. Each user-facing write records its audit event in the same transaction."""

from __future__ import annotations

import datetime
import ipaddress
import logging
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from certificates import ca
from certificates.choices import (
    DEFAULT_VALIDITY_DAYS,
    MAX_HOSTNAMES,
    REMINDER_DAYS,
    VALIDITY_DAYS,
    CertificateStatus,
    RequestType,
)
from certificates.logic import pki
from certificates.models import OriginCARoot, OriginCertificate
from controlplane.actors import Actor
from controlplane.choices import AuditAction, Role, ZoneStatus
from controlplane.models import Membership, Organisation, Zone
from controlplane.services.audit import audit_record
from controlplane.validators import normalise_hostname, validate_domain_name

log = logging.getLogger(__name__)

RESOURCE_TYPE = "origin_certificate"


# --- validation ---------------------------------------------------------------------------------------------------


def _hostname_error(message: str) -> ValidationError:
    return ValidationError({"hostnames": [message]})


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return False
    return True


def validate_hostnames(*, organisation: Organisation, hostnames: Any) -> tuple[list[str], Zone]:
    """The certificate's names, normalised (lower case, punycode, duplicates dropped), and the zone of the first.
    Every name must sit under one of the organisation's active zones; a wildcard only as one leading `*.` label.
    Errors name the offending entry."""
    if not isinstance(hostnames, (list, tuple)) or not hostnames:
        raise _hostname_error("Give at least one hostname (for example the zone and *.zone).")
    if len(hostnames) > MAX_HOSTNAMES:
        raise _hostname_error(f"A certificate covers at most {MAX_HOSTNAMES} hostnames; {len(hostnames)} were given.")
    zones = sorted(
        Zone.objects.for_org(organisation).filter(status=ZoneStatus.ACTIVE), key=lambda zone: -len(zone.name)
    )
    names: list[str] = []
    first_zone: Zone | None = None
    for raw in hostnames:
        if not isinstance(raw, str) or not raw.strip():
            raise _hostname_error(f"“{raw}” is not a hostname.")
        text = raw.strip()[:300]
        if _is_ip(text):
            raise _hostname_error(f"“{text}” is an IP address: certificates here name hostnames only.")
        wildcard = text.startswith("*.")
        body = text[2:] if wildcard else text
        if "*" in body:
            raise _hostname_error(
                f"“{text}”: a wildcard is allowed only as one leading “*.” label (like *.example.com)."
            )
        try:
            name = normalise_hostname(body)
            validate_domain_name(name)
        except ValidationError as exc:
            raise _hostname_error(f"“{text}”: {' '.join(exc.messages)}") from None
        zone = next((zone for zone in zones if zone.covers(name)), None)
        if zone is None:
            raise _hostname_error(
                f"“{text}” is not under one of this organisation's active zones; add and verify its zone first."
            )
        full = f"*.{name}" if wildcard else name
        if full not in names:
            names.append(full)
        first_zone = first_zone or zone
    assert first_zone is not None
    return names, first_zone


def default_hostnames(zone: Zone) -> list[str]:
    return [zone.name, f"*.{zone.name}"]


def _validity(value: Any) -> int:
    if value is None or value == "":
        return DEFAULT_VALIDITY_DAYS
    try:
        days = int(value)
    except (TypeError, ValueError):
        days = -1
    if days not in VALIDITY_DAYS or (isinstance(value, float) and value != days):
        allowed = ", ".join(str(d) for d in VALIDITY_DAYS)
        raise ValidationError({"requested_validity": [f"“{value}” is not a validity we offer: use one of {allowed}."]})
    return days


def _request_type(value: Any) -> RequestType:
    if value == "keyless-certificate":
        raise ValidationError({"request_type": ["Keyless certificates are not offered: use origin-rsa or origin-ecc."]})
    try:
        return RequestType(value)
    except ValueError:
        raise ValidationError(
            {"request_type": [f"“{value}” is not a request type: use origin-rsa or origin-ecc."]}
        ) from None


# --- create and issue ---------------------------------------------------------------------------------------------


def certificate_create(
    *,
    organisation: Organisation,
    actor: Actor,
    hostnames: Any,
    request_type: Any,
    requested_validity: Any = None,
    csr: str | None = None,
) -> OriginCertificate:
    """Accept a request and queue its issuing job (after commit). Without `csr` the job generates the private key
    (of the request type's kind) and a CSR; the key is then stored encrypted until its one view."""
    kind = _request_type(request_type)
    validity = _validity(requested_validity)
    names, zone = validate_hostnames(organisation=organisation, hostnames=hostnames)
    if csr is not None:
        try:
            pki.parse_csr(csr)
        except pki.CSRError as exc:
            raise ValidationError({"csr": [str(exc)]}) from None
    with transaction.atomic():
        certificate = OriginCertificate.objects.create(
            id=str(x509.random_serial_number()),
            organisation=organisation,
            zone=zone,
            hostnames=names,
            request_type=kind.value,
            requested_validity=validity,
            csr=(csr or "").strip() + ("\n" if csr else ""),
            generate_key=csr is None,
            created_by=actor.user,
        )
        audit_record(
            organisation=organisation,
            actor=actor,
            action=AuditAction.CREATE,
            resource_type=RESOURCE_TYPE,
            resource_id=certificate.id,
            resource_name=", ".join(names)[:255],
            changes={
                "hostnames": [None, names],
                "request_type": [None, kind.value],
                "requested_validity": [None, validity],
                "private_key": [None, "generated" if csr is None else "customer CSR"],
            },
        )
        ids = {"organisation_id": str(organisation.pk), "certificate_id": certificate.id}
        # robust: a broker that is down leaves the certificate pending (re-queued by certificates_requeue_stale)
        # rather than failing a request whose write is already committed.
        transaction.on_commit(lambda: _queue_issue(ids), robust=True)
    return certificate


def _queue_issue(ids: dict[str, str]) -> None:
    from certificates.tasks import issue_certificate

    issue_certificate.delay(**ids)


def certificate_issue(*, organisation_id: str, certificate_id: str) -> str:
    """The issuing job: generate the key (if ours to make), sign with the signing root of the request type, and
    move the row pending → issued with one conditional update, so that a retried or duplicated job changes
    nothing once one has finished. Failures are recorded on the row (failed, with the reason)."""
    certificate = (
        OriginCertificate.objects.filter(organisation_id=organisation_id, pk=certificate_id)
        .only("id", "hostnames", "request_type", "requested_validity", "csr", "generate_key", "status", "revoked_at")
        .first()
    )
    if certificate is None or certificate.status != CertificateStatus.PENDING or certificate.revoked_at is not None:
        return "skipped"
    pending = OriginCertificate.objects.filter(
        organisation_id=organisation_id, pk=certificate_id, status=CertificateStatus.PENDING, revoked_at__isnull=True
    )
    try:
        key_ciphertext, csr_pem = "", certificate.csr
        if certificate.generate_key:
            key = pki.generate_key(certificate.key_type)
            csr_pem = pki.build_csr(key, certificate.hostnames)
            key_ciphertext = ca.encrypt_key(pki.key_pem(key))
        csr = pki.parse_csr(csr_pem)
        root = ca.signing_root(certificate.key_type)
        leaf = pki.sign_leaf(
            csr=csr,
            hostnames=certificate.hostnames,
            serial=int(certificate.id),
            validity_days=certificate.requested_validity,
            root_certificate_pem=root.certificate_pem,
            root_key=ca.root_key(root),
            crl_url=ca.crl_url(root),
        )
    except Exception as exc:  # a bad CSR that passed the checks, an undecryptable root key: say so on the row
        log.exception("Issuing origin certificate %s failed", certificate_id)
        pending.update(status=CertificateStatus.FAILED, failure_reason=f"Issuing failed: {exc}"[:300])
        return "failed"
    updated = pending.update(
        status=CertificateStatus.ISSUED,
        csr=csr_pem,
        key_ciphertext=key_ciphertext,
        certificate_pem=leaf.public_bytes(serialization.Encoding.PEM).decode(),
        root=root,
        issued_at=timezone.now(),
        expires_on=leaf.not_valid_after_utc,
    )
    return "issued" if updated else "skipped"


def certificates_requeue_stale(*, older_than: datetime.timedelta = datetime.timedelta(minutes=5)) -> int:
    """Queue the issuing job again for certificates still pending long after their request (a broker outage, a
    lost message). Safe: the job is idempotent, so a duplicate of one that is merely slow changes nothing."""
    stale = (
        OriginCertificate.objects.unscoped("the sweeper walks every organisation's pending certificates")
        .filter(status=CertificateStatus.PENDING, revoked_at__isnull=True, created_at__lt=timezone.now() - older_than)
        .values_list("organisation_id", "id")[:1000]
    )
    count = 0
    for organisation_id, certificate_id in stale:
        _queue_issue({"organisation_id": str(organisation_id), "certificate_id": certificate_id})
        count += 1
    return count


def certificate_wait(certificate: OriginCertificate, *, seconds: float) -> OriginCertificate:
    """Poll until the job finished (or `seconds` passed); eager jobs have finished already."""
    import time

    deadline = time.monotonic() + seconds
    while True:
        certificate.refresh_from_db()
        if certificate.status != CertificateStatus.PENDING or time.monotonic() >= deadline:
            return certificate
        time.sleep(0.05)


# --- the private key, once ---------------------------------------------------------------------------------------


def certificate_key_take(*, certificate: OriginCertificate, actor: Actor) -> str | None:
    """The generated private key, erased from the database as it is returned: None when it was already taken (or
    the customer kept their own). One conditional update, so two concurrent views cannot both get it."""
    ciphertext = certificate.key_ciphertext
    if not ciphertext:
        return None
    with transaction.atomic():
        taken = (
            OriginCertificate.objects.for_org(certificate.organisation)
            .filter(pk=certificate.pk, key_ciphertext=ciphertext)
            .update(key_ciphertext="", key_taken_at=timezone.now())
        )
        if not taken:
            return None
        audit_record(
            organisation=certificate.organisation,
            actor=actor,
            action=AuditAction.UPDATE,  # the key leaves the database: shown (downloaded) once, then erased
            resource_type=RESOURCE_TYPE,
            resource_id=certificate.id,
            resource_name=", ".join(certificate.hostnames)[:255],
            changes={"private_key": ["stored, encrypted", "downloaded once and erased"]},
        )
    certificate.key_ciphertext = ""
    return ca.decrypt_key(ciphertext)


# --- revoke ---------------------------------------------------------------------------------------------------------


def certificate_revoke(*, certificate: OriginCertificate, actor: Actor) -> OriginCertificate:
    """Permanent. The serial enters its root's CRL (whose number grows); a key never shown is erased."""
    if certificate.revoked_at is not None:
        return certificate
    now = timezone.now()
    with transaction.atomic():
        changed = (
            OriginCertificate.objects.for_org(certificate.organisation)
            .filter(pk=certificate.pk, revoked_at__isnull=True)
            .update(revoked_at=now, key_ciphertext="")
        )
        if changed:
            # The row's root as stored (the caller's instance may predate the issuing job).
            signed_by = OriginCertificate.objects.for_org(certificate.organisation).filter(pk=certificate.pk)
            OriginCARoot.objects.filter(pk__in=signed_by.values("root_id")).update(crl_number=F("crl_number") + 1)
            audit_record(
                organisation=certificate.organisation,
                actor=actor,
                action=AuditAction.DELETE,  # as API tokens: revocation is the certificate's end
                resource_type=RESOURCE_TYPE,
                resource_id=certificate.id,
                resource_name=", ".join(certificate.hostnames)[:255],
                changes={"revoked_at": [None, now]},
            )
    certificate.refresh_from_db()
    return certificate


# --- expiry reminders -----------------------------------------------------------------------------------------------


def expiry_reminders_send(*, now: datetime.datetime | None = None) -> int:
    """Email each organisation's administrators when a certificate comes within 30, 7 and 1 days of expiring, once
    per threshold (the conditional update on `reminded_days` makes a second run, or a second beat, send nothing)."""
    from controlplane.mail import email_send

    now = now or timezone.now()
    horizon = now + datetime.timedelta(days=max(REMINDER_DAYS))
    due = (
        OriginCertificate.objects.unscoped("the reminder job walks every organisation's certificates")
        .filter(status=CertificateStatus.ISSUED, revoked_at__isnull=True, expires_on__gt=now, expires_on__lte=horizon)
        .select_related("organisation")
        .order_by("expires_on")
    )
    sent = 0
    for certificate in due.iterator():
        assert certificate.expires_on is not None
        left = certificate.expires_on - now
        threshold = min(days for days in REMINDER_DAYS if left <= datetime.timedelta(days=days))
        if certificate.reminded_days and certificate.reminded_days <= threshold:
            continue
        with transaction.atomic():
            claimed = (
                OriginCertificate.objects.for_org(certificate.organisation)
                .filter(pk=certificate.pk, reminded_days=certificate.reminded_days)
                .update(reminded_days=threshold)
            )
            if not claimed:
                continue
            admins = list(
                Membership.objects.for_org(certificate.organisation)
                .filter(role__in=[Role.SUPER_ADMIN, Role.ADMIN])
                .values_list("user__email", flat=True)
            )
            if not admins:
                continue
            days_left = max(1, round(left.total_seconds() / 86400))
            email_send(
                to=admins,
                subject=f"Origin certificate for {certificate.hostnames[0]} expires in {days_left} "
                f"day{'s' if days_left != 1 else ''}",
                template="certificates/email/expiry",
                context={
                    "organisation": certificate.organisation.display_name,
                    "hostnames": certificate.hostnames,
                    "serial": certificate.id,
                    "expires_on": certificate.expires_on.strftime("%Y-%m-%d %H:%M UTC"),
                    "days_left": days_left,
                    "url": _certificate_url(certificate),
                },
                organisation_id=str(certificate.organisation_id),
            )
            sent += 1
    return sent


def _certificate_url(certificate: OriginCertificate) -> str:
    from django.conf import settings
    from django.urls import reverse

    path = reverse(
        "ui:certificate",
        kwargs={"account_id": certificate.organisation.account_id, "certificate_id": certificate.id},
    )
    return f"{settings.PUBLIC_URL}{path}"
