"""The data plane's one session interface (dataplane/session.py): a connector connection held by this process and a
tunnel held by another instance (over the peer link) are both a Session, and pick_session returns either, a local
connection first. End to end through the edge: tests/edge/test_peers.py."""

from __future__ import annotations

import asyncio
import uuid

from connector import protocol
from dataplane.hub import Hub
from dataplane.peers import PeerDirectory, PeerLink, PeerSession
from dataplane.session import Session
from dataplane.sessions import ConnectorSession


class SentWebSocket:
    """The peer link's client socket, as far as sending goes: what was written, at once."""

    buffered = 0

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send_nowait(self, messages: list[bytes]) -> None:
        self.sent += messages


class LoopHub:
    """What a PeerDirectory and its links read of their hub outside a request: the id and the loop."""

    server_id = "vm-b-1"

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()


def connector_session(tunnel_id: uuid.UUID, features: tuple[str, ...] = (protocol.FEATURE_STREAMS,)):
    async def noop(*args) -> None:
        return None

    session = ConnectorSession(uuid.uuid4(), uuid.uuid4(), tunnel_id, uuid.uuid4(), 0, "", noop, noop)
    session.features = frozenset(features)
    return session


async def test_pick_session_returns_a_local_connection_first_else_the_peer_holding_the_tunnel(monkeypatch):
    monkeypatch.setattr(PeerLink, "start", lambda self: None)  # no dialling: the link is declared up below
    hub = Hub()
    hub.loop = asyncio.get_running_loop()
    hub.peers = PeerDirectory(hub)
    tunnel = uuid.uuid4()
    assert hub.pick_session(tunnel) is None
    hub.peers.on_event({"kind": "holders", "server": "vm-a-1", "url": "ws://10.0.0.1:8000", "gained": [tunnel.hex]})
    hub.peers.links["vm-a-1"].ready = True

    remote = hub.pick_session(tunnel)
    assert isinstance(remote, PeerSession) and isinstance(remote, Session) and remote.tunnel_id == tunnel
    local = connector_session(tunnel)
    hub.sessions[tunnel] = {local.connection_id: local}
    assert hub.pick_session(tunnel) is local and isinstance(local, Session)
    assert hub.pick_session(tunnel, exclude={id(local)}) is remote  # a retry's next try
    assert hub.pick_session(tunnel, exclude={id(local), id(remote)}) is None
    # Both open streams the same way; only the peer session names its tunnel first in the request.
    assert local.open_stream().session is local and remote.open_stream().session is remote
    assert local.request_prefix == () and remote.request_prefix == ((b":tunnel", tunnel.hex.encode()),)


async def test_what_each_session_advertises_and_when_it_takes_no_new_streams():
    local = connector_session(uuid.uuid4())
    assert local.advertises(protocol.FEATURE_STREAMS) and not local.advertises(protocol.FEATURE_BATCH)
    assert not local.draining and local.carries_streams
    local.draining = True  # DRAIN from the connector
    assert not local.carries_streams
    assert not connector_session(uuid.uuid4(), features=()).carries_streams  # an old connector: control only

    link = PeerLink(PeerDirectory(LoopHub()), "vm-a-1", "ws://10.0.0.1:8000")
    remote = link.view(uuid.uuid4())
    assert remote.advertises(protocol.FEATURE_STREAMS) and remote.advertises(protocol.FEATURE_BATCH)
    assert not remote.advertises("websocket-over-carrier-pigeon")
    assert remote.draining and not remote.carries_streams  # the link is not up
    link.ready = True
    assert not remote.draining and remote.carries_streams


async def test_closing_a_peer_session_resets_its_tunnels_streams_and_keeps_the_link_for_the_others():
    link = PeerLink(PeerDirectory(LoopHub()), "vm-a-1", "ws://10.0.0.1:8000")
    link.ready = True
    link.ws = ws = SentWebSocket()  # type: ignore[assignment]
    one, other = link.view(uuid.uuid4()), link.view(uuid.uuid4())
    mine, theirs = one.open_stream(), other.open_stream()

    await one.close(protocol.CloseCode.DISCONNECTED, "the tunnel was deleted")
    assert mine.reset is not None and mine.reset.code == protocol.ResetCode.CANCEL
    assert mine.id not in link.streams
    assert theirs.reset is None and link.streams[theirs.id] is theirs and link.ready and not other.draining
    await asyncio.sleep(0)  # the frames of one turn leave together
    sent = [message for batch in ws.sent for message in protocol.decode_many(batch)]
    assert sent == [protocol.Reset(mine.id, protocol.ResetCode.CANCEL, "the tunnel was deleted")]


async def test_a_connector_session_lost_meanwhile_fails_a_new_stream_at_once():
    local = connector_session(uuid.uuid4())
    local.closed = True
    stream = local.open_stream()
    assert stream.reset is not None and stream.reset.code == protocol.ResetCode.INTERNAL_ERROR
    assert stream.id not in local.streams
