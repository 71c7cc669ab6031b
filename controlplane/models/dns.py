"""DNS records of a zone. A product app may manage some (tunnels: the CNAMEs that route a public hostname)."""

from __future__ import annotations

import uuid

from django.db import models

from controlplane.scoping import OrgOwnedModel


class DnsRecord(OrgOwnedModel):
    """A record in one of the organisation's zones. `tunnel` is set on CNAMEs that route to a tunnel (created with
    a public hostname and removed with it)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    zone = models.ForeignKey("controlplane.Zone", on_delete=models.CASCADE, related_name="dns_records")
    type = models.CharField(max_length=10)
    name = models.CharField(max_length=253)
    content = models.CharField(max_length=4096)
    ttl = models.PositiveIntegerField(default=1)
    proxied = models.BooleanField(default=False)
    comment = models.CharField(max_length=500, blank=True)
    tags = models.JSONField(default=list, blank=True)
    # Which object of a product app keeps this record in step (a tunnel's public hostname: "tunnel" + its id).
    # Generic on purpose: the core knows product apps only through what they register (services/dns.py).
    managed_by = models.CharField(max_length=32, blank=True, default="")
    managed_by_id = models.UUIDField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "type"]
        indexes = [models.Index(fields=["name"], name="controlplane_dns_name")]

    def __str__(self) -> str:
        return f"{self.name} {self.type} {self.content}"
