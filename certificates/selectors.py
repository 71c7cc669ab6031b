"""Reads of the Origin CA. Every organisation-scoped read goes through the scoped manager."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from certificates.models import OriginCertificate
from controlplane.errors import NotFound
from controlplane.models import Organisation, Zone

EXPIRING_SOON = datetime.timedelta(days=30)


def certificate_list(*, organisations: Sequence[Organisation], zone: Zone | None = None) -> QuerySet[OriginCertificate]:
    certificates = OriginCertificate.objects.for_orgs(organisations).defer("csr", "key_ciphertext")
    if zone is not None:
        certificates = certificates.filter(zone=zone)
    return certificates.order_by("-created_at", "id")


def certificate_get(*, organisations: Sequence[Organisation], certificate_id: Any) -> OriginCertificate:
    """The certificate among the organisations' (404 alike for a missing one and another tenant's)."""
    text = str(certificate_id or "")
    if not text.isdigit() or len(text) > 64:
        raise NotFound("No such certificate.")
    certificate = (
        OriginCertificate.objects.for_orgs(organisations)
        .select_related("organisation", "zone", "root")
        .filter(pk=text)
        .first()
    )
    if certificate is None:
        raise NotFound("No such certificate.")
    return certificate


def expiry_badge(certificate: OriginCertificate, *, now: datetime.datetime | None = None) -> tuple[str, str]:
    """(css class, label) of the certificate's state for lists: revoked, failed, pending, expired, expiring."""
    now = now or timezone.now()
    if certificate.revoked_at is not None:
        return "badge-grey", "Revoked"
    if certificate.status == "failed":
        return "badge-red", "Failed"
    if certificate.status == "pending" or certificate.expires_on is None:
        return "badge-blue", "Issuing…"
    left = certificate.expires_on - now
    if left <= datetime.timedelta(0):
        return "badge-red", "Expired"
    if left <= EXPIRING_SOON:
        days = max(1, round(left.total_seconds() / 86400))
        return "badge-amber", f"Expires in {days} day{'s' if days != 1 else ''}"
    return "badge-green", "Active"
