"""The installation-wide Origin CA roots and the organisations' origin certificates."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from certificates.choices import CertificateStatus, KeyType, RequestType, RootStatus
from controlplane.scoping import OrgOwnedModel


class OriginCARoot(models.Model):
    """A root of the Origin CA (one signing root per key type). Installation-wide: it belongs to no organisation.
    The private key is Fernet-encrypted with DATA_ENCRYPTION_KEYS."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    key_type = models.CharField(max_length=8, choices=KeyType.choices)
    status = models.CharField(max_length=8, choices=RootStatus.choices, default=RootStatus.SIGNING)
    certificate_pem = models.TextField()
    key_ciphertext = models.TextField(editable=False)
    fingerprint_sha256 = models.CharField(max_length=64)
    not_after = models.DateTimeField()
    crl_number = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    status_changed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["key_type", "-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["key_type"],
                condition=models.Q(status=RootStatus.SIGNING),
                name="certificates_one_signing_root_per_key_type",
            ),
        ]

    def __str__(self) -> str:
        return f"Origin CA {self.get_key_type_display()} root {self.fingerprint_sha256[:16]} ({self.status})"


class OriginCertificate(OrgOwnedModel):
    """A certificate for an organisation's origin server. Its id is its x509 serial number (decimal), chosen when
    the request is accepted so that a pending certificate already has the id it will keep."""

    id = models.CharField(primary_key=True, max_length=64, editable=False)
    # The zone of the first hostname (lists by zone). Deleting the zone keeps the certificate (and its place in
    # the CRL once revoked): it is then listed under the organisation only.
    zone = models.ForeignKey("controlplane.Zone", on_delete=models.SET_NULL, null=True, related_name="+")
    hostnames = models.JSONField(default=list)
    request_type = models.CharField(max_length=16, choices=RequestType.choices)
    requested_validity = models.PositiveIntegerField()
    csr = models.TextField()
    status = models.CharField(max_length=8, choices=CertificateStatus.choices, default=CertificateStatus.PENDING)
    failure_reason = models.CharField(max_length=300, blank=True)
    # "Generate the private key for me": key generation runs in the issuing job; the key is kept encrypted only
    # until its one view (certificate_key_take) and erased then.
    generate_key = models.BooleanField(default=False)
    key_ciphertext = models.TextField(blank=True, editable=False)
    key_taken_at = models.DateTimeField(null=True, blank=True)
    certificate_pem = models.TextField(blank=True)
    root = models.ForeignKey(OriginCARoot, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    issued_at = models.DateTimeField(null=True, blank=True)
    expires_on = models.DateTimeField(null=True, blank=True, db_index=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # The smallest REMINDER_DAYS threshold already announced (0: none yet), so each reminder is sent once.
    reminded_days = models.PositiveSmallIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["organisation", "zone", "-created_at"])]

    def __str__(self) -> str:
        return f"origin certificate {self.id} ({', '.join(self.hostnames[:2])})"

    @property
    def key_type(self) -> str:
        return RequestType(self.request_type).key_type

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def key_pending(self) -> bool:
        """A generated key that was never shown (and so is still stored, encrypted)."""
        return bool(self.key_ciphertext)
