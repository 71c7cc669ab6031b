"""The per-process hub: every connector connection and every live-status browser socket of this process,
and the events that reach them.

Measured on these machines: a Channels consumer per connection, each with its own channel-layer receive loop,
needs ~60 s to accept 10,000 sockets and half a core at idle, and a group_send to 1,000 sockets takes 300–450 ms.
So there is one hub per process: sockets are plain ASGI websockets registered in dictionaries, an event is
delivered to the local sockets directly, and the channel layer (Redis pub/sub in production) is used once per
process to hear events published by other processes. Database writes for connection opens/closes/acks are
batched by the ledger. One sweeper task per process handles heartbeats for all connections.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.utils import timezone

from connector import protocol
from tunnels import ledger

logger = logging.getLogger(__name__)

HUB_GROUP = "zt-hub"
FLUSH_INTERVAL = 0.05


@dataclass
class ConnectorSession:
    """One registered connector connection held by this process."""

    connection_id: uuid.UUID
    organisation_id: uuid.UUID
    tunnel_id: uuid.UUID
    connector_id: uuid.UUID
    conn_index: int
    origin_ip: str
    send_bytes: Callable[[bytes], Awaitable[None]]
    close: Callable[[int, str], Awaitable[None]]
    acked_version: int = -1
    sent_version: int = -1
    last_rx: float = field(default_factory=time.monotonic)
    last_ping: float = field(default_factory=time.monotonic)
    draining: bool = False
    closed: bool = False

    async def send(self, message: Any) -> None:
        if not self.closed:
            await self.send_bytes(protocol.encode(message))


@dataclass(eq=False)
class Watcher:
    """A browser socket following one organisation's tunnels."""

    organisation_id: uuid.UUID
    send_json: Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class CachedTunnel:
    organisation_id: uuid.UUID
    secret: bytes
    deleted: bool
    config_version: int
    config: dict[str, Any]


