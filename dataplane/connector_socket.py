"""The connector endpoint, `/connector/v1`, as a plain ASGI app (no per-connection Channels consumer or layer
loop): connectors dial in with `Authorization: Bearer <tunnel token>`, then HELLO → WELCOME (+ CONFIG), heartbeats
and acks; the hub (dataplane/hub.py) holds the session (a `ConnectorSession`, dataplane/sessions.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings

from connector import protocol
from controlplane.teams import team_url
from dataplane.hub import get_hub
from dataplane.sessions import ConnectorSession
from tunnels.secrets import InvalidTunnelToken, parse_token, secrets_equal
from tunnels.websocket import WebSocket

logger = logging.getLogger("tunnels.connector")

HELLO_TIMEOUT = 10.0


def _header(scope: dict[str, Any], name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


def sync_sender(send) -> Callable[[bytes], None] | None:
    """A synchronous binary send on the same websocket as `send`, where the server allows it: uvicorn's
    websockets-sansio protocol writes a message with no await (its `send()` is a coroutine around the same two
    calls). The hub writes a burst's frames with it at once (dataplane.sessions.EARLY_FLUSH_FRAMES). None for other
    servers (daphne), where the hub's writer task sends."""
    try:
        from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    except ImportError:  # pragma: no cover - uvicorn is a runtime dependency
        return None
    protocol_ = getattr(send, "__self__", None)
    if not isinstance(protocol_, WebSocketsSansIOProtocol):
        return None
    conn = protocol_.conn
    transport = protocol_.transport

    def send_now(data: bytes) -> None:
        if protocol_.close_sent or transport.is_closing():
            raise ConnectionError("the connector's websocket is closing")
        conn.send_binary(data)
        transport.write(b"".join(conn.data_to_send()))

    return send_now


