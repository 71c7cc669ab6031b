"""DNS records of a zone. CNAMEs to <tunnel id>.<TUNNEL_DOMAIN> are what route a public hostname to a tunnel."""

from __future__ import annotations

import uuid

from django.conf import settings
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
    tunnel = models.ForeignKey(
        "tunnels.Tunnel", on_delete=models.SET_NULL, null=True, blank=True, related_name="dns_records"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "type"]
        indexes = [models.Index(fields=["name"], name="controlplane_dns_name")]

    def __str__(self) -> str:
        return f"{self.name} {self.type} {self.content}"

    @property
    def is_tunnel_route(self) -> bool:
        return self.type == "CNAME" and self.content.endswith("." + settings.TUNNEL_DOMAIN)
