"""Tunnels, connectors and the edge."""

from __future__ import annotations

from .env import env_bool, env_int, env_list, env_str, persistent_secret


def _generate_fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


# Keys that encrypt tunnel secrets at rest (Fernet). The first encrypts; all decrypt, so keys can be rotated by
# prepending a new one. Embedded mode generates one into the data dir; production requires it.
# DATA_ENCRYPTION_KEYS (comma-separated) wins; else DATA_ENCRYPTION_KEY; else (embedded) the data dir's key.
DATA_ENCRYPTION_KEYS: list[str] = env_list("DATA_ENCRYPTION_KEYS", []) or [
    persistent_secret("DATA_ENCRYPTION_KEY", "encryption_key", _generate_fernet_key)
]

# CNAME target of public hostnames: <tunnel id>.<TUNNEL_DOMAIN>
TUNNEL_DOMAIN: str = env_str("TUNNEL_DOMAIN") or "cfargotunnel.localhost"
# Address connectors dial (put into tunnel tokens as "e"); defaults to PUBLIC_URL.
CONNECTOR_EDGE_URL: str = env_str("CONNECTOR_EDGE_URL") or ""

# Heartbeats on connector connections: sent every interval; a connection silent for 3 intervals is dead.
CONNECTOR_HEARTBEAT_SECONDS = env_int("CONNECTOR_HEARTBEAT_SECONDS", 10)
# Server instances report themselves alive this often; connections held by an instance silent for
# CONNECTOR_INSTANCE_DEADLINE seconds are closed by whichever instance sweeps first.
SERVER_INSTANCE_HEARTBEAT_SECONDS = env_int("SERVER_INSTANCE_HEARTBEAT_SECONDS", 10)
SERVER_INSTANCE_DEADLINE_SECONDS = env_int("SERVER_INSTANCE_DEADLINE_SECONDS", 45)
# Browsers' live status feed: a heartbeat this often, each after checking the session may still watch (signing
# out elsewhere closes the feed within this time); a page that hears nothing for 2 intervals greys its status.
LIVE_STATUS_RECHECK_SECONDS = env_int("LIVE_STATUS_RECHECK_SECONDS", 15)
# Largest websocket frame a connector may send.
CONNECTOR_MAX_FRAME_BYTES = env_int("CONNECTOR_MAX_FRAME_BYTES", 1024 * 1024 + 64)
# Notifications: a health change must hold this long before it is announced (flap damping).
TUNNEL_HEALTH_NOTIFY_DELAY_SECONDS = env_int("TUNNEL_HEALTH_NOTIFY_DELAY_SECONDS", 60)
# Webhooks go to public addresses only; 1 also allows loopback and private ranges (receivers on the operator's
# network). Link-local (cloud metadata), multicast, reserved addresses and the control plane itself stay refused.
WEBHOOK_ALLOW_PRIVATE = env_bool("WEBHOOK_ALLOW_PRIVATE", False)
# Each webhook connection, request and response wait is bounded by this (a failed try is retried later).
WEBHOOK_TIMEOUT_SECONDS = env_int("WEBHOOK_TIMEOUT_SECONDS", 10)
