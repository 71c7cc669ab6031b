"""Domains an organisation owns. A name and everything under it belongs to at most one organisation."""

from __future__ import annotations

import secrets
import uuid

from django.conf import settings
from django.db import models

from controlplane.choices import ZoneStatus
from controlplane.scoping import OrgOwnedModel


def new_verification_token() -> str:
    return secrets.token_hex(16)


class Zone(OrgOwnedModel):
    """A DNS zone such as `example.com`. Hostnames and certificates are accepted only under active zones."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=253, unique=True)
    status = models.CharField(max_length=16, choices=ZoneStatus.choices, default=ZoneStatus.PENDING)
    verification_token = models.CharField(max_length=64, default=new_verification_token)
    verified_at = models.DateTimeField(null=True, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_check_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def verification_record_name(self) -> str:
        return f"{settings.ZONE_VERIFICATION_PREFIX}.{self.name}"

    @property
    def verification_record_value(self) -> str:
        return f"zt-verify={self.verification_token}"

    @property
    def is_active(self) -> bool:
        return self.status == ZoneStatus.ACTIVE

    def covers(self, hostname: str) -> bool:
        return hostname == self.name or hostname.endswith("." + self.name)
