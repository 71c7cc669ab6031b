"""Peer forwarding (dataplane/peers.py, relay.py), in-process: the peer link's authentication and framing, A's relay
through the real ASGI application with a protocol-level connector, B's link against a protocol-level peer, the
directory of who holds which tunnel (events, reloads, races), and the announcements. The real thing (two daphne
instances, a real connector) is tests/edge/test_peer_relay_e2e.py."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import time
import uuid

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from connector import protocol
from dataplane import peers
from dataplane.hub import get_hub
from dataplane.peers import (
    PEER_PATH,
    TUNNEL_HEADER,
    PeerAuthError,
    PeerDirectory,
    auth_header,
    verify_auth,
)
from tests.edge.conftest import recorded_errors
from tests.edge.test_edge_streams import application, next_frame, peer, visit
from tunnels import ledger
from tunnels.models import Connection, Connector, ServerInstance
from tunnels.services import tunnel_token

pytestmark = [pytest.mark.django_db(transaction=True)]


# -- authentication, framing, the advertised address -------------------------------------------------------------------


def test_the_peer_signature_round_trips_and_refuses_forgeries_and_old_ones(settings):
    header = auth_header("vm-1-abc")
    assert verify_auth(header) == "vm-1-abc"
    scheme, server, stamp, signature = header.split(" ")
    with pytest.raises(PeerAuthError, match="refused"):
        verify_auth(f"{scheme} vm-2-abc {stamp} {signature}")  # the signature covers the server id
    with pytest.raises(PeerAuthError, match="expired"):
        verify_auth(auth_header("vm-1-abc", now=time.time() - 400))
    with pytest.raises(PeerAuthError, match="malformed"):
        verify_auth("Bearer something")
    with pytest.raises(PeerAuthError, match="timestamp"):
        verify_auth(f"{scheme} {server} soon {signature}")
    settings.SECRET_KEY = "another installation"
    with pytest.raises(PeerAuthError, match="SECRET_KEY"):
        verify_auth(header)


def test_link_messages_are_batches_within_the_frame_limit():
    frames = [protocol.encode(protocol.Data(1, b"x" * 300_000)) for _ in range(5)]
    frames.append(protocol.encode(protocol.Window(3, 10)))
    messages = protocol.encode_batches(frames)
    assert len(messages) == 2 and all(len(m) <= protocol.MAX_FRAME_SIZE for m in messages)
    assert [bytes(f) for m in messages for f in protocol.split_frames(m)] == frames
    biggest = protocol.encode(protocol.Data(1, b"y" * protocol.MAX_PAYLOAD_SIZE))
    assert [bytes(f) for f in protocol.split_frames(protocol.encode_batches([biggest])[0])] == [biggest]
    batch = protocol.HEADER.pack(protocol.PROTOCOL_VERSION, protocol.Kind.BATCH, 0, 0)
    for garbled in (
        batch,
        batch + b"\x00\x00",
        batch + b"\x00\x00\x00\x03abc",
        batch + b"\x00\x00\x00\x20" + frames[-1],
    ):
        with pytest.raises(protocol.ProtocolError):
            protocol.split_frames(garbled)


def test_the_peer_endpoint_is_routed_by_path_and_scheme_only():
    scope = {"path": PEER_PATH, "headers": [(b"host", b"app.example.com"), (b"authorization", b"EdgePeer x 1 y")]}
    assert peers.is_peer_request(scope)
    assert not peers.is_peer_request({**scope, "headers": [(b"authorization", b"Bearer x")]})
    assert not peers.is_peer_request({**scope, "path": "/edge/v1/peer/"})


def test_the_advertised_address(settings, monkeypatch):
    settings.EDGE_PEER_URL = "ws://10.0.0.5:8000/"
    assert peers.own_peer_url() == "ws://10.0.0.5:8000"
    settings.EDGE_PEER_URL = ""
    monkeypatch.setattr(peers, "_listen_port", None)
    assert not peers.listen_port_known()
    peers.note_server({"server": ("0.0.0.0", 8123)})  # noqa: S104
    monkeypatch.setattr(peers.socket, "gethostname", lambda: "web-3")
    monkeypatch.setattr(peers.socket, "gethostbyname", lambda name: "172.18.0.7")
    assert peers.own_peer_url() == "ws://172.18.0.7:8123"
    peers.note_server({"server": ("/run/zt.sock", None)})  # a unix socket: no port to advertise
    assert peers.listen_port_known() and peers.own_peer_url() == ""


# -- A's side: the relay, through the ASGI application ------------------------------------------------------------


class Frames:
    """The frames arriving on one end of a link (several per websocket message), read one at a time."""

    def __init__(self, receive) -> None:
        self.receive = receive  # async () -> bytes, or a dict for a close
        self.pending: collections.deque = collections.deque()

    async def next(self, timeout: float = 3.0):
        while not self.pending:
            data = await asyncio.wait_for(self.receive(), timeout)
            if isinstance(data, dict):
                return data
            self.pending.extend(protocol.decode(frame) for frame in protocol.split_frames(data))
        return self.pending.popleft()

    async def next_of(self, kinds=(protocol.Request, protocol.Response, protocol.Data, protocol.Reset), timeout=3.0):
        while True:
            message = await self.next(timeout)
            if isinstance(message, kinds):
                return message


class Link:
    """B's end of a peer link, played by the test through the ASGI application."""

    def __init__(self, comm: WebsocketCommunicator) -> None:
        self.comm = comm
        self.frames = Frames(self._receive)

    async def _receive(self):
        output = await self.comm.receive_output(3)
        return output if output["type"] == "websocket.close" else output["bytes"]

    async def send(self, *messages) -> None:
        await self.comm.send_to(bytes_data=protocol.encode_batches([protocol.encode(m) for m in messages])[0])


