"""Enumerations of the Origin CA."""

from __future__ import annotations

from django.db import models

VALIDITY_DAYS = (7, 30, 90, 365, 730, 1095, 5475)
DEFAULT_VALIDITY_DAYS = 5475
MAX_HOSTNAMES = 200
REMINDER_DAYS = (30, 7, 1)


class KeyType(models.TextChoices):
    RSA = "rsa", "RSA"
    ECC = "ecc", "ECC"


class RequestType(models.TextChoices):
    ORIGIN_RSA = "origin-rsa", "RSA"
    ORIGIN_ECC = "origin-ecc", "ECC"

    @property
    def key_type(self) -> str:
        return KeyType.RSA if self == RequestType.ORIGIN_RSA else KeyType.ECC


class CertificateStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    ISSUED = "issued", "Issued"
    FAILED = "failed", "Failed"


class RootStatus(models.TextChoices):
    SIGNING = "signing", "Signing"  # signs new certificates; trusted
    TRUSTED = "trusted", "Trusted"  # replaced by a newer root, still trusted for the certificates it signed
    RETIRED = "retired", "Retired"  # no longer trusted anywhere
