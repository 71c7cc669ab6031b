"""The edge: which hosts are the control plane's own, and the edge's timeouts."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

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
# How many reverse proxies (a TLS terminator, a load balancer) stand in front of this process, each appending the
# address it received from to X-Forwarded-For. One setting for the control plane (sign-in throttling, IP-restricted
# tokens, the audit log) and the edge (the visitor address passed to origins). 0: X-Forwarded-For is ignored.
# EDGE_TRUSTED_PROXY_COUNT is its former, edge-only name, still read when TRUSTED_PROXY_COUNT is unset.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", env_int("EDGE_TRUSTED_PROXY_COUNT", 0))
if TRUSTED_PROXY_COUNT < 0:
    raise ImproperlyConfigured(f"TRUSTED_PROXY_COUNT must be 0 or more, got {TRUSTED_PROXY_COUNT}")
if env_str("TRUSTED_PROXY_COUNT") and env_int("EDGE_TRUSTED_PROXY_COUNT", TRUSTED_PROXY_COUNT) != TRUSTED_PROXY_COUNT:
    raise ImproperlyConfigured("TRUSTED_PROXY_COUNT and the deprecated EDGE_TRUSTED_PROXY_COUNT disagree: set one.")
# Cross-instance forwarding (production, REDIS_URL set): the address the other server instances use to reach this
# one's peer endpoint, e.g. ws://10.0.0.5:8000. Unset: ws://<this host's address>:<the port this process serves>.
EDGE_PEER_URL: str = env_str("EDGE_PEER_URL") or ""