async def open_link(server_id: str = "vm-b-1", authorization: str | None = None) -> Link:
    comm = WebsocketCommunicator(
        application(),
        PEER_PATH,
        headers=[(b"authorization", (authorization or auth_header(server_id)).encode()), (b"host", b"10.0.0.9:8000")],
    )
    assert (await comm.connect())[0]
    return Link(comm)


def request(stream_id: int, tunnel_id: uuid.UUID | None, **kwargs) -> protocol.Request:
    headers = [(TUNNEL_HEADER, tunnel_id.hex.encode())] if tunnel_id else []
    return protocol.Request(
        stream_id=stream_id,
        method=kwargs.pop("method", "GET"),
        scheme="https",
        authority="app.example.com",
        target="/relayed",
        headers=[*headers, (b"cf-ray", b"ray-from-b"), (b"cf-connecting-ip", b"203.0.113.9")],
        **kwargs,
    )


async def test_a_relays_a_stream_to_its_connector_with_ids_remapped(fresh_hub, routed_tunnel):
    token = await sync_to_async(tunnel_token)(routed_tunnel)
    connector = await peer(token)
    link = await open_link()
    welcome = await link.frames.next()
    assert isinstance(welcome, protocol.Welcome) and welcome.server_id == get_hub().server_id

    await link.send(request(7, routed_tunnel.id, end_stream=False))
    forwarded = await next_frame(connector)
    assert isinstance(forwarded, protocol.Request) and forwarded.stream_id == 1  # the connector's own id space
    assert forwarded.target == "/relayed" and not forwarded.end_stream
    # B's headers arrive as B computed them (A has no visitor); the pseudo-header is gone.
    assert forwarded.headers == [(b"cf-ray", b"ray-from-b"), (b"cf-connecting-ip", b"203.0.113.9")]

    # Body and flow control pass through both ways, ids rewritten.
    await link.send(protocol.Data(7, b"part one "), protocol.Data(7, b"part two", end_stream=True))
    assert (await next_frame(connector)) == protocol.Data(1, b"part one ")
    assert (await next_frame(connector)) == protocol.Data(1, b"part two", end_stream=True)
    await connector.send_to(bytes_data=protocol.encode(protocol.Window(1, 1000)))
    assert (await link.frames.next_of((protocol.Window,))) == protocol.Window(7, 1000)
    await connector.send_to(bytes_data=protocol.encode(protocol.Response(1, 200, [(b"x-origin", b"1")])))
    await connector.send_to(bytes_data=protocol.encode(protocol.Data(1, b"done", end_stream=True)))
    assert (await link.frames.next_of()) == protocol.Response(7, 200, [(b"x-origin", b"1")])
    assert (await link.frames.next_of()) == protocol.Data(7, b"done", end_stream=True)
    await link.send(protocol.Window(7, 500))  # finished: dropped at A, never reaches the connector
    assert await connector.receive_nothing(0.2)

    # Heartbeats on the link.
    await link.send(protocol.Ping(nonce=5, ts=1.0))
    assert (await link.frames.next_of((protocol.Pong,))).nonce == 5
    await link.comm.disconnect()
    await connector.disconnect()


