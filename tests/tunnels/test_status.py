"""Tunnel health is derived and explained."""

from __future__ import annotations

import datetime

from tunnels.choices import TunnelStatus
from tunnels.logic.status import ConnectionView, ConnectorView, compute_health

NOW = datetime.datetime(2026, 11, 25, 12, 0, tzinfo=datetime.UTC)


def connector(cid: str, expected: int = 2, config_version: int = 1) -> ConnectorView:
    return ConnectorView(cid, "1.0", "linux_amd64", "linux", "host", "1.2.3.4", expected, config_version, "", NOW)


def conn(cid: str, index: int, closed: bool = False, reason: str = "") -> ConnectionView:
    return ConnectionView(
        f"{cid}-{index}", cid, index, "1.2.3.4", NOW, "srv", closed_at=NOW if closed else None, close_reason=reason
    )


def test_never_connected_is_inactive():
    health = compute_health(ever_connected=False, config_version=0, connectors=[], live=[])
    assert health.status == TunnelStatus.INACTIVE


def test_was_connected_and_now_nothing_is_down():
    health = compute_health(ever_connected=True, config_version=0, connectors=[connector("a")], live=[])
    assert health.status == TunnelStatus.DOWN


def test_all_connections_up_is_healthy():
    health = compute_health(
        ever_connected=True, config_version=1, connectors=[connector("a")], live=[conn("a", 0), conn("a", 1)]
    )
    assert health.status == TunnelStatus.HEALTHY
    assert "1 connector with 2 connections" in health.explanation


def test_a_missing_connection_is_degraded_and_says_which_and_why():
    health = compute_health(
        ever_connected=True,
        config_version=1,
        connectors=[connector("aaaaaaaa-1"), connector("bbbbbbbb-2")],
        live=[conn("aaaaaaaa-1", 0), conn("bbbbbbbb-2", 0), conn("bbbbbbbb-2", 1)],
        last_closed=[conn("aaaaaaaa-1", 1, closed=True, reason="heartbeat timeout")],
    )
    assert health.status == TunnelStatus.DEGRADED
    assert "connector aaaaaaaa has 1 of 2 connections" in health.explanation
    assert "connection #1" in health.explanation and "heartbeat timeout" in health.explanation
    assert "bbbbbbbb" not in health.explanation


def test_a_stopped_connector_does_not_degrade_a_running_one():
    health = compute_health(
        ever_connected=True,
        config_version=1,
        connectors=[connector("a"), connector("b")],
        live=[conn("b", 0), conn("b", 1)],
    )
    assert health.status == TunnelStatus.HEALTHY
    assert [h.connector.connector_id for h in health.connectors] == ["b"]


def test_outdated_config_is_flagged_per_connector():
    health = compute_health(
        ever_connected=True,
        config_version=3,
        connectors=[connector("a", expected=1, config_version=2)],
        live=[conn("a", 0)],
    )
    assert health.connectors[0].config_outdated
