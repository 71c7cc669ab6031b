"""A hostile connector cannot hurt another tenant (issue 14, item 1): every field it sends is bounded (the
connection is closed with 4008 and the reason), and the ledger writes every other row of a batch that holds one
it cannot write (bisecting around it), retries a database that is briefly unavailable, and never drops a row."""

from __future__ import annotations

import json
import uuid

import pytest
from asgiref.sync import sync_to_async
from django.db import OperationalError
from django.utils import timezone

from connector import protocol
from controlplane.actors import Actor
from tests.tunnels.test_connector_endpoint import closed, open_connector, receive, wait_for
from tunnels import ledger, selectors
from tunnels.choices import TunnelStatus
from tunnels.models import Connection, Connector
from tunnels.services import tunnel_create, tunnel_token

pytestmark = [pytest.mark.django_db(transaction=True)]


def raw_control(kind: protocol.Kind, payload: dict) -> bytes:
    """A control frame as a hostile connector writes it, bypassing the dataclasses' checks."""
    return protocol.encode_frame(kind, json.dumps(payload).encode())


@pytest.fixture
def tunnel_b(org_b, admin_b):
    return tunnel_create(organisation=org_b, name="hostile", actor=Actor(user=admin_b))


def status_of(tunnel) -> str:
    tunnel.refresh_from_db()
    return selectors.tunnel_health(tunnel=tunnel).status


def open_rows(tunnel) -> int:
    return Connection.objects.for_org(tunnel.organisation).filter(tunnel=tunnel, closed_at__isnull=True).count()


async def test_a_hostile_connector_in_b_cannot_change_what_as_status_says(fresh_hub, tunnel_a, tunnel_b):
    hostile, _ = await open_connector(await sync_to_async(tunnel_token)(tunnel_b))
    assert isinstance(await receive(hostile), protocol.Welcome)
    await wait_for(lambda: open_rows(tunnel_b) == 1)
    # A's connector registers while B's sends an ack whose version no column can hold: the same ledger batch.
    victim, _ = await open_connector(await sync_to_async(tunnel_token)(tunnel_a))
    await hostile.send_to(bytes_data=raw_control(protocol.Kind.CONFIG_ACK, {"version": 10**30, "applied": True}))
    assert isinstance(await receive(victim), protocol.Welcome)
    refused = await closed(hostile)
    assert refused["code"] == protocol.CloseCode.PROTOCOL_VIOLATION
    assert "CONFIG_ACK.version is out of range" in refused.get("reason", "")
    await wait_for(lambda: open_rows(tunnel_a) == 1)
    assert await sync_to_async(status_of)(tunnel_a) == TunnelStatus.HEALTHY
    await wait_for(lambda: open_rows(tunnel_b) == 0)
    # A's connector dies: A's status says so.
    await victim.disconnect()
    await wait_for(lambda: open_rows(tunnel_a) == 0)
    assert await sync_to_async(status_of)(tunnel_a) == TunnelStatus.DOWN


@pytest.mark.parametrize(
    ("kind", "payload", "reason"),
    [
        (protocol.Kind.CONFIG_ACK, {"version": 2**63, "applied": True}, "CONFIG_ACK.version is out of range"),
        (protocol.Kind.CONFIG_ACK, {"version": 1, "applied": True, "running_version": -(2**64)}, "out of range"),
        (protocol.Kind.CONFIG_ACK, {"version": 5, "applied": True}, "CONFIG_ACK for version 5, which was never sent"),
        (protocol.Kind.CONFIG_ACK, {"version": 0, "applied": False, "error": "x" * 1001}, "CONFIG_ACK.error is longer"),
        (protocol.Kind.PING, {"nonce": 10**30}, "PING.nonce is out of range"),
        (protocol.Kind.DRAIN, {"reason": "x" * 301}, "DRAIN.reason is longer"),
        (protocol.Kind.ERROR, {"code": "x", "message": "x" * 5000}, "ERROR.message is longer"),
    ],
)
async def test_out_of_bounds_fields_close_the_connection_with_the_reason(fresh_hub, tunnel_b, kind, payload, reason):
    hostile, _ = await open_connector(await sync_to_async(tunnel_token)(tunnel_b))
    assert isinstance(await receive(hostile), protocol.Welcome)
    await hostile.send_to(bytes_data=raw_control(kind, payload))
    refused = await closed(hostile)
    assert refused["code"] == protocol.CloseCode.PROTOCOL_VIOLATION
    assert reason in refused.get("reason", "")


@pytest.mark.parametrize(
    ("field", "value"),
    [("config_version", 2**40), ("features", ["x" * 65]), ("features", ["f"] * 65), ("platform", "x" * 256)],
)
async def test_an_out_of_bounds_hello_is_refused(fresh_hub, tunnel_b, field, value):
    from channels.testing import WebsocketCommunicator

    from tests.tunnels.test_connector_endpoint import application

    token = await sync_to_async(tunnel_token)(tunnel_b)
    comm = WebsocketCommunicator(
        application(), protocol.WEBSOCKET_PATH, headers=[(b"authorization", f"Bearer {token}".encode())]
    )
    assert (await comm.connect())[0]
    hello = {"connector_id": str(uuid.uuid4()), "version": "x", field: value}
    await comm.send_to(bytes_data=raw_control(protocol.Kind.HELLO, hello))
    refused = await closed(comm)
    assert refused["code"] == protocol.CloseCode.PROTOCOL_VIOLATION
    assert await sync_to_async(lambda: Connector.objects.for_org(tunnel_b.organisation).count())() == 0


