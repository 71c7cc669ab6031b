"""Writes on tunnels, by concern: `lifecycle` (create, rename, rotate the secret, delete, disconnect), `config` (the
configuration whole or one public hostname at a time, and its DNS routes), `notifications` (alert destinations).
Each takes `actor`, writes its audit event in the same transaction, and publishes its event to the hubs after commit.
Callers import from `tunnels.services`; the names below are its public interface."""

from tunnels.services.config import (
    MAX_CONFIG_BYTES,
    MAX_INGRESS_RULES,
    check_config_limits,
    config_diff,
    public_hostname_delete,
    public_hostname_save,
    tunnel_config_update,
    tunnel_routes,
    validate_tunnel_config,
)
from tunnels.services.lifecycle import (
    CLOSE_FORCED,
    CLOSE_TOKEN_ROTATED,
    CLOSE_TUNNEL_DELETED,
    connections_disconnect,
    live_connection_count,
    tunnel_create,
    tunnel_delete,
    tunnel_rotate_secret,
    tunnel_token,
    tunnel_update,
)
from tunnels.services.notifications import notification_destination_create, notification_destination_delete

__all__ = [
    "CLOSE_FORCED",
    "CLOSE_TOKEN_ROTATED",
    "CLOSE_TUNNEL_DELETED",
    "MAX_CONFIG_BYTES",
    "MAX_INGRESS_RULES",
    "check_config_limits",
    "config_diff",
    "connections_disconnect",
    "live_connection_count",
    "notification_destination_create",
    "notification_destination_delete",
    "public_hostname_delete",
    "public_hostname_save",
    "tunnel_config_update",
    "tunnel_create",
    "tunnel_delete",
    "tunnel_rotate_secret",
    "tunnel_routes",
    "tunnel_token",
    "tunnel_update",
    "validate_tunnel_config",
]
