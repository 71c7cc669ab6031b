"""The per-process hub: every connector connection and every live-status browser socket of this process,
and the events that reach them.

Measured on these machines: a Channels consumer per connection, each with its own channel-layer receive loop,
needs ~60 s to accept 10,000 sockets and half a core at idle, and a group_send to 1,000 sockets takes 300–450 ms.
So there is one hub per process: sockets are plain ASGI websockets registered in dictionaries, an event is
delivered to the local sockets directly, and the channel layer (Redis pub/sub in production) is used once per
process to hear events published by other processes. Database writes for connection opens/closes/acks are
batched by the ledger. One sweeper task per process handles heartbeats for all connections. With several instances,
the hub also knows which other instances hold which tunnels, and requests for those go to them over direct peer
links (dataplane/peers.py), never through the channel layer.

The hub is the data plane's (this package) and registers its class with the tunnels app (tunnels/runtime.py),
whose status socket and event publishing reach it there without importing this layer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.utils import timezone

from dataplane.loops import FLUSH_INTERVAL, REPAIR_EVERY_TURNS, BackgroundLoops, _seconds, tune_gc
from dataplane.sessions import (
    EARLY_FLUSH_FRAMES,
    SEND_QUEUE_HIGH,
    CachedTunnel,
    ConnectorSession,
    SessionRegistry,
    load_tunnel,
    load_tunnels,
)
from tunnels import ledger, runtime
from tunnels.bus import HUB_GROUP, EventBus, uses_shared_layer
from tunnels.events import HoldersChanged
from tunnels.fanout import StatusFanout, Watcher, status_snapshots
from tunnels.runtime import current_hub, get_hub, origin_ca_bundle, publish, register_origin_ca_source

if TYPE_CHECKING:
    from dataplane.peers import PeerDirectory
    from dataplane.relay import PeerRelay

__all__ = [
    "EARLY_FLUSH_FRAMES",
    "FLUSH_INTERVAL",
    "HUB_GROUP",
    "REPAIR_EVERY_TURNS",
    "SEND_QUEUE_HIGH",
    "CachedTunnel",
    "ConnectorSession",
    "Hub",
    "Watcher",
    "current_hub",
    "get_hub",
    "origin_ca_bundle",
    "publish",
    "register_origin_ca_source",
    "reset_hub_for_tests",
    "status_snapshots",
    "uses_shared_layer",
]

logger = logging.getLogger(__name__)

# Earlier names, for callers and tests written before the hub was split.
_load_tunnel = load_tunnel
_load_tunnels = load_tunnels


class Hub(SessionRegistry, EventBus, BackgroundLoops, StatusFanout):
    """The parts together (each module's docstring says its job): sessions.py (the registry of connections and
    the tunnels' cache), bus.py (typed events by subscription), loops.py (flush, sweep, housekeeping), fanout.py
    (status to browser watchers). What they share lives here: the loop, the database threads, the peer links."""

    def __init__(self) -> None:
        self.server_id = f"{socket.gethostname()[:24]}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.started_at = timezone.now()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._db = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="hub-db")
        self._tasks: list[asyncio.Task] = []
        self.location = os.environ.get("EDGE_LOCATION", socket.gethostname()[:16])
        # Cross-instance forwarding (dataplane/peers.py), with a shared channel layer only: which other instances hold
        # which tunnels and the links to them; the links peers opened to us; the address we advertise.
        self.peers: PeerDirectory | None = None
        self.peer_relays: set[PeerRelay] = set()
        self.peer_url = ""
        self.stats = {"connects": 0, "refused": 0, "events": 0}
        self._init_registry()
        self._init_bus()
        self._init_loops()
        self._init_fanout()
        # The tunnels app's own kinds; other apps subscribe theirs (the edge: routes, access).
        self._subscribe_registry(self.subscribe)
        self._subscribe_fanout(self.subscribe)
        self.subscribe(HoldersChanged, self._on_holders_changed)

    # -- lifecycle --------------------------------------------------------------------------------------------

    async def ensure_started(self) -> None:
        if self.loop is not None:
            return
        self.loop = asyncio.get_running_loop()
        tune_gc()
        self._flush_wakeup = asyncio.Event()
        if uses_shared_layer():
            from dataplane.peers import PeerDirectory, own_peer_url

            self.peers = PeerDirectory(self)
            self.peer_url = own_peer_url()
        await self._heartbeat_instance()
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
        await self._reload_peers()
        logger.info("hub %s started", self.server_id)

    async def db(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db, lambda: func(*args, **kwargs))

    async def _on_holders_changed(self, event: HoldersChanged) -> None:
        if self.peers is not None:
            self.peers.on_event(event.to_wire())


runtime.register_hub_class(Hub)


async def reset_hub_for_tests() -> None:
    """Stop this process's hub (tests start a fresh one per event loop)."""
    hub = runtime.forget_hub()
    if hub is None:
        return
    for task in hub._tasks:
        task.cancel()
    for task in hub._tasks:
        with contextlib.suppress(BaseException):
            await task
    if hub.peers is not None:
        await hub.peers.close()
    # Close each database thread's connection (Django's are per thread), so the test database can be dropped.
    workers = hub._db._max_workers
    barrier = threading.Barrier(workers)

    def close_connection() -> None:
        from django.db import connections

        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=5)
        connections.close_all()

    for _ in range(workers):
        hub._db.submit(close_connection)
    hub._db.shutdown(wait=True)
