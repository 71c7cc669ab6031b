"""The supervisor in-process against the fake control plane: registration, configuration, heartbeats,
reconnects and the drained shutdown."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from connector import __version__, protocol, supervisor
from connector.protocol import CloseCode, Kind
from connector.supervisor import ConfigState, Settings, Stats, Supervisor, backoff_delay
from connector.token import parse_token

from .conftest import GOOD_CONFIG, TOKEN, FakeEdge


def make_supervisor(edge: FakeEdge, token: str = TOKEN, **overrides) -> Supervisor:
    settings = Settings(
        url=edge.url,
        token=parse_token(token),
        ha_connections=overrides.pop("ha_connections", 2),
        grace_period=overrides.pop("grace_period", 2.0),
        backoff_base=overrides.pop("backoff_base", 0.02),
        backoff_cap=overrides.pop("backoff_cap", 0.2),
        **overrides,
    )
    return Supervisor(settings)


class Running:
    """Runs a supervisor in the background for the duration of a test."""

    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup
        self.task: asyncio.Task | None = None

    async def __aenter__(self) -> Supervisor:
        self.task = asyncio.ensure_future(self.sup.run())
        return self.sup

    async def __aexit__(self, *exc) -> None:
        self.sup.stop()
        await asyncio.wait_for(self.task, 10)


async def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def test_registers_every_connection_with_a_hello(edge):
    sup = make_supervisor(edge)
    async with Running(sup):
        first, second = await edge.next_connection(), await edge.next_connection()
        await wait_until(lambda: sup.ready_connections == 2)
    hellos = sorted((first.hello, second.hello), key=lambda hello: hello.conn_index)
    assert [hello.conn_index for hello in hellos] == [0, 1]
    for hello in hellos:
        assert hello.connector_id == sup.connector_id and uuid.UUID(hello.connector_id).version == 4
        assert hello.ha_connections == 2 and hello.version == __version__
        assert hello.arch == supervisor.go_arch() and "_" in hello.arch
        assert hello.local_ip == "127.0.0.1" and hello.hostname and hello.platform
        assert hello.config_version == -1 and "remote-config" in hello.features
    assert edge.auth_headers[:2] == [f"Bearer {TOKEN}"] * 2
    # A new run is a new connector.
    assert make_supervisor(edge).connector_id != sup.connector_id


async def test_config_is_applied_acked_and_stale_versions_are_ignored(edge):
    sup = make_supervisor(edge, ha_connections=1)
    async with Running(sup):
        conn = await edge.next_connection()
        await edge.push_config(3, GOOD_CONFIG)
        ack = await conn.expect(Kind.CONFIG_ACK)
        assert ack == protocol.ConfigAck(version=3, applied=True, error="", running_version=3)
        assert sup.config.version == 3 and sup.config.config == GOOD_CONFIG
        assert sup.config.ingress.match("a.example.com", "/")[0] == 0  # compiled, ready for the data plane

        await conn.send(protocol.Config(version=2, config={"ingress": []}))
        ack = await conn.expect(Kind.CONFIG_ACK)
        assert ack == protocol.ConfigAck(version=2, applied=False, error="", running_version=3)
        assert sup.config.config == GOOD_CONFIG


async def test_invalid_config_keeps_the_old_one(edge):
    sup = make_supervisor(edge, ha_connections=1)
    async with Running(sup):
        conn = await edge.next_connection()
        await edge.push_config(1, GOOD_CONFIG)
        await conn.expect(Kind.CONFIG_ACK)
        bad = {"ingress": [{"hostname": "a.example.com", "service": "http://localhost:8080"}]}
        await conn.send(protocol.Config(version=2, config=bad))
        ack = await conn.expect(Kind.CONFIG_ACK)
        assert not ack.applied and ack.running_version == 1
        assert "last ingress rule must match all URLs" in ack.error
        assert sup.config.version == 1 and sup.config.config == GOOD_CONFIG
        assert sup.stats.config_errors == 1
        # A later valid version still applies.
        await conn.send(protocol.Config(version=3, config=GOOD_CONFIG))
        assert (await conn.expect(Kind.CONFIG_ACK)).applied


def test_config_state_survives_a_broken_validator(monkeypatch):
    def explode(config):
        raise RuntimeError("validator bug")

    monkeypatch.setattr(supervisor, "_compile_config", explode)
    state = ConfigState(Stats())
    ack = state.apply(protocol.Config(version=1, config={}))
    assert not ack.applied and "validator bug" in ack.error and state.version == -1


async def test_heartbeats_both_ways(edge):
    edge.heartbeat_interval = 0.05
    sup = make_supervisor(edge, ha_connections=1)
    async with Running(sup):
        conn = await edge.next_connection()
        ping = await conn.expect(Kind.PING)  # the connector pings every interval
        assert ping.nonce >= 1
        await wait_until(lambda: 0 in sup.stats.heartbeat_rtt)  # and measured the round trip from our PONG
        await conn.send(protocol.Ping(nonce=42, ts=1.5))
        pong = await conn.expect(Kind.PONG)
        assert (pong.nonce, pong.ts) == (42, 1.5)


async def test_silent_server_is_declared_dead_and_redialled(edge):
    edge.heartbeat_interval = 0.05
    edge.auto_pong = False  # the server stays connected but says nothing
    sup = make_supervisor(edge, ha_connections=1)
    async with Running(sup):
        first = await edge.next_connection()
        second = await edge.next_connection(timeout=3)
        assert second.hello.connector_id == first.hello.connector_id
        code, _ = await first.close_seen()
        assert code in (None, 1006)  # dropped without a handshake: it was considered dead
        assert sup.stats.reconnects >= 1


async def test_server_crash_reconnects_with_backoff_and_resumes_the_config():
    edge = await FakeEdge().start()
    sup = make_supervisor(edge)
    async with Running(sup):
        await edge.next_connection()
        await edge.next_connection()
        await edge.push_config(5, GOOD_CONFIG)
        await wait_until(lambda: sup.config.version == 5)
        port = edge.port

        edge.kill()
        await wait_until(lambda: sup.ready_connections == 0)
        await asyncio.sleep(0.3)  # several backoff rounds against a closed port
        assert sup.stats.reconnects >= 2

        restarted = FakeEdge()
        restarted.config = protocol.Config(version=5, config=GOOD_CONFIG)
        await restarted.start(port)
        try:
            again = [await restarted.next_connection(timeout=5), await restarted.next_connection(timeout=5)]
            assert {conn.hello.conn_index for conn in again} == {0, 1}
            # The connector says which version it runs, so the server does not resend it ...
            assert all(conn.hello.config_version == 5 for conn in again)
            assert all(conn.received.empty() for conn in again)
            await wait_until(lambda: sup.ready_connections == 2)
            assert sup.config.config == GOOD_CONFIG
            # ... and a newer one still applies.
            await restarted.push_config(6, GOOD_CONFIG)
            assert (await again[0].expect(Kind.CONFIG_ACK)).version == 6
        finally:
            await restarted.stop()
    await edge.stop()


async def test_stop_drains_then_closes_1001(edge):
    sup = make_supervisor(edge)
    task = asyncio.ensure_future(sup.run())
    conns = [await edge.next_connection(), await edge.next_connection()]
    await wait_until(lambda: sup.ready_connections == 2)
    sup.stop()
    for conn in conns:
        drain = await conn.expect(Kind.DRAIN)
        assert drain.reason == "connector shutting down"
        assert await conn.close_seen() == (CloseCode.GOING_AWAY, "connector shutting down")
    await asyncio.wait_for(task, 5)
    assert sup.ready_connections == 0


async def test_drain_from_the_server_makes_the_connection_unready(edge):
    sup = make_supervisor(edge, ha_connections=1)
    async with Running(sup):
        conn = await edge.next_connection()
        await wait_until(lambda: sup.ready_connections == 1)
        await conn.send(protocol.Drain(reason="server restarting"))
        await wait_until(lambda: sup.ready_connections == 0)
        assert len(sup.registered_connections()) == 1


GARBAGE = {
    "garbled frame": (b"\x07garb", "shorter than the 8-byte header"),
    "wrong version": (b"\x07garbage!", "unsupported protocol version 7"),
    "unknown kind": (bytes([1, 200, 0, 0, 0, 0, 0, 0]), "unknown message kind 200"),
    "invalid payload": (protocol.encode_frame(Kind.CONFIG, b'{"version": "x", "config": {}}'), "CONFIG.version"),
    "server-bound kind": (protocol.encode(protocol.ConfigAck(version=1, applied=True)), "unexpected CONFIG_ACK"),
    "second welcome": (protocol.encode(protocol.Welcome(connection_id="again")), "unexpected WELCOME"),
    "text message": ("hello", "text message received"),
}


@pytest.mark.parametrize("data,reason", GARBAGE.values(), ids=GARBAGE.keys())
async def test_garbage_from_the_server_closes_4008_and_reconnects(edge, data, reason):
    sup = make_supervisor(edge, ha_connections=1)
    async with Running(sup):
        conn = await edge.next_connection()
        await conn.ws.send(data)
        code, close_reason = await conn.close_seen()
        assert code == CloseCode.PROTOCOL_VIOLATION and reason in close_reason
        await edge.next_connection()  # the connector survived and dialled again
        assert sup.stats.protocol_errors == 1


async def test_oversized_frame_from_the_server_closes_1009(edge):
    sup = make_supervisor(edge, ha_connections=1)
    async with Running(sup):
        conn = await edge.next_connection()
        await conn.ws.send(b"\x01" * (protocol.MAX_FRAME_SIZE + 1))
        code, _ = await conn.close_seen()
        assert code == 1009
        await edge.next_connection()


async def test_streams_before_any_configuration_answer_503(edge):
    sup = make_supervisor(edge, ha_connections=1)
    async with Running(sup):
        conn = await edge.next_connection()
        await conn.send(protocol.Request(1, "GET", "https", "a.example.com", "/", end_stream=True))
        response = await conn.expect(Kind.RESPONSE)
        assert (response.stream_id, response.status) == (1, 503)  # cloudflared: no ingress rules -> 503
        await conn.expect(Kind.DATA)
        await conn.send(protocol.Data(9, b"stray"))  # frames of unknown streams are dropped
        await conn.send(protocol.Ping(nonce=1))
        await conn.expect(Kind.PONG)


async def test_wrong_secret_is_refused_and_retried_at_the_longest_backoff(edge, caplog):
    from connector.token import encode_token

    from .conftest import ACCOUNT, TUNNEL_ID

    wrong = encode_token(ACCOUNT, TUNNEL_ID, b"\x00" * 32)
    sup = make_supervisor(edge, token=wrong, ha_connections=1, backoff_cap=0.3)
    async with Running(sup):
        await wait_until(lambda: len(edge.connections) >= 2, timeout=3)
        assert edge.connections[0].hello is None  # never welcomed
        assert (await edge.connections[0].close_seen())[0] == CloseCode.INVALID_TOKEN
        assert sup.ready_connections == 0
    assert "code=4001: invalid token" in caplog.text


async def test_error_before_a_reasonless_refusal_is_logged(edge, caplog):
    async def refuse(ws):
        await ws.recv()  # HELLO
        await ws.send(protocol.encode(protocol.Error(code="token_refused", message="secret rotated at 12:00")))
        await ws.close(CloseCode.TOKEN_REFUSED)

    edge.custom_handler = refuse
    sup = make_supervisor(edge, ha_connections=1)
    async with Running(sup):
        await wait_until(lambda: "was refused" in caplog.text)
    assert "token_refused secret rotated at 12:00" in caplog.text
    assert "code=4003: the tunnel token was refused (wrong or rotated secret)" in caplog.text
    assert sup.stats.protocol_errors == 0


async def test_refused_upgrade_is_reported(edge, caplog):
    sup = make_supervisor(edge, ha_connections=1)
    sup.settings.url = edge.url.replace("/connector/v1", "/elsewhere")
    async with Running(sup):
        await wait_until(lambda: len(edge.auth_headers) >= 2, timeout=3)
    assert "HTTP 404" in caplog.text and "not found" in caplog.text


async def test_an_unexpected_error_costs_one_connection_not_the_slot(edge, monkeypatch, caplog):
    sup = make_supervisor(edge, ha_connections=1)
    original = sup._dispatch
    calls = []

    async def broken_once(conn, message):
        calls.append(message)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        await original(conn, message)

    monkeypatch.setattr(sup, "_dispatch", broken_once)
    async with Running(sup):
        conn = await edge.next_connection()
        await conn.send(protocol.Ping(nonce=1))
        again = await edge.next_connection()
        await again.send(protocol.Ping(nonce=2))
        assert (await again.expect(Kind.PONG)).nonce == 2
    assert "Unexpected error on connection connIndex=0" in caplog.text and "RuntimeError: a bug" in caplog.text


def test_backoff_is_full_jitter_capped():
    assert backoff_delay(0, 1, 60, rng=lambda low, high: high) == 1
    assert backoff_delay(3, 1, 60, rng=lambda low, high: high) == 8
    assert backoff_delay(10, 1, 60, rng=lambda low, high: high) == 60
    assert backoff_delay(10_000, 1, 60, rng=lambda low, high: high) == 60
    assert backoff_delay(5, 1, 60, rng=lambda low, high: low) == 0