async def connector_app(scope: dict[str, Any], receive, send) -> None:
    """One connector connection: authenticate, HELLO → WELCOME (+ CONFIG), then heartbeats and acks."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return None
    hub = get_hub()
    await hub.ensure_started()
    await send({"type": "websocket.accept"})
    sock = WebSocket(receive, send)
    origin_ip = (scope.get("client") or ["", 0])[0] or ""
    auth = _header(scope, b"authorization")
    scheme, _, raw = auth.partition(" ")
    if scheme.lower() != "bearer" or not raw.strip():
        return await _refuse(sock, hub, protocol.CloseCode.INVALID_TOKEN, "missing tunnel token", origin_ip)
    try:
        token = parse_token(raw)
    except InvalidTunnelToken as exc:
        return await _refuse(sock, hub, protocol.CloseCode.INVALID_TOKEN, str(exc), origin_ip)
    tunnel = await hub.tunnel_for_token(token.tunnel_id)
    if tunnel is None or tunnel.organisation_id.hex != token.account_tag.replace("-", "").lower():
        return await _refuse(sock, hub, protocol.CloseCode.INVALID_TOKEN, "unknown tunnel", origin_ip)
    if not secrets_equal(tunnel.secret, token.secret):
        return await _refuse(
            sock, hub, protocol.CloseCode.TOKEN_REFUSED, "tunnel token refused (wrong or rotated secret)", origin_ip
        )
    if tunnel.deleted:
        return await _refuse(sock, hub, protocol.CloseCode.TUNNEL_DELETED, "the tunnel was deleted", origin_ip)

    try:
        hello = await asyncio.wait_for(_next_message(sock), HELLO_TIMEOUT)
    except TimeoutError:
        return await _refuse(sock, hub, protocol.CloseCode.PROTOCOL_VIOLATION, "no HELLO received", origin_ip)
    except protocol.ProtocolError as exc:
        return await _refuse(sock, hub, exc.close_code, exc.reason, origin_ip)
    except _Disconnected:
        return None
    if not isinstance(hello, protocol.Hello):
        return await _refuse(
            sock, hub, protocol.CloseCode.PROTOCOL_VIOLATION, "the first message must be HELLO", origin_ip
        )

    session = ConnectorSession(
        connection_id=uuid.uuid4(),
        organisation_id=tunnel.organisation_id,
        tunnel_id=token.tunnel_id,
        connector_id=uuid.UUID(hello.connector_id),
        conn_index=hello.conn_index,
        origin_ip=origin_ip,
        send_bytes=sock.send_bytes,
        close=sock.close,
        send_now=sync_sender(send),
    )
    await hub.register(session, hello)
    await session.send(
        protocol.Welcome(
            connection_id=str(session.connection_id),
            server_id=hub.server_id,
            heartbeat_interval=float(settings.CONNECTOR_HEARTBEAT_SECONDS),
            location=hub.server_id,
            features=[protocol.FEATURE_BATCH],
            auth_domain=settings.AUTH_DOMAIN,
            team_url=team_url("{team}"),
        )
    )
    await hub.push_config(session)
    reason = "closed by the connector"
    dispatch = session.dispatch_stream_frame
    try:
        while True:
            try:
                messages = await _next_messages(sock)
            except protocol.ProtocolError as exc:
                reason = f"protocol violation: {exc.reason}"
                await sock.close(exc.close_code, exc.reason)
                break
            session.last_rx = time.monotonic()
            violation = ""
            for msg in messages:
                if msg.KIND >= 16:  # the data plane: dispatched synchronously, never waiting on a stream
                    if msg.KIND == protocol.Kind.REQUEST:
                        violation = "unexpected Request"
                        break
                    dispatch(msg)
                elif isinstance(msg, protocol.Ping):
                    await session.send(protocol.Pong(nonce=msg.nonce, ts=msg.ts))
                elif isinstance(msg, protocol.Pong):
                    pass
                elif isinstance(msg, protocol.ConfigAck):
                    if msg.version > session.sent_version:
                        violation = f"CONFIG_ACK for version {msg.version}, which was never sent"
                        break
                    await hub.config_acked(session, msg)
                elif isinstance(msg, protocol.Drain):
                    hub.session_draining(session)
                elif isinstance(msg, protocol.Error):
                    logger.warning("connector %s reports %s: %s", session.connector_id, msg.code, msg.message)
                elif isinstance(msg, protocol.Hello):
                    violation = "HELLO was already received"
                    break
                else:
                    violation = f"unexpected {type(msg).__name__}"
                    break
            if violation:
                reason = f"protocol violation: {violation}"
                await sock.close(protocol.CloseCode.PROTOCOL_VIOLATION, violation)
                break
    except _Disconnected as exc:
        reason = exc.reason
    finally:
        await hub.unregister(session, reason)


class _Disconnected(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


async def _next_message(sock: WebSocket) -> Any:
    return protocol.decode(await _next_bytes(sock))


async def _next_messages(sock: WebSocket) -> list[Any]:
    """The frames of the next websocket message (several when the connector sends a BATCH)."""
    return protocol.decode_many(await _next_bytes(sock))


async def _next_bytes(sock: WebSocket) -> bytes:
    while True:
        event = await sock.receive()
        kind = event["type"]
        if kind == "websocket.disconnect":
            code = event.get("code", 1006)
            raise _Disconnected(
                "closed by the connector (going away)" if code == 1001 else f"connection lost (websocket code {code})"
            )
        if kind != "websocket.receive":
            continue
        data = event.get("bytes")
        if data is None:
            raise protocol.ProtocolError("text messages are not part of the protocol")
        if len(data) > settings.CONNECTOR_MAX_FRAME_BYTES:
            raise protocol.ProtocolError(f"frame of {len(data)} bytes is too large")
        return data


async def _refuse(sock: WebSocket, hub, code: int, reason: str, origin_ip: str) -> None:
    hub.stats["refused"] += 1
    logger.warning("connector from %s refused: %s", origin_ip or "?", reason)
    # Some servers (daphne) drop close reasons: say it in an ERROR frame first, which the connector logs.
    with contextlib.suppress(Exception):
        await sock.send_bytes(
            protocol.encode(protocol.Error(code=str(int(code)), message=reason[: protocol.MAX_ERROR_TEXT]))
        )
    await sock.close(code, reason)
