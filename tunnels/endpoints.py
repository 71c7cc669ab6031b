"""Websocket endpoints, as plain ASGI apps (no per-connection Channels consumer or layer loop):

* `/connector/v1`: connectors dial in with `Authorization: Bearer <tunnel token>`;
* `/ws/accounts/<account_id>/tunnels/status`: browsers of the organisation's members follow live status.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.conf import settings

from connector import protocol
from controlplane.teams import team_url
from tunnels.hub import ConnectorSession, Watcher, get_hub, status_snapshots
from tunnels.secrets import InvalidTunnelToken, parse_token, secrets_equal

if TYPE_CHECKING:
    from controlplane.models import Organisation

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
        await sock.send_bytes(
            protocol.encode(protocol.Error(code=str(int(code)), message=reason[: protocol.MAX_ERROR_TEXT]))
        )
    await sock.close(code, reason)


# --- live status for browsers ---------------------------------------------------------------------------------


class WatcherCloseCode(enum.IntEnum):
    """Why the status socket of a browser was refused or closed (docs/tunnels.md, "Live status"). The page says
    so, with a link to fix it; it keeps retrying slowly, so fixing it in another tab brings the feed back."""

    SIGNED_OUT = 4401
    FORBIDDEN = 4403  # a member whose role cannot see tunnels
    NOT_FOUND = 4404  # not a member (or no such organisation): existence stays hidden
    SECOND_FACTOR_REQUIRED = 4411


@dataclass(frozen=True)
class WatcherRefusal:
    code: WatcherCloseCode
    reason: str
    fix_url: str = ""
    fix_label: str = ""


def authorise_watcher(user: Any, account_id: str) -> Organisation | WatcherRefusal:
    """The organisation whose tunnels `user` (as resolved by controlplane.second_factor) may watch, or why not.
    The same rule as the tunnel pages: resolve_org_access, then read on tunnels."""
    from django.core.exceptions import PermissionDenied
    from django.http import Http404
    from django.urls import reverse

    from controlplane.access import NotSignedIn, SecondFactorRequired, resolve_org_access
    from controlplane.choices import Level, Resource
    from controlplane.services.auth import user_has_second_factor

    try:
        access = resolve_org_access(user=user, token=None, account_id=account_id)
        access.require(Resource.TUNNELS, Level.READ)
    except NotSignedIn:
        return WatcherRefusal(WatcherCloseCode.SIGNED_OUT, "You are signed out.", reverse("ui:login"), "Sign in")
    except SecondFactorRequired:
        if user_has_second_factor(user):
            fix_url, fix_label = reverse("ui:login-verify"), "Enter your second factor"
        else:
            fix_url, fix_label = reverse("ui:two-factor"), "Set up two-factor authentication"
        return WatcherRefusal(
            WatcherCloseCode.SECOND_FACTOR_REQUIRED,
            "This organisation requires two-factor authentication, and this session has not passed it.",
            fix_url,
            fix_label,
        )
    except Http404:
        return WatcherRefusal(WatcherCloseCode.NOT_FOUND, "No such account, or you are no longer a member.")
    except PermissionDenied as exc:
        return WatcherRefusal(WatcherCloseCode.FORBIDDEN, str(exc) or "You do not have permission to see tunnels.")
    return access.organisation


def reauthorise_watcher(session_key: str | None, account_id: str) -> Organisation | WatcherRefusal:
    """`authorise_watcher` again from the session as stored now: signing out (in another tab), losing the
    membership or the second factor closes an open feed within LIVE_STATUS_RECHECK_SECONDS."""
    from importlib import import_module

    from controlplane.second_factor import user_for_session

    session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    return authorise_watcher(user_for_session(session), account_id)


async def status_app(scope: dict[str, Any], receive, send) -> None:
    """The live status feed of one organisation: a snapshot, then every change; a heartbeat every
    LIVE_STATUS_RECHECK_SECONDS, each after checking again that the session may still watch."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    account_id = scope["url_route"]["kwargs"]["account_id"]
    outcome = await sync_to_async(authorise_watcher, thread_sensitive=False)(scope.get("user"), account_id)
    # Accepted even when refused: a refusal before the handshake reaches the browser as a bare 1006, and the page
    # must be able to say why.
    await send({"type": "websocket.accept"})
    sock = _Socket(receive, send)

    async def send_json(payload: dict[str, Any]) -> None:
        await sock.send_text(json.dumps(payload, default=str))

    if isinstance(outcome, WatcherRefusal):
        await _refuse_watcher(sock, send_json, outcome)
        return
    organisation = outcome
    hub = get_hub()
    await hub.ensure_started()
    interval = float(settings.LIVE_STATUS_RECHECK_SECONDS)
    session_key = getattr(scope.get("session"), "session_key", None)
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
        await send_json({"type": "snapshot", "tunnels": snapshots, "heartbeat": interval})
        while True:
            try:
                event = await asyncio.wait_for(receive(), interval)
            except TimeoutError:
                # Not on the hub's executor: a page's recheck must never delay connection bookkeeping.
                outcome = await sync_to_async(reauthorise_watcher, thread_sensitive=False)(session_key, account_id)
                if isinstance(outcome, WatcherRefusal):
                    await _refuse_watcher(sock, send_json, outcome)
                    break
                await send_json({"type": "heartbeat"})
                continue
            if event["type"] == "websocket.disconnect":
                break
    finally:
        hub.unwatch(watcher)


async def _refuse_watcher(sock: _Socket, send_json, refusal: WatcherRefusal) -> None:
    # Some servers (daphne) drop close reasons: the message says it first, the close code says it again.
    await send_json(
        {
            "type": "refused",
            "code": int(refusal.code),
            "reason": refusal.reason,
            "fix_url": refusal.fix_url,
            "fix_label": refusal.fix_label,
        }
    )
    await sock.close(refusal.code, refusal.reason)