class Hub:
    def __init__(self) -> None:
        self.server_id = f"{socket.gethostname()[:24]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.started_at = timezone.now()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.sessions: dict[uuid.UUID, dict[uuid.UUID, ConnectorSession]] = {}
        self.watchers: dict[uuid.UUID, set[Watcher]] = {}
        self.tunnels: dict[uuid.UUID, CachedTunnel] = {}
        self.batch = ledger.Batch()
        self._db = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="hub-db")
        self._tasks: list[asyncio.Task] = []
        self._flush_wakeup: asyncio.Event | None = None
        self._layer_channel: str | None = None
        self._nonce = itertools.count(1)
        self.stats = {"connects": 0, "refused": 0, "events": 0}

    # -- lifecycle --------------------------------------------------------------------------------------------

    async def ensure_started(self) -> None:
        if self.loop is not None:
            return
        self.loop = asyncio.get_running_loop()
        self._flush_wakeup = asyncio.Event()
        await self.db(ledger.heartbeat_instance, self.server_id, socket.gethostname(), os.getpid(), self.started_at)
        # Without a shared channel layer there is only one process: connections any earlier run left open are gone.
        changed = await self.db(
            ledger.reconcile_lost_instances,
            self.server_id,
            _seconds(settings.SERVER_INSTANCE_DEADLINE_SECONDS),
            all_others=not uses_shared_layer(),
        )
        self._tasks = [
            asyncio.ensure_future(self._flush_loop()),
            asyncio.ensure_future(self._sweep_loop()),
            asyncio.ensure_future(self._instance_loop()),
        ]
        if uses_shared_layer():
            self._tasks.append(asyncio.ensure_future(self._layer_loop()))
        await self._tunnels_changed(changed)
        logger.info("hub %s started", self.server_id)

    async def db(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db, lambda: func(*args, **kwargs))

    # -- connectors -------------------------------------------------------------------------------------------

    async def tunnel_for_token(self, tunnel_id: uuid.UUID) -> CachedTunnel | None:
        cached = self.tunnels.get(tunnel_id)
        if cached is None:
            cached = await self.db(_load_tunnel, tunnel_id)
            if cached is not None:
                self.tunnels[tunnel_id] = cached
        return cached

    async def register(self, session: ConnectorSession, hello: protocol.Hello, **meta: Any) -> None:
        peers = self.sessions.setdefault(session.tunnel_id, {})
        # The same connector reconnecting an index supersedes its old connection.
        for other in list(peers.values()):
            if other.connector_id == session.connector_id and other.conn_index == session.conn_index:
                await self.unregister(other, "superseded by a new connection with the same index")
                with contextlib.suppress(Exception):
                    await other.close(protocol.CloseCode.DISCONNECTED, "superseded by a newer connection")
        peers[session.connection_id] = session
        session.acked_version = hello.config_version
        self.stats["connects"] += 1
        self.batch.opens.append(
            ledger.ConnOpen(
                connection_id=session.connection_id,
                organisation_id=session.organisation_id,
                tunnel_id=session.tunnel_id,
                connector_id=session.connector_id,
                conn_index=session.conn_index,
                expected_connections=hello.ha_connections,
                version=hello.version,
                arch=hello.arch,
                platform=hello.platform,
                hostname=hello.hostname,
                local_ip=hello.local_ip,
                origin_ip=session.origin_ip,
                features=list(hello.features),
                config_version=hello.config_version,
                opened_at=timezone.now(),
            )
        )
        self._wake_flush()

    async def unregister(self, session: ConnectorSession, reason: str) -> None:
        if session.closed:
            return
        session.closed = True
        peers = self.sessions.get(session.tunnel_id)
        if peers is not None:
            peers.pop(session.connection_id, None)
            if not peers:
                del self.sessions[session.tunnel_id]
        self.batch.closes.append(
            ledger.ConnClose(
                connection_id=session.connection_id,
                organisation_id=session.organisation_id,
                tunnel_id=session.tunnel_id,
                connector_id=session.connector_id,
                reason=reason,
                closed_at=timezone.now(),
            )
        )
        self._wake_flush()

    async def push_config(self, session: ConnectorSession) -> None:
        cached = self.tunnels.get(session.tunnel_id)
        if cached is None or cached.config_version <= max(session.acked_version, session.sent_version):
            return
        if cached.config_version == 0 and not cached.config:
            return  # nothing configured yet: the connector answers 503 until a first version arrives
        session.sent_version = cached.config_version
        await session.send(protocol.Config(version=cached.config_version, config=cached.config))

    async def config_acked(self, session: ConnectorSession, ack: protocol.ConfigAck) -> None:
        session.acked_version = ack.running_version if ack.running_version >= 0 else session.acked_version
        if ack.applied:
            session.acked_version = max(session.acked_version, ack.version)
        if ack.applied or ack.error:
            self.batch.acks.append(
                ledger.ConfigAck(
                    organisation_id=session.organisation_id,
                    tunnel_id=session.tunnel_id,
                    connector_id=session.connector_id,
                    version=ack.version,
                    error=ack.error,
                )
            )
            self._wake_flush()

    # -- browser watchers -------------------------------------------------------------------------------------

    def watch(self, watcher: Watcher) -> None:
        self.watchers.setdefault(watcher.organisation_id, set()).add(watcher)

    def unwatch(self, watcher: Watcher) -> None:
        group = self.watchers.get(watcher.organisation_id)
        if group is not None:
            group.discard(watcher)
            if not group:
                del self.watchers[watcher.organisation_id]

    async def _notify_watchers(self, organisation_id: uuid.UUID, message: dict[str, Any]) -> None:
        for watcher in list(self.watchers.get(organisation_id, ())):
            try:
                await watcher.send_json(message)
            except Exception:  # a socket that went away; its handler unregisters it
                logger.debug("status watcher send failed", exc_info=True)

    # -- events -----------------------------------------------------------------------------------------------

    async def handle_event(self, event: dict[str, Any]) -> None:
        self.stats["events"] += 1
        kind = event.get("kind")
        tunnel_id = uuid.UUID(event["tunnel"])
        org_id = uuid.UUID(event["org"])
        if kind == "config":
            self.tunnels.pop(tunnel_id, None)
            if tunnel_id in self.sessions:
                await self.tunnel_for_token(tunnel_id)
                await asyncio.gather(*(self.push_config(s) for s in list(self.sessions.get(tunnel_id, {}).values())))
            await self._status_for(org_id, {tunnel_id}, local_only=True)
        elif kind == "tunnel":
            self.tunnels.pop(tunnel_id, None)
            await self._status_for(org_id, {tunnel_id}, local_only=True)
        elif kind == "disconnect":
            connector = event.get("connector")
            targets = [
                s
                for s in list(self.sessions.get(tunnel_id, {}).values())
                if connector is None or str(s.connector_id) == connector
            ]
            for session in targets:
                await self.unregister(session, event.get("reason") or "disconnected")
                with contextlib.suppress(Exception):
                    await session.close(
                        int(event.get("code") or protocol.CloseCode.DISCONNECTED), event.get("reason", "")
                    )
        elif kind == "status":
            snapshot = event.get("snapshot")
            if snapshot is not None:
                await self._notify_watchers(org_id, {"type": "tunnel", "tunnel": snapshot})
            else:
                await self._status_for(org_id, {tunnel_id}, local_only=True)

    async def _status_for(self, org_id: uuid.UUID, tunnel_ids: set[uuid.UUID], *, local_only: bool) -> None:
        """Compute the tunnels' status once and push it to this process's watchers (and, unless local_only,
        to the other processes' watchers through the layer)."""
        if local_only and org_id not in self.watchers:
            return
        snapshots = await self.db(status_snapshots, org_id, tunnel_ids)
        for snapshot in snapshots:
            await self._notify_watchers(org_id, {"type": "tunnel", "tunnel": snapshot})
            if not local_only and uses_shared_layer():
                await self._broadcast(
                    {"kind": "status", "org": str(org_id), "tunnel": snapshot["id"], "snapshot": snapshot}
                )

    async def _tunnels_changed(self, changed: set[tuple[uuid.UUID, uuid.UUID]]) -> None:
        by_org: dict[uuid.UUID, set[uuid.UUID]] = {}
        for org_id, tunnel_id in changed:
            by_org.setdefault(org_id, set()).add(tunnel_id)
        for org_id, tunnel_ids in by_org.items():
            await self._status_for(org_id, tunnel_ids, local_only=False)
            for tunnel_id in tunnel_ids:
                self._schedule_health_check(org_id, tunnel_id)

    def _schedule_health_check(self, org_id: uuid.UUID, tunnel_id: uuid.UUID) -> None:
        """Flap damping: the alert task looks at the status a delay after each change."""
        from tunnels.tasks import check_tunnel_health

        def enqueue() -> None:
            self._db.submit(
                _run_quietly, check_tunnel_health.delay, organisation_id=str(org_id), tunnel_id=str(tunnel_id)
            )

        assert self.loop is not None
        self.loop.call_later(settings.TUNNEL_HEALTH_NOTIFY_DELAY_SECONDS, enqueue)

    # -- background loops -------------------------------------------------------------------------------------

    def _wake_flush(self) -> None:
        if self._flush_wakeup is not None:
            self._flush_wakeup.set()

    async def _flush_loop(self) -> None:
        assert self._flush_wakeup is not None
        while True:
            await self._flush_wakeup.wait()
            await asyncio.sleep(FLUSH_INTERVAL)  # gather what arrives meanwhile into the same transaction
            self._flush_wakeup.clear()
            batch, self.batch = self.batch, ledger.Batch()
            if not batch:
                continue
            try:
                changed = await self.db(ledger.flush, batch, self.server_id)
            except Exception:
                logger.exception("writing %d opens / %d closes failed", len(batch.opens), len(batch.closes))
                continue
            await self._tunnels_changed(changed)

    async def _sweep_loop(self) -> None:
        """Heartbeats for every connection of this process: ping the quiet ones, drop the silent ones."""
        interval = float(settings.CONNECTOR_HEARTBEAT_SECONDS)
        deadline = interval * protocol.HEARTBEAT_MISSES
        while True:
            await asyncio.sleep(min(1.0, interval / 4))
            now = time.monotonic()
            for peers in list(self.sessions.values()):
                for session in list(peers.values()):
                    if now - session.last_rx > deadline:
                        await self.unregister(session, f"heartbeat timeout (nothing received for {deadline:.0f} s)")
                        with contextlib.suppress(Exception):
                            await session.close(protocol.CloseCode.GOING_AWAY, "heartbeat timeout")
                    elif now - session.last_ping >= interval:
                        session.last_ping = now
                        with contextlib.suppress(Exception):
                            await session.send(protocol.Ping(nonce=next(self._nonce), ts=time.time()))

    async def _instance_loop(self) -> None:
        while True:
            await asyncio.sleep(settings.SERVER_INSTANCE_HEARTBEAT_SECONDS)
            try:
                await self.db(
                    ledger.heartbeat_instance, self.server_id, socket.gethostname(), os.getpid(), self.started_at
                )
                changed = await self.db(
                    ledger.reconcile_lost_instances,
                    self.server_id,
                    _seconds(settings.SERVER_INSTANCE_DEADLINE_SECONDS),
                )
                await self._tunnels_changed(changed)
                await self._resend_outdated_configs()
            except Exception:
                logger.exception("hub housekeeping failed")

    async def _resend_outdated_configs(self) -> None:
        """Config events can be lost between processes; acks by version let us notice and resend."""
        for tunnel_id in list(self.sessions):
            fresh = await self.db(_load_tunnel, tunnel_id)
            if fresh is None:
                continue
            self.tunnels[tunnel_id] = fresh
            for session in list(self.sessions.get(tunnel_id, {}).values()):
                if session.acked_version < fresh.config_version:
                    session.sent_version = -1
                    await self.push_config(session)

    async def _layer_loop(self) -> None:
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        self._layer_channel = await layer.new_channel()
        await layer.group_add(HUB_GROUP, self._layer_channel)
        while True:
            try:
                message = await layer.receive(self._layer_channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("channel layer receive failed; retrying")
                await asyncio.sleep(1)
                continue
            if message.get("origin") == self.server_id:
                continue
            try:
                await self.handle_event(message["event"])
            except Exception:
                logger.exception("hub event failed: %r", message)

    async def _broadcast(self, event: dict[str, Any]) -> None:
        from channels.layers import get_channel_layer

        await get_channel_layer().group_send(HUB_GROUP, {"type": "hub.event", "event": event, "origin": self.server_id})


def _seconds(value: int):
    import datetime

    return datetime.timedelta(seconds=value)


def _run_quietly(func: Callable[..., Any], **kwargs: Any) -> None:
    try:
        func(**kwargs)
    except Exception:
        logger.exception("enqueueing %s failed", getattr(func, "__name__", func))


def uses_shared_layer() -> bool:
    backend = settings.CHANNEL_LAYERS.get("default", {}).get("BACKEND", "")
    return "InMemory" not in backend


def _load_tunnel(tunnel_id: uuid.UUID) -> CachedTunnel | None:
    from django.db import close_old_connections

    from tunnels.models import Tunnel
    from tunnels.secrets import decrypt_secret

    close_old_connections()
    tunnel = (
        Tunnel.objects.unscoped("a connector's token names its tunnel")
        .filter(pk=tunnel_id)
        .only("organisation_id", "secret_ciphertext", "deleted_at", "config_version", "config")
        .first()
    )
    if tunnel is None:
        return None
    return CachedTunnel(
        organisation_id=tunnel.organisation_id,
        secret=decrypt_secret(tunnel.secret_ciphertext),
        deleted=tunnel.deleted_at is not None,
        config_version=tunnel.config_version,
        config=tunnel.config or {},
    )


def status_snapshots(org_id: uuid.UUID, tunnel_ids: set[uuid.UUID]) -> list[dict[str, Any]]:
    """JSON-ready status of the tunnels, as the status page and the API show it."""
    from django.db import close_old_connections

    from controlplane.models import Organisation
    from tunnels.live import tunnel_status_json
    from tunnels.models import Tunnel
    from tunnels.selectors import tunnel_health_map

    close_old_connections()
    organisation = Organisation.objects.filter(pk=org_id).first()
    if organisation is None:
        return []
    tunnels = list(Tunnel.objects.for_org(organisation).filter(pk__in=tunnel_ids))
    health = tunnel_health_map(organisation=organisation, tunnels=tunnels)
    return [tunnel_status_json(t, health[t.pk]) for t in tunnels]


_hub: Hub | None = None
_hub_lock = threading.Lock()


def get_hub() -> Hub:
    global _hub
    with _hub_lock:
        if _hub is None:
            _hub = Hub()
        return _hub


def publish(event: dict[str, Any]) -> None:
    """Deliver an event to every hub: this process's directly, the others' through the channel layer.
    Safe to call from any thread (services call it after commit)."""
    hub = _hub
    if hub is not None and hub.loop is not None and not hub.loop.is_closed():
        hub.loop.call_soon_threadsafe(lambda: asyncio.ensure_future(_handle_safely(hub, event)))
    if uses_shared_layer():
        from asgiref.sync import async_to_sync
        from channels.layers import get_channel_layer

        origin = hub.server_id if hub is not None and hub.loop is not None else "publisher"
        try:
            async_to_sync(get_channel_layer().group_send)(
                HUB_GROUP, {"type": "hub.event", "event": event, "origin": origin}
            )
        except Exception:
            logger.exception("publishing %s to the channel layer failed", event.get("kind"))


async def _handle_safely(hub: Hub, event: dict[str, Any]) -> None:
    try:
        await hub.handle_event(event)
    except Exception:
        logger.exception("hub event failed: %r", event)


async def reset_hub_for_tests() -> None:
    """Stop this process's hub (tests start a fresh one per event loop)."""
    global _hub
    hub, _hub = _hub, None
    if hub is None:
        return
    for task in hub._tasks:
        task.cancel()
    for task in hub._tasks:
        with contextlib.suppress(BaseException):
            await task
    hub._db.shutdown(wait=True)
