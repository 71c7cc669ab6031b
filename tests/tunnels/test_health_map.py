"""tunnel_health_map (tunnels/selectors.py) on real rows written by the ledger: several tunnels in one call, each
with its own connectors, a missing connection explained by its last close, a stopped connector left out, nothing of
another organisation, and a constant number of queries (the status page and the API lists call it)."""

from __future__ import annotations

import datetime
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from controlplane.actors import Actor
from tunnels import ledger
from tunnels.choices import TunnelStatus
from tunnels.fanout import status_snapshots
from tunnels.logic.status import compute_health
from tunnels.models import Tunnel
from tunnels.selectors import ListedTunnel, tunnel_health_map, tunnel_list_pages
from tunnels.services import tunnel_create

pytestmark = [pytest.mark.django_db(transaction=True)]  # the ledger's flush closes old connections, as in the hub


def opens(tunnel, connector_id, count, *, expected=None, version="2026.1.0"):
    return [
        ledger.ConnOpen(
            connection_id=uuid.uuid4(),
            organisation_id=tunnel.organisation_id,
            tunnel_id=tunnel.pk,
            connector_id=connector_id,
            conn_index=index,
            expected_connections=expected or count,
            version=version,
            arch="linux_amd64",
            platform="linux",
            hostname=f"host-{str(connector_id)[:4]}",
            local_ip="",
            origin_ip="192.0.2.7",
            features=["streams"],
            config_version=-1,
            opened_at=timezone.now() - datetime.timedelta(minutes=5),
        )
        for index in range(count)
    ]


def close(item, reason):
    return ledger.ConnClose(
        item.connection_id, item.organisation_id, item.tunnel_id, item.connector_id, reason, timezone.now()
    )


def fresh(tunnel):
    return Tunnel.objects.for_org(tunnel.organisation).get(pk=tunnel.pk)


def test_health_of_several_tunnels_in_one_call(org_a, admin_a, org_b, admin_b, tunnel_a):
    tunnel_c = tunnel_create(organisation=org_a, name="office", actor=Actor(user=admin_a))
    other = tunnel_create(organisation=org_b, name="theirs", actor=Actor(user=admin_b))
    a1, a2, c1, c_stopped = (uuid.uuid4() for _ in range(4))
    a1_rows, a2_rows = opens(tunnel_a, a1, 2), opens(tunnel_a, a2, 2)
    c1_rows, stopped_rows = opens(tunnel_c, c1, 4), opens(tunnel_c, c_stopped, 1)
    ledger.flush(
        ledger.Batch(opens=[*a1_rows, *a2_rows, *c1_rows, *stopped_rows, *opens(other, uuid.uuid4(), 2)]), "s-1"
    )
    ledger.flush(
        ledger.Batch(closes=[close(c1_rows[1], "origin host rebooted"), close(stopped_rows[0], "stopped")]), "s-1"
    )
    ledger.flush(ledger.Batch(acks=[ledger.ConfigAck(org_a.pk, tunnel_a.pk, a1, 3, "")]), "s-1")  # a1 runs version 3

    tunnels = [fresh(tunnel_a), fresh(tunnel_c)]
    with CaptureQueriesContext(connection) as queries:
        health = tunnel_health_map(organisation=org_a, tunnels=tunnels)
    assert len(queries.captured_queries) == 3

    a = health[tunnel_a.pk]
    assert a.status == TunnelStatus.HEALTHY
    assert a.explanation == "2 connectors with 4 connections, all up."
    by_id = {h.connector.connector_id: h for h in a.connectors}
    assert set(by_id) == {str(a1), str(a2)}
    assert by_id[str(a1)].connector.config_version == 3 and by_id[str(a2)].connector.config_version == -1
    assert by_id[str(a1)].connector.features == ("streams",)
    assert [c.conn_index for c in by_id[str(a1)].connections] == [0, 1]
    assert {c.id for c in by_id[str(a1)].connections} == {str(r.connection_id) for r in a1_rows}

    c = health[tunnel_c.pk]
    assert c.status == TunnelStatus.DEGRADED
    assert [h.connector.connector_id for h in c.connectors] == [str(c1)]  # the stopped connector is not running
    assert [index for index, _ in c.connectors[0].missing] == [1]
    assert "origin host rebooted" in c.connectors[0].missing[0][1]
    assert "connection #1: closed at" in c.explanation

    # No connection of another organisation, even when its tunnel is asked for (it has two live ones).
    assert tunnel_health_map(organisation=org_a, tunnels=[fresh(other)])[other.pk].connectors == []
    assert tunnel_health_map(organisation=org_b, tunnels=[fresh(other)])[other.pk].status == TunnelStatus.HEALTHY


