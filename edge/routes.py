"""Public hostname → tunnel, cached per process.

The table is built from the DNS CNAMEs that point into the tunnel domain (what a public hostname creates), loaded
once per process, replaced when a `routes` event says a record changed (published after commit by the DNS and
tunnel services, delivered through the hubs), and reloaded every RELOAD_SECONDS as a safety net against a lost
event. The request path only reads a dict: no database, no Django, per request."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

RELOAD_SECONDS = 30.0


@dataclass(frozen=True)
class Route:
    hostname: str
    organisation_id: uuid.UUID
    tunnel_id: uuid.UUID


class RouteTable:
    def __init__(self) -> None:
        self.exact: dict[str, Route] = {}
        self.wildcards: dict[str, Route] = {}  # "example.com" for "*.example.com"
        self.loaded_at = 0.0
        self._loading: asyncio.Future | None = None

    def lookup(self, host: str) -> Route | None:
        """Exact name first, then the nearest `*.<ancestor>` (a wildcard covers any depth, never the apex)."""
        route = self.exact.get(host)
        if route is not None:
            return route
        if not self.wildcards:
            return None
        dot = host.find(".")
        while dot != -1:
            route = self.wildcards.get(host[dot + 1 :])
            if route is not None:
                return route
            dot = host.find(".", dot + 1)
        return None

    def replace(self, routes: list[Route]) -> None:
        exact, wildcards = {}, {}
        for route in routes:
            if route.hostname.startswith("*."):
                wildcards[route.hostname[2:]] = route
            else:
                exact[route.hostname] = route
        self.exact, self.wildcards = exact, wildcards
        self.loaded_at = time.monotonic()

    @property
    def stale(self) -> bool:
        return time.monotonic() - self.loaded_at > RELOAD_SECONDS

    async def refresh(self, load) -> None:
        """Reload through `load` (a coroutine function returning routes); concurrent callers share one load."""
        if self._loading is None:
            self._loading = asyncio.ensure_future(load())
            try:
                self.replace(await self._loading)
            finally:
                self._loading = None
        else:
            await asyncio.shield(self._loading)


def load_routes() -> list[Route]:
    """Every live tunnel route of the installation (sync; run in the hub's database thread)."""
    from django.db import close_old_connections

    from controlplane.models import DnsRecord
    from tunnels.dns import MANAGED_BY_TUNNEL
    from tunnels.models import Tunnel

    close_old_connections()
    live_tunnels = Tunnel.objects.unscoped("the edge routes every organisation's public hostnames").filter(
        deleted_at__isnull=True
    )
    rows = (
        DnsRecord.objects.unscoped("the edge routes every organisation's public hostnames")
        .filter(type="CNAME", managed_by=MANAGED_BY_TUNNEL, managed_by_id__in=live_tunnels.values("pk"))
        .values_list("name", "organisation_id", "managed_by_id")
    )
    return [Route(hostname=name, organisation_id=org, tunnel_id=tunnel) for name, org, tunnel in rows]
