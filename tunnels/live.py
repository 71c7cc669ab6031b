"""The JSON the live status page receives for a tunnel (initial snapshot and every update), and for an origin
error (the page's "Recent origin errors", the API's `…/cfd_tunnel/{id}/origin_errors`)."""

from __future__ import annotations

from typing import Any

from tunnels.choices import STATUS_MEANING
from tunnels.logic.status import TunnelHealth
from tunnels.models import OriginError, Tunnel


def tunnel_status_json(tunnel: Tunnel, health: TunnelHealth) -> dict[str, Any]:
    return {
        "id": str(tunnel.id),
        "name": tunnel.name,
        "deleted": tunnel.deleted_at is not None,
        "status": health.status,
        "status_meaning": STATUS_MEANING.get(health.status, ""),
        "explanation": health.explanation,
        "config_version": tunnel.config_version,
        "connectors": [
            {
                "id": h.connector.connector_id,
                "version": h.connector.version,
                "arch": h.connector.arch,
                "platform": h.connector.platform,
                "hostname": h.connector.hostname,
                "origin_ip": h.connector.origin_ip,
                "run_at": h.connector.run_at.isoformat(),
                "config_version": h.connector.config_version,
                "config_outdated": h.config_outdated,
                "config_error": h.connector.config_error,
                "expected_connections": h.connector.expected_connections,
                "connections": [
                    {
                        "id": c.id,
                        "index": c.conn_index,
                        "origin_ip": c.origin_ip,
                        "opened_at": c.opened_at.isoformat(),
                        "server": c.server_id,
                    }
                    for c in h.connections
                ],
                "missing": [{"index": i, "reason": why} for i, why in h.missing],
            }
            for h in health.connectors
        ],
    }


def origin_error_json(row: OriginError) -> dict[str, Any]:
    return {
        "id": row.pk,
        "occurred_at": row.occurred_at.isoformat(),
        "request_id": row.request_id,
        "hostname": row.hostname,
        "method": row.method,
        "path": row.path,
        "status": row.status,
        "reason": row.reason,
        "unrecorded": row.unrecorded,
    }