def test_the_query_count_does_not_grow_with_tunnels_or_connections(org_a, admin_a, tunnel_a):
    tunnels = [tunnel_a] + [
        tunnel_create(organisation=org_a, name=f"t-{n}", actor=Actor(user=admin_a)) for n in range(3)
    ]
    rows = [row for t in tunnels for _ in range(3) for row in opens(t, uuid.uuid4(), 4)]
    ledger.flush(ledger.Batch(opens=rows), "s-1")
    ledger.flush(ledger.Batch(closes=[close(rows[0], "lost"), close(rows[5], "lost")]), "s-1")
    for subset in ([fresh(tunnel_a)], [fresh(t) for t in tunnels]):
        with CaptureQueriesContext(connection) as queries:
            health = tunnel_health_map(organisation=org_a, tunnels=subset)
        assert len(queries.captured_queries) == 3
        live = sum(len(h.connections) for th in health.values() for h in th.connectors)
        assert live == 12 * len(subset) - 2  # both closed connections were tunnel_a's


def test_the_status_snapshot_lists_every_live_connection(org_a, tunnel_a):
    connector = uuid.uuid4()
    rows = opens(tunnel_a, connector, 4)
    ledger.flush(ledger.Batch(opens=rows), "s-1")
    [snapshot] = status_snapshots(org_a.pk, {tunnel_a.pk})
    assert snapshot["status"] == TunnelStatus.HEALTHY
    [listed] = snapshot["connectors"]
    assert listed["id"] == str(connector) and listed["expected_connections"] == 4
    assert [c["id"] for c in listed["connections"]] == [str(r.connection_id) for r in rows]
    assert listed["connections"][0]["opened_at"] == rows[0].opened_at.isoformat()


def test_listed_rows_get_the_health_models_get_and_an_unconnected_tunnel_the_shared_answer(org_a, admin_a, tunnel_a):
    gone = tunnel_create(organisation=org_a, name="was-up", actor=Actor(user=admin_a))
    never = tunnel_create(organisation=org_a, name="never-up", actor=Actor(user=admin_a))
    up, was = opens(tunnel_a, uuid.uuid4(), 2, expected=3), opens(gone, uuid.uuid4(), 1)
    ledger.flush(ledger.Batch(opens=[*up, *was]), "s-1")
    ledger.flush(ledger.Batch(closes=[close(was[0], "stopped")]), "s-1")

    rows = list(tunnel_list_pages(organisation=org_a))
    assert {type(row) for row in rows} == {ListedTunnel}
    models = [Tunnel.objects.for_org(org_a).get(pk=row.id) for row in rows]
    from_rows = tunnel_health_map(organisation=org_a, tunnels=rows)
    assert from_rows == tunnel_health_map(organisation=org_a, tunnels=models)
    assert from_rows[tunnel_a.pk].status == TunnelStatus.DEGRADED
    assert (from_rows[gone.pk].status, from_rows[never.pk].status) == (TunnelStatus.DOWN, TunnelStatus.INACTIVE)
    # What compute_health says of no live connection: the same object every time.
    for tunnel in (fresh(gone), fresh(never)):
        alone = compute_health(
            ever_connected=tunnel.conns_active_at is not None, config_version=0, connectors=[], live=[]
        )
        assert from_rows[tunnel.pk] is alone and alone.connectors == []
