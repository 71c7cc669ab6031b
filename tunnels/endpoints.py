"""Websocket endpoints, as plain ASGI apps (no per-connection Channels consumer or layer loop):

* `/connector/v1`: connectors dial in with `Authorization: Bearer <tunnel token>`;
* `/ws/accounts/<account_id>/tunnels/status`: browsers of the organisation's members follow live status.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings

from connector import protocol
from tunnels.hub import ConnectorSession, Watcher, get_hub, status_snapshots
from tunnels.secrets import InvalidTunnelToken, parse_token, secrets_equal

logger = logging.getLogger("tunnels.connector")

HELLO_TIMEOUT = 10.0


def _header(scope: dict[str, Any], name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


class _Socket:
    """The ASGI send/receive of one accepted websocket, with close bookkeeping."""

    def __init__(self, receive, send) -> None:
        self.receive = receive
        self._send = send
        self.closed = False

    async def send_bytes(self, data: bytes) -> None:
        if not self.closed:
            await self._send({"type": "websocket.send", "bytes": data})

    async def send_text(self, text: str) -> None:
        if not self.closed:
            await self._send({"type": "websocket.send", "text": text})

    async def close(self, code: int, reason: str = "") -> None:
        if not self.closed:
            self.closed = True
            await self._send({"type": "websocket.close", "code": int(code), "reason": reason[:120]})


def sync_sender(send) -> Callable[[bytes], None] | None:
    """A synchronous binary send on the same websocket as `send`, where the server allows it: uvicorn's
    websockets-sansio protocol writes a message with no await (its `send()` is a coroutine around the same two
    calls). The hub writes a burst's frames with it at once (tunnels.hub.EARLY_FLUSH_FRAMES). None for other
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
    sock = _Socket(receive, send)
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


async def _next_message(sock: _Socket) -> Any:
    return protocol.decode(await _next_bytes(sock))


async def _next_messages(sock: _Socket) -> list[Any]:
    """The frames of the next websocket message (several when the connector sends a BATCH)."""
    return protocol.decode_many(await _next_bytes(sock))


async def _next_bytes(sock: _Socket) -> bytes:
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


async def _refuse(sock: _Socket, hub, code: int, reason: str, origin_ip: str) -> None:
    hub.stats["refused"] += 1
    logger.warning("connector from %s refused: %s", origin_ip or "?", reason)
    # Some servers (daphne) drop close reasons: say it in an ERROR frame first, which the connector logs.
    with contextlib.suppress(Exception):
        await sock.send_bytes(protocol.encode(protocol.Error(code=str(int(code)), message=reason)))
    await sock.close(code, reason)


# --- live status for browsers ---------------------------------------------------------------------------------


def _authorise_watcher(scope: dict[str, Any], account_id: str):
    """The organisation the signed-in member may watch (read on tunnels), or None."""
    from django.core.exceptions import PermissionDenied
    from django.http import Http404
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.models import Device

    from controlplane.access import NotSignedIn, resolve_org_access
    from controlplane.choices import Level, Resource

    user = scope.get("user")
    session = scope.get("session")
    if user is None or not user.is_authenticated:
        return None
    device_id = session.get(DEVICE_ID_SESSION_KEY) if session is not None else None
    device = Device.from_persistent_id(device_id) if device_id else None
    user.otp_device = device if device is not None and device.user_id == user.pk else None
    # What django_otp's middleware gives HTTP requests: without it a member of a 2FA organisation was refused.
    user.is_verified = lambda: user.otp_device is not None
    try:
        access = resolve_org_access(user=user, token=None, account_id=account_id)
        access.require(Resource.TUNNELS, Level.READ)
    except (Http404, PermissionDenied, NotSignedIn):
        return None
    return access.organisation


async def status_app(scope: dict[str, Any], receive, send) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    account_id = scope["url_route"]["kwargs"]["account_id"]
    organisation = await sync_to_async(_authorise_watcher, thread_sensitive=False)(scope, account_id)
    if organisation is None:
        await send({"type": "websocket.close", "code": 4404})
        return
    hub = get_hub()
    await hub.ensure_started()
    await send({"type": "websocket.accept"})
    sock = _Socket(receive, send)

    async def send_json(payload: dict[str, Any]) -> None:
        await sock.send_text(json.dumps(payload, default=str))

    watcher = Watcher(organisation_id=organisation.pk, send_json=send_json)
    hub.watch(watcher)
    try:
        from tunnels.models import Tunnel

        ids = await sync_to_async(
            lambda: set(
                Tunnel.objects.for_org(organisation).filter(deleted_at__isnull=True).values_list("pk", flat=True)
            ),
            thread_sensitive=False,
        )()
        snapshots = await hub.db(status_snapshots, organisation.pk, ids)
        await send_json({"type": "snapshot", "tunnels": snapshots})
        while True:
            event = await receive()
            if event["type"] == "websocket.disconnect":
                break
    finally:
        hub.unwatch(watcher)
