"""The hub's config fan-out (dataplane/sessions.py push_config_to_all): one encoded CONFIG frame written to each of
a tunnel's connections that has not had that version, at once where the server offers a synchronous send (uvicorn),
through the ASGI send elsewhere (daphne); a connection that acked or was sent it, or that closed, gets nothing, and
one whose socket fails does not stop the others. (End to end on real uvicorn sockets: tests/bench.)"""

from __future__ import annotations

import uuid

from connector import protocol
from dataplane.hub import CachedTunnel, ConnectorSession, Hub


def session(tunnel_id, frames, *, sync=True, acked=-1, fail=False):
    async def send_bytes(data: bytes) -> None:
        frames.append(("async", data))

    def send_now(data: bytes) -> None:
        if fail:
            raise ConnectionError("the connector's websocket is closing")
        frames.append(("sync", data))

    async def close(code: int, reason: str) -> None:
        pass

    made = ConnectorSession(
        connection_id=uuid.uuid4(),
        organisation_id=uuid.uuid4(),
        tunnel_id=tunnel_id,
        connector_id=uuid.uuid4(),
        conn_index=0,
        origin_ip="",
        send_bytes=send_bytes,
        close=close,
        send_now=send_now if sync else None,
    )
    made.acked_version = acked
    return made


async def test_each_connection_gets_the_new_version_once():
    hub = Hub()
    tunnel_id = uuid.uuid4()
    config = {"ingress": [{"service": "http_status:404"}]}
    hub.tunnels[tunnel_id] = CachedTunnel(uuid.uuid4(), b"s", False, 7, config)
    frames: list[list[tuple[str, bytes]]] = [[] for _ in range(5)]
    sessions = [
        session(tunnel_id, frames[0]),
        session(tunnel_id, frames[1], sync=False),
        session(tunnel_id, frames[2], acked=7),  # runs it already
        session(tunnel_id, frames[3], fail=True),  # its socket is closing
        session(tunnel_id, frames[4]),
    ]
    sessions[4].closed = True
    await hub.push_config_to_all(sessions)
    expected = protocol.encode(protocol.Config(version=7, config=config))
    assert frames[0] == [("sync", expected)] and frames[1] == [("async", expected)]
    assert frames[2] == [] and frames[3] == [] and frames[4] == []
    assert [s.sent_version for s in sessions[:2]] == [7, 7]
    frame = frames[0][0][1]
    assert frames[1][0][1] is frame  # encoded once for all

    await hub.push_config_to_all(sessions)  # nothing new: nothing sent again
    assert len(frames[0]) == 1 and len(frames[1]) == 1
    hub.tunnels[tunnel_id] = CachedTunnel(uuid.uuid4(), b"s", False, 8, config)
    await hub.push_config_to_all(sessions)
    assert [protocol.decode(f[-1][1]).version for f in frames[:3]] == [8, 8, 8]
