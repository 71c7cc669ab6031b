"""Tunnels, their versioned configuration, and the connectors and connections that serve them."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from controlplane.scoping import OrgOwnedModel


class Tunnel(OrgOwnedModel):
    """An outbound-only link from a private network to the edge. The 32-byte secret is stored encrypted
    (Fernet, settings.DATA_ENCRYPTION_KEYS) so that the token can be shown again."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=255)
    config_src = models.CharField(max_length=16, default="cloudflare")
    secret_ciphertext = models.TextField(editable=False)
    secret_rotated_at = models.DateTimeField(null=True, blank=True)
    config_version = models.IntegerField(default=0)
    config = models.JSONField(default=dict, blank=True)
    conns_active_at = models.DateTimeField(null=True, blank=True)
    conns_inactive_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        # The list, newest first (all tunnels: the API's default, or the live or the deleted ones), reads one page
        # in index order instead of sorting every tunnel of the organisation, and counts from the index alone
        # (issue 13: a page of an organisation with 1,000 tunnels spent half its time sorting).
        indexes = [models.Index(fields=["organisation", "-created_at", "deleted_at"], name="tunnels_tunnel_org_newest")]
        constraints = [
            models.UniqueConstraint(
                fields=["organisation", "name"],
                condition=models.Q(deleted_at__isnull=True),
                name="tunnels_tunnel_unique_live_name",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    @property
    def cname_target(self) -> str:
        return f"{self.id}.{settings.TUNNEL_DOMAIN}"


class TunnelConfiguration(OrgOwnedModel):
    """One version of a tunnel's remote-managed configuration; the newest is mirrored on Tunnel.config."""

    tunnel = models.ForeignKey(Tunnel, on_delete=models.CASCADE, related_name="configurations")
    version = models.IntegerField()
    config = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by_email = models.CharField(max_length=254, blank=True)

    class Meta:
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(fields=["tunnel", "version"], name="tunnels_configuration_unique_version")
        ]


class Connector(OrgOwnedModel):
    """One run of a connector process (its id is a fresh UUID per start, chosen by the connector)."""

    tunnel = models.ForeignKey(Tunnel, on_delete=models.CASCADE, related_name="connectors")
    connector_id = models.UUIDField()
    version = models.CharField(max_length=64, blank=True)
    arch = models.CharField(max_length=64, blank=True)
    platform = models.CharField(max_length=128, blank=True)
    hostname = models.CharField(max_length=255, blank=True)
    local_ip = models.CharField(max_length=64, blank=True)
    origin_ip = models.CharField(max_length=64, blank=True)
    features = models.JSONField(default=list, blank=True)
    expected_connections = models.PositiveSmallIntegerField(default=1)
    config_version = models.IntegerField(default=-1)
    config_error = models.CharField(max_length=1000, blank=True)
    run_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    disconnected_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-run_at"]
        constraints = [
            models.UniqueConstraint(fields=["tunnel", "connector_id"], name="tunnels_connector_unique_per_tunnel")
        ]

    def __str__(self) -> str:
        return str(self.connector_id)


class Connection(OrgOwnedModel):
    """One websocket between a connector and a server instance."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tunnel = models.ForeignKey(Tunnel, on_delete=models.CASCADE, related_name="connections")
    connector = models.ForeignKey(Connector, on_delete=models.CASCADE, related_name="connections")
    conn_index = models.PositiveSmallIntegerField(default=0)
    origin_ip = models.CharField(max_length=64, blank=True)
    server_id = models.CharField(max_length=64)
    opened_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    close_reason = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["conn_index", "-opened_at"]
        indexes = [
            models.Index(fields=["tunnel", "closed_at"], name="tunnels_connection_live"),
            models.Index(fields=["server_id", "closed_at"], name="tunnels_connection_server"),
        ]


class ServerInstance(models.Model):
    """A running server process that holds connector connections. Installation-wide, not organisation data."""

    server_id = models.CharField(max_length=64, primary_key=True)
    hostname = models.CharField(max_length=255, blank=True)
    pid = models.IntegerField(default=0)
    started_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    stopped_at = models.DateTimeField(null=True, blank=True)
    # Where the other instances reach this one to forward requests for the tunnels it holds (dataplane/peers.py),
    # e.g. ws://10.0.0.5:8000; empty when it does not take part (embedded mode, or its address is unknown).
    peer_url = models.CharField(max_length=255, blank=True)


class NotificationDestination(OrgOwnedModel):
    """Where tunnel alerts go: email addresses, or a webhook signed with HMAC-SHA256 over the body."""

    KIND_EMAIL = "email"
    KIND_WEBHOOK = "webhook"
    ALERT_HEALTH = "tunnel_health_event"
    ALERT_UPDATE = "tunnel_update_event"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=120)
    kind = models.CharField(max_length=16, choices=[(KIND_EMAIL, "Email"), (KIND_WEBHOOK, "Webhook")])
    emails = models.JSONField(default=list, blank=True)
    url = models.URLField(max_length=2000, blank=True)
    secret_ciphertext = models.TextField(blank=True, editable=False)
    alert_types = models.JSONField(default=list)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TunnelAlertState(OrgOwnedModel):
    """The last health status announced for a tunnel, so that an alert is sent once per real change."""

    tunnel = models.OneToOneField(Tunnel, on_delete=models.CASCADE, related_name="alert_state")
    notified_status = models.CharField(max_length=16, default="inactive")
    notified_at = models.DateTimeField(null=True, blank=True)


class OriginError(OrgOwnedModel):
    """A request the edge answered with an error page (502, 504, 530) on behalf of this tunnel: what the visitor
    was not told (the origin's address, the TLS failure, the connector's reason), for the tunnel's members.
    Written in batches by the edge process that saw it (edge/errors.py); pruned to the newest rows per tunnel."""

    tunnel = models.ForeignKey(Tunnel, on_delete=models.CASCADE, related_name="origin_errors")
    occurred_at = models.DateTimeField()
    request_id = models.CharField(max_length=64)
    hostname = models.CharField(max_length=255)
    method = models.CharField(max_length=16, blank=True)
    path = models.CharField(max_length=512, blank=True)
    status = models.PositiveSmallIntegerField()
    reason = models.CharField(max_length=1000)
    # Errors of this tunnel that the recording edge process left out around this one (over its bounds).
    unrecorded = models.PositiveIntegerField(default=0)
    server_id = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [
            models.Index(fields=["tunnel", "-occurred_at"], name="tunnels_originerr_recent"),
            models.Index(fields=["organisation", "request_id"], name="tunnels_originerr_request"),
            models.Index(fields=["occurred_at"], name="tunnels_originerr_age"),
        ]

    def __str__(self) -> str:
        return f"{self.status} {self.hostname} {self.request_id}"
