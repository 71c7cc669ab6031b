"""Events about tunnels, published after commit to every server process's hub (see tunnels/hub.py).

Kinds: `config` (push a tunnel's new configuration to its connectors), `status` (a tunnel's live state changed:
refresh status pages), `disconnect` (close a tunnel's connections, or one connector's), `tunnel` (created,
renamed, rotated, deleted: refresh lists, drop cached secrets)."""

from __future__ import annotations

from typing import Any

from django.db import transaction


def _publish(event: dict[str, Any]) -> None:
    from tunnels.hub import publish

    transaction.on_commit(lambda: publish(event))


def config_changed(*, organisation_id: Any, tunnel_id: Any, version: int) -> None:
    _publish({"kind": "config", "org": str(organisation_id), "tunnel": str(tunnel_id), "version": version})


def tunnel_changed(*, organisation_id: Any, tunnel_id: Any) -> None:
    _publish({"kind": "tunnel", "org": str(organisation_id), "tunnel": str(tunnel_id)})


def status_changed(*, organisation_id: Any, tunnel_id: Any) -> None:
    _publish({"kind": "status", "org": str(organisation_id), "tunnel": str(tunnel_id)})


def disconnect(*, organisation_id: Any, tunnel_id: Any, connector_id: Any = None, code: int, reason: str) -> None:
    _publish(
        {
            "kind": "disconnect",
            "org": str(organisation_id),
            "tunnel": str(tunnel_id),
            "connector": str(connector_id) if connector_id else None,
            "code": code,
            "reason": reason,
        }
    )


def routes_changed(*, organisation_id: Any) -> None:
    """A DNS record changed: every edge reloads its hostname → tunnel table."""
    _publish({"kind": "routes", "org": str(organisation_id), "tunnel": ""})
