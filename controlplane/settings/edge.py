"""The edge: which hosts are the control plane's own, and the edge's timeouts."""

from __future__ import annotations

from urllib.parse import urlsplit

from .base import ALLOWED_HOSTS, AUTH_DOMAIN, PUBLIC_URL
from .env import env_int, env_list, env_str

# Requests for these hosts (and for team domains under AUTH_DOMAIN) are the control plane's: UI, API, connector
# websockets. Every other Host is looked up among public hostnames by the edge. They take precedence, so no
# tunnel can capture the control plane's own address. The host connectors dial (CONNECTOR_EDGE_URL, e.g. the edge
# role's own name in production) is one of them: that is where the edge process serves /connector/v1.
CONTROL_PLANE_HOSTS = sorted(
    {
        *(host for host in ALLOWED_HOSTS if host and not host.startswith(".") and host != "*"),
        (urlsplit(PUBLIC_URL).hostname or "").lower(),
        (urlsplit(env_str("CONNECTOR_EDGE_URL") or "").hostname or "").lower(),
        "127.0.0.1",
        "localhost",
        "[::1]",
        *env_list("CONTROL_PLANE_HOSTS", []),
    }
    - {""}
)
CONTROL_PLANE_DOMAIN_SUFFIXES = [f".{AUTH_DOMAIN}"]

# How long the edge waits for the origin's response head (Cloudflare answers 524 after 100 s).
EDGE_RESPONSE_TIMEOUT_SECONDS = env_int("EDGE_RESPONSE_TIMEOUT_SECONDS", 100)
# Clients whose address the edge trusts to set X-Forwarded-For / X-Forwarded-Proto (a load balancer in front).
EDGE_TRUSTED_PROXY_COUNT = env_int("EDGE_TRUSTED_PROXY_COUNT", 0)
# Cross-instance forwarding (production, REDIS_URL set): the address the other server instances use to reach this
# one's peer endpoint, e.g. ws://10.0.0.5:8000. Unset: ws://<this host's address>:<the port this process serves>.
EDGE_PEER_URL: str = env_str("EDGE_PEER_URL") or ""
