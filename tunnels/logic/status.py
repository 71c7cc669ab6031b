"""Tunnel health, derived from live connections and explained. Never stored: it cannot go stale.

inactive  no connector has ever connected
healthy   every running connector has all the connections it asked for
degraded  serving, but some connector runs with fewer connections than it asked for (which ones, and why)
down      connected before, no live connection now
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass, field

from tunnels.choices import TunnelStatus


@dataclass(frozen=True)
class ConnectionView:
    id: str
    connector_id: str
    conn_index: int
    origin_ip: str
    opened_at: datetime.datetime
    server_id: str
    closed_at: datetime.datetime | None = None
    close_reason: str = ""


@dataclass(frozen=True)
class ConnectorView:
    connector_id: str
    version: str
    arch: str
    platform: str
    hostname: str
    origin_ip: str
    expected_connections: int
    config_version: int
    config_error: str
    run_at: datetime.datetime
    features: tuple[str, ...] = ()


@dataclass
class ConnectorHealth:
    connector: ConnectorView
    connections: list[ConnectionView]
    missing: list[tuple[int, str]] = field(default_factory=list)  # (conn_index, why)
    config_outdated: bool = False

    @property
    def healthy(self) -> bool:
        return not self.missing


@dataclass(frozen=True)
class TunnelHealth:
    status: str
    explanation: str
    connectors: list[ConnectorHealth]  # never changed once made (the unconnected healths are shared)


# The health of a tunnel without a live connection: one of two answers, made once (most tunnels of a list have no
# connector; their health costs a check, issue 13).
_DOWN = TunnelHealth(TunnelStatus.DOWN, "No connector is connected; it was connected before.", [])
_INACTIVE = TunnelHealth(TunnelStatus.INACTIVE, "No connector has ever connected.", [])


def unconnected_health(*, ever_connected: bool) -> TunnelHealth:
    """What `compute_health` says of a tunnel with no live connection (shared: not to be changed)."""
    return _DOWN if ever_connected else _INACTIVE


def compute_health(
    *,
    ever_connected: bool,
    config_version: int,
    connectors: Iterable[ConnectorView],
    live: Iterable[ConnectionView],
    last_closed: Iterable[ConnectionView] = (),
) -> TunnelHealth:
    """`live` are open connections; `last_closed` the most recent closed connection per (connector, index),
    used to explain the missing ones."""
    by_connector: dict[str, list[ConnectionView]] = {}
    for conn in live:
        by_connector.setdefault(conn.connector_id, []).append(conn)
    closed_by_key = {(c.connector_id, c.conn_index): c for c in last_closed}
    healths: list[ConnectorHealth] = []
    for connector in connectors:
        conns = sorted(by_connector.get(connector.connector_id, []), key=lambda c: c.conn_index)
        if not conns:
            continue  # that connector is not running
        up = {c.conn_index for c in conns}
        missing = []
        for index in range(connector.expected_connections):
            if index not in up:
                closed = closed_by_key.get((connector.connector_id, index))
                if closed is not None and closed.closed_at is not None:
                    missing.append(
                        (
                            index,
                            f"closed at {closed.closed_at:%H:%M:%S} UTC: {closed.close_reason or 'no reason given'}",
                        )
                    )
                else:
                    missing.append((index, "never opened"))
        healths.append(
            ConnectorHealth(
                connector=connector,
                connections=conns,
                missing=missing,
                config_outdated=config_version > 0 and connector.config_version < config_version,
            )
        )
    if not healths:
        return unconnected_health(ever_connected=ever_connected)
    degraded = [h for h in healths if not h.healthy]
    if degraded:
        parts = []
        for health in degraded:
            short = health.connector.connector_id[:8]
            count = len(health.connections)
            want = health.connector.expected_connections
            reasons = "; ".join(f"connection #{index}: {why}" for index, why in health.missing)
            parts.append(f"connector {short} has {count} of {want} connections ({reasons})")
        return TunnelHealth(TunnelStatus.DEGRADED, "Serving, but " + "; ".join(parts) + ".", healths)
    total = sum(len(h.connections) for h in healths)
    connectors_text = f"{len(healths)} connector{'s' if len(healths) != 1 else ''}"
    connections_text = f"{total} connection{'s' if total != 1 else ''}"
    return TunnelHealth(TunnelStatus.HEALTHY, f"{connectors_text} with {connections_text}, all up.", healths)