# --- the ledger on its own: rows it cannot write, and a database that is briefly unavailable --------------------


def conn_open(tunnel, **overrides) -> ledger.ConnOpen:
    values = dict(
        connection_id=uuid.uuid4(),
        organisation_id=tunnel.organisation_id,
        tunnel_id=tunnel.pk,
        connector_id=uuid.uuid4(),
        conn_index=0,
        expected_connections=1,
        version="1",
        arch="",
        platform="",
        hostname="",
        local_ip="",
        origin_ip="",
        features=[],
        config_version=-1,
        opened_at=timezone.now(),
    )
    return ledger.ConnOpen(**{**values, **overrides})


def test_a_row_that_cannot_be_written_costs_no_other_row_its_write(tunnel_a, tunnel_b):
    a_opens = [conn_open(tunnel_a, conn_index=i) for i in range(3)]
    b_open = conn_open(tunnel_b)
    poisoned = ledger.ConfigAck(tunnel_b.organisation_id, tunnel_b.pk, b_open.connector_id, 10**30, "")
    a_close = ledger.ConnClose(
        a_opens[2].connection_id, tunnel_a.organisation_id, tunnel_a.pk, a_opens[2].connector_id, "gone", timezone.now()
    )
    batch = ledger.Batch(opens=[*a_opens, b_open], closes=[a_close], acks=[poisoned])
    flushed = ledger.flush(batch, "server-1")
    assert flushed.skipped == [poisoned] and not flushed.pending
    assert (tunnel_a.organisation_id, tunnel_a.pk) in flushed.changed
    assert open_rows(tunnel_a) == 2 and open_rows(tunnel_b) == 1
    assert Connection.objects.for_org(tunnel_a.organisation).get(pk=a_opens[2].connection_id).close_reason == "gone"


def test_a_briefly_unavailable_database_is_retried_and_a_lasting_outage_keeps_every_row(monkeypatch, tunnel_a):
    real = ledger._flush
    failures = {"left": 2}

    def flaky(batch, server_id):
        if failures["left"]:
            failures["left"] -= 1
            raise OperationalError("database is locked")
        return real(batch, server_id)

    monkeypatch.setattr(ledger, "_flush", flaky)
    monkeypatch.setattr(ledger.time, "sleep", lambda seconds: None)
    flushed = ledger.flush(ledger.Batch(opens=[conn_open(tunnel_a)]), "server-1")
    assert not flushed.pending and not flushed.skipped and open_rows(tunnel_a) == 1

    failures["left"] = 100
    batch = ledger.Batch(opens=[conn_open(tunnel_a, conn_index=1)])
    flushed = ledger.flush(batch, "server-1")
    assert flushed.pending.opens == batch.opens and open_rows(tunnel_a) == 1


def test_rows_left_open_are_repaired_from_the_live_sessions(tunnel_a):
    kept, lost, closing = (conn_open(tunnel_a, conn_index=i) for i in range(3))
    ledger.flush(ledger.Batch(opens=[kept, lost, closing]), "server-1")
    changed = ledger.repair_open_connections("server-1", {kept.connection_id}, {closing.connection_id})
    assert changed == {(tunnel_a.organisation_id, tunnel_a.pk)}
    rows = dict(Connection.objects.for_org(tunnel_a.organisation).values_list("pk", "closed_at"))
    assert rows[kept.connection_id] is None and rows[closing.connection_id] is None
    assert rows[lost.connection_id] is not None


async def test_the_hub_requeues_what_the_database_could_not_take_and_closes_a_connection_it_could_not_record(
    fresh_hub, tunnel_a
):
    from dataplane.hub import get_hub

    hub = get_hub()
    comm, _ = await open_connector(await sync_to_async(tunnel_token)(tunnel_a))
    assert isinstance(await receive(comm), protocol.Welcome)
    await wait_for(lambda: open_rows(tunnel_a) == 1)
    (session,) = hub.sessions[tunnel_a.pk].values()
    # Rows the database could not take go back to the queue, ahead of newer ones.
    waiting = conn_open(tunnel_a, conn_index=5)
    newer = conn_open(tunnel_a, conn_index=6)
    hub.batch.opens.append(newer)
    await hub._after_flush(ledger.Flushed(pending=ledger.Batch(opens=[waiting])))
    assert hub.batch.opens[:2] == [waiting, newer]
    hub.batch = ledger.Batch()
    # An open row that cannot be written: the connection is closed, since no status could ever show it.
    recorded = conn_open(tunnel_a, connection_id=session.connection_id)
    await hub._after_flush(ledger.Flushed(skipped=[recorded]))
    output = await comm.receive_output(3)
    assert output["type"] == "websocket.close" and output["code"] == protocol.CloseCode.INTERNAL_ERROR
    assert session.closed and tunnel_a.pk not in hub.sessions
    await wait_for(lambda: open_rows(tunnel_a) == 0)