async def test_a_refuses_streams_it_cannot_place(fresh_hub, routed_tunnel):
    link = await open_link()
    await link.frames.next()  # WELCOME
    await link.send(request(1, routed_tunnel.id, end_stream=True))
    reset = await link.frames.next_of()
    assert reset.stream_id == 1 and reset.code == protocol.ResetCode.REFUSED_STREAM
    assert "no connector of this tunnel" in reset.message
    await link.send(request(3, None, end_stream=True))
    reset = await link.frames.next_of()
    assert reset.stream_id == 3 and reset.code == protocol.ResetCode.PROTOCOL_ERROR
    # Ids must increase, as on a connector connection.
    await link.send(request(3, routed_tunnel.id, end_stream=True))
    closing = await link.frames.next()
    assert closing["type"] == "websocket.close" and closing["code"] == protocol.CloseCode.PROTOCOL_VIOLATION


async def test_a_lost_connector_resets_the_relayed_streams_and_a_lost_link_cancels_them(fresh_hub, routed_tunnel):
    token = await sync_to_async(tunnel_token)(routed_tunnel)
    connector = await peer(token)
    link = await open_link()
    await link.frames.next()
    await link.send(request(1, routed_tunnel.id, end_stream=True))
    await next_frame(connector)
    await connector.disconnect()
    reset = await link.frames.next_of()
    assert reset.stream_id == 1 and reset.code == protocol.ResetCode.INTERNAL_ERROR
    assert "connector connection lost" in reset.message

    connector = await peer(token)
    await link.send(request(3, routed_tunnel.id, end_stream=False))
    relayed = await next_frame(connector)
    await link.comm.disconnect()
    cancel = await next_frame(connector)
    assert cancel.stream_id == relayed.stream_id and cancel.code == protocol.ResetCode.CANCEL
    assert not get_hub().pick_local_session(routed_tunnel.id).streams  # nothing left behind
    await connector.disconnect()


async def test_a_peer_without_the_shared_secret_is_refused_with_the_reason(fresh_hub, settings):
    link = await open_link(authorization=auth_header("intruder", now=time.time() - 3600))
    error = await link.frames.next()
    assert isinstance(error, protocol.Error) and "expired" in error.message
    closing = await link.frames.next()
    assert closing["code"] == protocol.CloseCode.TOKEN_REFUSED


# -- B's side: the link, against a protocol-level peer -----------------------------------------------------------


