"""Input and output shapes of the tunnel API (Cloudflare's CloudflareTunnel, Client, configuration)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rest_framework import serializers

from controlplane.api.pagination import V4Pagination
from controlplane.api.serializers.common import StrictCharField, documented
from tunnels.logic.status import ConnectionView, ConnectorHealth, TunnelHealth
from tunnels.models import Tunnel

if TYPE_CHECKING:
    from tunnels.selectors import ListedTunnel

# Standard base64 of at least 32 bytes (tunnels.secrets.parse_user_secret): ten groups of 4 characters (30 bytes),
# then one of 3 + "=" (32 bytes), or more full groups with any padding.
_B64 = "[A-Za-z0-9+/]"
TUNNEL_SECRET_SCHEMA = {
    "type": "string",
    "format": "byte",
    "pattern": rf"^(?:{_B64}{{4}}){{10}}(?:{_B64}{{3}}=|(?:{_B64}{{4}})+(?:{_B64}{{2}}==|{_B64}{{3}}=)?)$",
}


class TunnelCreateInput(serializers.Serializer):
    name = StrictCharField(max_length=255, trim_whitespace=True)
    config_src = serializers.ChoiceField(choices=["cloudflare", "local"], required=False, default="cloudflare")
    tunnel_secret = documented(serializers.CharField(required=False, allow_blank=False), TUNNEL_SECRET_SCHEMA)


class TunnelListQuery(serializers.Serializer):
    """Filters of the tunnel list (Cloudflare's); text filters refuse NUL and control characters."""

    empty_is_constant = True  # validated_query: no parameter, the same defaults every time

    name = serializers.CharField(required=False, max_length=255)
    uuid = serializers.UUIDField(required=False)
    is_deleted = serializers.BooleanField(required=False, allow_null=True, default=None)
    status = serializers.ChoiceField(choices=["inactive", "healthy", "degraded", "down"], required=False)
    include_prefix = serializers.CharField(required=False, max_length=255)
    exclude_prefix = serializers.CharField(required=False, max_length=255)
    existed_at = serializers.DateTimeField(required=False)
    was_active_at = serializers.DateTimeField(required=False)
    was_inactive_at = serializers.DateTimeField(required=False)
    page = serializers.FloatField(required=False, min_value=1)
    per_page = serializers.FloatField(required=False, min_value=1, max_value=V4Pagination.max_per_page)


class TunnelEditInput(serializers.Serializer):
    name = StrictCharField(max_length=255, required=False)
    tunnel_secret = documented(serializers.CharField(required=False), TUNNEL_SECRET_SCHEMA)


class ConfigurationInput(serializers.Serializer):
    config = documented(
        serializers.JSONField(help_text="cloudflared's configuration: `ingress` rules, the last a catch-all."),
        {
            "type": "object",
            "required": ["ingress"],
            "properties": {
                "ingress": {"type": "array", "minItems": 1, "items": {"type": "object"}},
                "originRequest": {"type": "object"},
                "warp-routing": {"type": "object"},
            },
        },
    )


class ConnectionOutput(serializers.Serializer):
    id = serializers.CharField()
    uuid = serializers.CharField()
    client_id = serializers.CharField()
    client_version = serializers.CharField()
    colo_name = serializers.CharField()
    origin_ip = serializers.CharField()
    opened_at = serializers.DateTimeField()
    is_pending_reconnect = serializers.BooleanField()
    conn_index = serializers.IntegerField()


def connection_data(conn: ConnectionView, version: str) -> dict[str, Any]:
    return {
        "id": conn.id,
        "uuid": conn.id,
        "client_id": conn.connector_id,
        "client_version": version,
        "colo_name": conn.server_id,
        "origin_ip": conn.origin_ip,
        "opened_at": conn.opened_at,
        "is_pending_reconnect": False,
        "conn_index": conn.conn_index,
    }


def connector_data(health: ConnectorHealth, current_version: int) -> dict[str, Any]:
    c = health.connector
    return {
        "id": c.connector_id,
        "arch": c.arch,
        "version": c.version,
        "platform": c.platform,
        "hostname": c.hostname,
        "origin_ip": c.origin_ip,
        "config_version": c.config_version,
        "config_outdated": health.config_outdated,
        "config_error": c.config_error,
        "features": list(c.features),
        "run_at": c.run_at,
        "expected_connections": c.expected_connections,
        "missing_connections": [{"conn_index": i, "reason": why} for i, why in health.missing],
        "conns": [connection_data(conn, c.version) for conn in health.connections],
    }


class ConnectorOutput(serializers.Serializer):
    id = serializers.CharField()
    arch = serializers.CharField()
    version = serializers.CharField()
    config_version = serializers.IntegerField()
    config_outdated = serializers.BooleanField()
    run_at = serializers.DateTimeField()
    conns = ConnectionOutput(many=True)


class TunnelOutput(serializers.Serializer):
    """The v4 CloudflareTunnel, plus `status_explanation`."""

    id = serializers.UUIDField()
    account_tag = serializers.CharField()
    name = serializers.CharField()
    created_at = serializers.DateTimeField()
    deleted_at = serializers.DateTimeField(allow_null=True)
    conns_active_at = serializers.DateTimeField(allow_null=True)
    conns_inactive_at = serializers.DateTimeField(allow_null=True)
    status = serializers.CharField()
    status_explanation = serializers.CharField()
    tun_type = serializers.CharField()
    config_src = serializers.CharField()
    remote_config = serializers.BooleanField()
    config_version = serializers.IntegerField()
    metadata = serializers.DictField()
    connections = ConnectionOutput(many=True)


def tunnel_data(tunnel: Tunnel | ListedTunnel, health: TunnelHealth) -> dict[str, Any]:
    """A tunnel as the API shows it: a model instance, or a row of a list (tunnels.selectors.ListedTunnel)."""
    connections = (
        [connection_data(conn, h.connector.version) for h in health.connectors for conn in h.connections]
        if health.connectors
        else []
    )
    return {
        "id": tunnel.id,
        "account_tag": tunnel.organisation_id.hex,
        "name": tunnel.name,
        "created_at": tunnel.created_at,
        "deleted_at": tunnel.deleted_at,
        "conns_active_at": tunnel.conns_active_at if connections else None,
        "conns_inactive_at": None if connections else tunnel.conns_inactive_at,
        "status": health.status,
        "status_explanation": health.explanation,
        "tun_type": "cfd_tunnel",
        "config_src": tunnel.config_src,
        "remote_config": tunnel.config_src == "cloudflare",
        "config_version": tunnel.config_version,
        "metadata": {},
        "connections": connections,
    }


class ConfigurationOutput(serializers.Serializer):
    account_id = serializers.CharField()
    tunnel_id = serializers.UUIDField()
    version = serializers.IntegerField()
    source = serializers.CharField()
    created_at = serializers.DateTimeField(allow_null=True)
    config = serializers.DictField()


def configuration_data(tunnel: Tunnel, created_at: Any) -> dict[str, Any]:
    return {
        "account_id": tunnel.organisation_id.hex,
        "tunnel_id": tunnel.id,
        "version": tunnel.config_version,
        "source": tunnel.config_src,
        "created_at": created_at,
        "config": tunnel.config or {},
    }


class HostnameInput(serializers.Serializer):
    """One public hostname rule (cloudflared's ingress rule with a hostname)."""

    hostname = serializers.CharField(max_length=253)
    service = serializers.CharField(max_length=500)
    path = serializers.CharField(max_length=500, required=False, allow_blank=True)
    originRequest = serializers.DictField(required=False)  # noqa: N815 (the wire name)
    version = serializers.IntegerField(
        required=False, help_text="The configuration version you read; refused if it changed since."
    )

    def rule(self) -> dict[str, Any]:
        data = dict(self.validated_data)
        data.pop("version", None)
        if not data.get("path"):
            data.pop("path", None)
        return data


class HostnameOutput(serializers.Serializer):
    index = serializers.IntegerField()
    hostname = serializers.CharField()
    path = serializers.CharField(allow_blank=True)
    service = serializers.CharField()
    originRequest = serializers.DictField()  # noqa: N815
    config_version = serializers.IntegerField()


def hostnames_data(tunnel: Tunnel) -> list[dict[str, Any]]:
    rules = (tunnel.config or {}).get("ingress") or []
    return [
        {
            "index": index,
            "hostname": rule["hostname"],
            "path": rule.get("path", ""),
            "service": rule.get("service", ""),
            "originRequest": rule.get("originRequest") or {},
            "config_version": tunnel.config_version,
        }
        for index, rule in enumerate(rules)
        if rule.get("hostname")
    ]


class OriginErrorQuery(serializers.Serializer):
    request_id = serializers.CharField(
        required=False, max_length=64, help_text="Only errors whose request ID (cf-ray) starts with this."
    )
    page = serializers.FloatField(required=False, min_value=1)
    per_page = serializers.FloatField(required=False, min_value=1, max_value=V4Pagination.max_per_page)


class OriginErrorOutput(serializers.Serializer):
    """What the edge did not tell a visitor (edge/errors.py): the tunnel page's "Recent origin errors"."""

    id = serializers.IntegerField()
    occurred_at = serializers.DateTimeField()
    request_id = serializers.CharField(help_text="The ID the visitor's error page shows (cf-ray).")
    hostname = serializers.CharField()
    method = serializers.CharField(allow_blank=True)
    path = serializers.CharField(allow_blank=True)
    status = serializers.IntegerField(help_text="What the visitor got: 502, 504, 530 …")
    reason = serializers.CharField(help_text="Why, in words: the origin's address, the TLS failure, the connector's.")
    unrecorded = serializers.IntegerField(help_text="Errors of this tunnel around this one, over the edge's bounds.")
