"""API tokens: per organisation, with read/edit grants per resource group. Shown once, stored hashed."""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from controlplane.choices import scopes_for
from controlplane.scoping import OrgOwnedModel

TOKEN_PREFIX = "zt_"


def generate_token_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(30)


def hash_token(raw: str) -> str:
    # The secret has 240 bits of entropy, so a fast hash is enough: nothing can be brute-forced from it.
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiToken(OrgOwnedModel):
    """A bearer token for automation. `grants` maps resource group → "read" | "edit"."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=120)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    hint = models.CharField(max_length=8, editable=False, help_text="Last characters, to recognise the token.")
    grants = models.JSONField(default=dict)
    allowed_networks = models.JSONField(default=list, blank=True, help_text="Client IP ranges (CIDR); empty = any.")
    not_before = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name

    @property
    def scopes(self) -> frozenset[str]:
        return scopes_for(self.grants)

    @property
    def status(self) -> str:
        """v4 token status: active, disabled (revoked or not yet valid) or expired."""
        now = timezone.now()
        if self.revoked_at is not None:
            return "disabled"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        if self.not_before is not None and self.not_before > now:
            return "disabled"
        return "active"

    def allows_ip(self, ip: str | None) -> bool:
        if not self.allowed_networks:
            return True
        if not ip:
            return False
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in ipaddress.ip_network(net, strict=False) for net in self.allowed_networks)