class FakePeer:
    """Instance A as B's link sees it: checks the signature, answers WELCOME, then lets the test play A."""

    def __init__(self, server_id: str = "vm-a-1") -> None:
        self.server_id = server_id
        self.welcome_as = server_id
        self.links: asyncio.Queue = asyncio.Queue()
        self.authorizations: list[str] = []
        self.server = None
        self.port = 0

    async def start(self) -> FakePeer:
        import websockets

        async def handler(ws) -> None:
            self.authorizations.append(ws.request.headers.get("Authorization", ""))
            verify_auth(self.authorizations[-1])
            await ws.send(
                protocol.encode_batches(
                    [protocol.encode(protocol.Welcome(connection_id="c", server_id=self.welcome_as))]
                )[0]
            )
            await self.links.put(PeerEnd(ws))
            with contextlib.suppress(websockets.ConnectionClosed):
                await ws.wait_closed()

        self.server = await websockets.serve(handler, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()


class PeerEnd:
    """The fake A's end of one link."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.frames = Frames(ws.recv)

    async def send(self, *messages) -> None:
        await self.ws.send(protocol.encode_batches([protocol.encode(m) for m in messages])[0])


@contextlib.asynccontextmanager
async def b_with_peer(tunnel):
    """This process as B (a hub whose directory says `tunnel` is held by a fake A), and the fake A."""
    hub = get_hub()
    await hub.ensure_started()
    hub.peers = PeerDirectory(hub)
    fake = await FakePeer().start()
    try:
        hub.peers.on_event({"kind": "holders", "server": fake.server_id, "url": fake.url, "gained": [tunnel.id.hex]})
        ws = await asyncio.wait_for(fake.links.get(), 5)
        link = hub.peers.links[fake.server_id]
        for _ in range(100):
            if link.ready:
                break
            await asyncio.sleep(0.02)
        yield hub, fake, ws
    finally:
        await hub.peers.close()
        await fake.stop()


async def answer(ws, status: int = 200, body: bytes = b"relayed") -> protocol.Request:
    request = await ws.frames.next_of((protocol.Request,))
    await ws.send(protocol.Response(request.stream_id, status, []), protocol.Data(request.stream_id, body, True))
    return request


async def test_b_forwards_a_request_for_a_tunnel_held_by_a_peer(fresh_hub, routed_tunnel):
    async with b_with_peer(routed_tunnel) as (_hub, fake, ws):
        assert fake.authorizations[0].startswith("EdgePeer ")
        response_task = asyncio.ensure_future(visit("/over?there=1").get_response(timeout=5))
        request = await answer(ws)
        assert request.headers[0] == (TUNNEL_HEADER, routed_tunnel.id.hex.encode())
        assert request.target == "/over?there=1" and request.end_stream
        names = [name for name, _ in request.headers]
        assert b"cf-ray" in names and b"cf-connecting-ip" in names  # B computed the edge headers
        response = await response_task
        assert response["status"] == 200 and response["body"] == b"relayed"

        # An upload larger than the window: B sends no more than the connector (here: A) granted.
        body = b"u" * (protocol.INITIAL_WINDOW + 1000)
        response_task = asyncio.ensure_future(visit("/up", "POST", body=body).get_response(timeout=5))
        request = await ws.frames.next_of((protocol.Request,))
        received = 0
        while received < protocol.INITIAL_WINDOW:
            received += len((await ws.frames.next_of((protocol.Data,))).data)
        assert received == protocol.INITIAL_WINDOW
        with pytest.raises(TimeoutError):
            await ws.frames.next_of((protocol.Data,), timeout=0.3)
        await ws.send(protocol.Window(request.stream_id, 5000))
        last = await ws.frames.next_of((protocol.Data,))
        assert last.end_stream and received + len(last.data) == len(body)
        await ws.send(protocol.Response(request.stream_id, 201, [], end_stream=True))
        assert (await response_task)["status"] == 201


async def test_a_local_connector_is_preferred_over_a_peer(fresh_hub, routed_tunnel):
    token = await sync_to_async(tunnel_token)(routed_tunnel)
    async with b_with_peer(routed_tunnel) as (_hub, _fake, ws):
        connector = await peer(token)
        response_task = asyncio.ensure_future(visit().get_response(timeout=5))
        local = await next_frame(connector)
        await connector.send_to(bytes_data=protocol.encode(protocol.Response(local.stream_id, 204, [], True)))
        assert (await response_task)["status"] == 204
        with pytest.raises(TimeoutError):
            await ws.frames.next_of((protocol.Request,), timeout=0.3)
        await connector.disconnect()


async def test_a_lost_link_fails_its_streams_then_redials(fresh_hub, routed_tunnel, monkeypatch, origin_errors):
    monkeypatch.setattr(peers, "_backoff", lambda failures: 0.05)
    async with b_with_peer(routed_tunnel) as (hub, fake, ws):
        response_task = asyncio.ensure_future(visit().get_response(timeout=5))
        await ws.frames.next_of((protocol.Request,))
        await ws.ws.close()
        response = await response_task
        assert response["status"] == 502 and b"was lost" not in response["body"]
        # Recorded by this instance (B), which answered the visitor, for the tunnel's page.
        [row] = await recorded_errors(origin_errors, routed_tunnel)
        assert row.status == 502 and "was lost" in row.reason
        ws = await asyncio.wait_for(fake.links.get(), 5)  # redialled
        for _ in range(100):
            if hub.peers.links[fake.server_id].ready:
                break
            await asyncio.sleep(0.02)
        response_task = asyncio.ensure_future(visit().get_response(timeout=5))
        await answer(ws)
        assert (await response_task)["status"] == 200

        # The peer announces it lost the tunnel: no connector anywhere, 530.
        hub.peers.on_event({"kind": "holders", "server": fake.server_id, "lost": [routed_tunnel.id.hex]})
        assert (await visit().get_response(timeout=5))["status"] == 530


async def test_a_restarted_instance_at_the_peers_address_is_not_mistaken_for_it(fresh_hub, routed_tunnel):
    hub = get_hub()
    await hub.ensure_started()
    hub.peers = PeerDirectory(hub)
    fake = await FakePeer().start()
    fake.welcome_as = "vm-a-2"  # the address now serves another process
    try:
        hub.peers.on_event({"kind": "holders", "server": "vm-a-1", "url": fake.url, "gained": [routed_tunnel.id.hex]})
        await asyncio.wait_for(fake.links.get(), 5)
        for _ in range(100):
            if "vm-a-1" not in hub.peers.links:
                break
            await asyncio.sleep(0.02)
        assert "vm-a-1" not in hub.peers.links and routed_tunnel.id not in hub.peers.holders
        assert (await visit().get_response(timeout=5))["status"] == 530
    finally:
        await hub.peers.close()
        await fake.stop()


# -- the directory: events, reloads and their races ---------------------------------------------------------------


class FakeHub:
    server_id = "vm-b-1"
    peer_url = "ws://10.0.0.2:8000"

    def __init__(self) -> None:
        self.sessions: dict = {}
        self.result: tuple[dict, dict] = ({}, {})
        self.during_query = None

    async def db(self, func, *args):
        if self.during_query is not None:
            self.during_query()
        return self.result[0].copy(), {t: set(s) for t, s in self.result[1].items()}


@pytest.fixture
def directory(monkeypatch):
    monkeypatch.setattr(peers.PeerLink, "start", lambda self: None)
    return PeerDirectory(FakeHub())


T1, T2 = uuid.uuid4(), uuid.uuid4()
URLS = {"vm-a-1": "ws://10.0.0.1:8000", "vm-c-1": "ws://10.0.0.3:8000"}


async def test_events_add_and_remove_holders_and_open_links(directory):
    directory.on_event({"kind": "holders", "server": "vm-a-1", "url": URLS["vm-a-1"], "gained": [T1.hex, T2.hex]})
    directory.on_event({"kind": "holders", "server": "vm-b-1", "url": "x", "gained": [T1.hex]})  # ourselves
    assert directory.holders == {T1: {"vm-a-1"}, T2: {"vm-a-1"}}
    assert set(directory.links) == {"vm-a-1"}
    directory.on_event({"kind": "holders", "server": "vm-a-1", "lost": [T2.hex]})
    assert directory.holders == {T1: {"vm-a-1"}}
    assert directory.pick(T1) is None  # the link is not up yet
    directory.links["vm-a-1"].ready = True
    assert directory.pick(T1).tunnel_id == T1 and directory.pick(T2) is None


async def test_round_robin_across_instances_holding_the_tunnel(directory):
    for server in URLS:
        directory.on_event({"kind": "holders", "server": server, "url": URLS[server], "gained": [T1.hex]})
        directory.links[server].ready = True
    picked = [directory.pick(T1).link.server_id for _ in range(4)]
    assert sorted(picked) == ["vm-a-1", "vm-a-1", "vm-c-1", "vm-c-1"]


async def test_a_reload_replaces_the_view_but_keeps_fresher_events(directory):
    hub = directory.hub
    hub.result = (dict(URLS), {T1: {"vm-a-1"}})
    await directory.reload()
    assert directory.holders == {T1: {"vm-a-1"}} and set(directory.links) == {"vm-a-1"}

    # A gain announced while the query ran (its rows were not in the snapshot) survives the reload.
    hub.during_query = lambda: directory.on_event({"kind": "holders", "server": "vm-c-1", "gained": [T2.hex]})
    await directory.reload()
    assert directory.holders == {T1: {"vm-a-1"}, T2: {"vm-c-1"}}
    hub.during_query = None
    hub.result = (dict(URLS), {T1: {"vm-a-1"}, T2: {"vm-c-1"}})
    await directory.reload()
    assert directory.holders == {T1: {"vm-a-1"}, T2: {"vm-c-1"}}


async def test_a_loss_outweighs_rows_still_open_for_a_while(directory, monkeypatch):
    hub = directory.hub
    hub.result = (dict(URLS), {T1: {"vm-a-1", "vm-c-1"}})
    await directory.reload()
    # vm-c-1's connector drains: it says so, but its rows stay open until the connector closes them.
    directory.on_event({"kind": "holders", "server": "vm-c-1", "lost": [T1.hex]})
    await directory.reload()
    assert directory.holders == {T1: {"vm-a-1"}}
    later = time.monotonic() + peers.LOST_STICKY_SECONDS + 1
    monkeypatch.setattr(peers.time, "monotonic", lambda: later)
    await directory.reload()
    assert directory.holders == {T1: {"vm-a-1", "vm-c-1"}}  # the database wins in the end


async def test_an_instance_no_longer_alive_is_dropped_with_its_link(directory):
    hub = directory.hub
    hub.result = (dict(URLS), {T1: {"vm-a-1"}, T2: {"vm-c-1"}})
    await directory.reload()
    link = directory.links["vm-c-1"]
    hub.result = ({"vm-a-1": URLS["vm-a-1"]}, {T1: {"vm-a-1"}})
    await directory.reload()
    assert set(directory.links) == {"vm-a-1"} and link.stopped
    assert directory.holders == {T1: {"vm-a-1"}}


# -- announcements and the database view ---------------------------------------------------------------------------


async def test_an_instance_announces_the_tunnels_it_gains_and_loses(fresh_hub, routed_tunnel, monkeypatch):
    hub = get_hub()
    await hub.ensure_started()
    hub.peers = PeerDirectory(hub)
    hub.peer_url = "ws://10.0.0.1:8000"
    events: list[dict] = []

    async def broadcast(event):
        events.append(event)

    monkeypatch.setattr(hub, "_broadcast", broadcast)
    token = await sync_to_async(tunnel_token)(routed_tunnel)

    async def wait_for_events(count: int) -> None:
        for _ in range(100):
            if len(events) >= count:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(events)

    first = await peer(token)
    await wait_for_events(1)
    assert events[0] == {
        "kind": "holders",
        "server": hub.server_id,
        "url": "ws://10.0.0.1:8000",
        "gained": [routed_tunnel.id.hex],
        "lost": [],
    }
    second = await peer(token)
    await first.disconnect()
    await asyncio.sleep(0.2)
    assert len(events) == 1  # still held by the second connection
    await second.send_to(bytes_data=protocol.encode(protocol.Drain(reason="SIGTERM")))
    await wait_for_events(2)
    assert events[1]["lost"] == [routed_tunnel.id.hex] and events[1]["gained"] == []
    await second.disconnect()
    await asyncio.sleep(0.2)
    assert len(events) == 2


def test_the_database_view_counts_live_instances_with_an_address_and_connectors_that_carry_streams(routed_tunnel):
    tunnel_a = routed_tunnel
    now = timezone.now()
    old = now - datetime.timedelta(minutes=5)
    for server_id, seen, url in [
        ("me", now, "ws://me"),
        ("alive", now, "ws://alive:8000"),
        ("silent", old, "ws://silent:8000"),
        ("no-address", now, ""),
    ]:
        ServerInstance.objects.create(server_id=server_id, started_at=old, last_seen_at=seen, peer_url=url)
    org = tunnel_a.organisation
    streams = Connector.objects.create(
        organisation=org, tunnel=tunnel_a, connector_id=uuid.uuid4(), features=["streams"], run_at=now, last_seen_at=now
    )
    legacy = Connector.objects.create(
        organisation=org, tunnel=tunnel_a, connector_id=uuid.uuid4(), features=[], run_at=now, last_seen_at=now
    )
    for connector, server, closed in [
        (streams, "alive", None),
        (streams, "alive", None),  # a second connection: one row in the result
        (streams, "silent", None),
        (streams, "no-address", None),
        (streams, "me", None),
        (legacy, "alive", None),
        (streams, "gone", now),
    ]:
        Connection.objects.create(
            organisation=org, tunnel=tunnel_a, connector=connector, server_id=server, opened_at=old, closed_at=closed
        )
    urls, holders = ledger.load_peer_holdings("me", datetime.timedelta(seconds=45))
    assert urls == {"alive": "ws://alive:8000"}
    assert holders == {tunnel_a.id: {"alive"}}

    ledger.heartbeat_instance("me", "host", 1, old, "ws://10.0.0.1:8000")
    assert ServerInstance.objects.get(server_id="me").peer_url == "ws://10.0.0.1:8000"


async def test_a_stream_opened_on_a_connection_lost_meanwhile_fails_at_once(fresh_hub, routed_tunnel):
    token = await sync_to_async(tunnel_token)(routed_tunnel)
    connector = await peer(token)
    session = get_hub().pick_local_session(routed_tunnel.id)
    await connector.disconnect()
    for _ in range(100):
        if session.closed:
            break
        await asyncio.sleep(0.02)
    stream = session.open_stream()
    assert stream.reset is not None and stream.response.done()
