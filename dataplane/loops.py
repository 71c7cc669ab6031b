"""The hub's background loops, one task each per process: the ledger flush (connection opens, closes and config
acks written in batches, retried, repaired), the heartbeat sweep of every connector connection, and the instance
housekeeping (this instance's heartbeat row, lost instances' connections closed, lost config events healed by
resending, the peers' holdings reloaded)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import gc
import itertools
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from django.conf import settings

from connector import protocol
from dataplane.sessions import CachedTunnel, ConnectorSession, load_tunnels
from tunnels import ledger

if TYPE_CHECKING:
    from dataplane.peers import PeerDirectory

logger = logging.getLogger("tunnels.hub")

FLUSH_INTERVAL = 0.05
FLUSH_RETRY_DELAY = 1.0  # seconds before rows the database could not take are tried again
# Every this many housekeeping turns (SERVER_INSTANCE_HEARTBEAT_SECONDS each), this instance's open connection rows
# are checked against its live sessions anyway (one indexed query), whatever went wrong unnoticed.
REPAIR_EVERY_TURNS = 6
# Young-generation threshold of the garbage collector in a process holding connector sockets (CPython's is 700).
GC_THRESHOLD0 = 50_000


class BackgroundLoops:
    """Part of Hub (dataplane/hub.py). Uses the hub's session registry (sessions.py), `db`, `loop`, `peers`,
    `_broadcast` (bus.py) and `_tunnels_changed` (fanout.py)."""

    server_id: str
    started_at: datetime.datetime
    loop: asyncio.AbstractEventLoop | None
    peers: PeerDirectory | None
    peer_url: str
    sessions: dict[uuid.UUID, dict[uuid.UUID, ConnectorSession]]
    tunnels: dict[uuid.UUID, CachedTunnel]
    db: Callable[..., Awaitable[Any]]
    unregister: Callable[..., Awaitable[None]]
    push_config: Callable[..., Awaitable[None]]
    _broadcast: Callable[..., Awaitable[None]]
    _tunnels_changed: Callable[..., Awaitable[None]]

    def _init_loops(self) -> None:
        self.batch = ledger.Batch()
        self._flush_wakeup: asyncio.Event | None = None
        self._nonce = itertools.count(1)
        self._repair_due = False  # a row could not be written: close the rows the live sessions contradict
        self._housekeeping_turns = 0
        self._holdings_dirty: set[uuid.UUID] = set()  # tunnels whose connections stopped carrying streams (DRAIN)
        self._peer_url_warned = False

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
            holdings, self._holdings_dirty = self._holdings_dirty, set()
            changed = None
            if batch:
                try:
                    flushed = await self.db(ledger.flush, batch, self.server_id)
                except Exception:
                    logger.exception("writing %d opens / %d closes failed", len(batch.opens), len(batch.closes))
                    flushed = ledger.Flushed(pending=batch)
                changed = flushed.changed
                await self._after_flush(flushed)
            if self._repair_due:
                self._repair_due = False
                changed = (changed or set()) | await self._repair_open_connections()
            holdings |= {o.tunnel_id for o in batch.opens} | {c.tunnel_id for c in batch.closes}
            await self._announce_holdings(holdings)
            if changed is not None:
                await self._tunnels_changed(changed)

    async def _after_flush(self, flushed: ledger.Flushed) -> None:
        """Never drop state: rows the database could not take now are queued again (before newer ones) and retried
        after a pause; a connection whose open row cannot be written is closed (its status could never show it);
        a skipped close is repaired from the live sessions at once."""
        if flushed.pending:
            pending = flushed.pending
            self.batch = ledger.Batch(
                opens=pending.opens + self.batch.opens,
                closes=pending.closes + self.batch.closes,
                acks=pending.acks + self.batch.acks,
            )
            assert self.loop is not None
            self.loop.call_later(FLUSH_RETRY_DELAY, self._wake_flush)
        for item in flushed.skipped:
            self._repair_due = True
            if isinstance(item, ledger.ConnOpen):
                session = self.sessions.get(item.tunnel_id, {}).get(item.connection_id)
                if session is not None:
                    await self.unregister(session, "the server could not record this connection")
                    with contextlib.suppress(Exception):
                        await session.close(protocol.CloseCode.INTERNAL_ERROR, "the server could not record it")

    async def _repair_open_connections(self) -> set[tuple[uuid.UUID, uuid.UUID]]:
        live = {connection_id for peers in self.sessions.values() for connection_id in peers}
        closing = {c.connection_id for c in self.batch.closes}
        try:
            return await self.db(ledger.repair_open_connections, self.server_id, live, closing)
        except Exception:
            logger.exception("repairing this instance's connection rows failed; retried at the next housekeeping")
            return set()

    async def _announce_holdings(self, tunnel_ids: set[uuid.UUID]) -> None:
        """Tell the other instances which tunnels this one started or stopped holding, once the connection rows
        are written (so that a peer's database reload agrees with the event)."""
        if self.peers is None or not tunnel_ids:
            return
        gained, lost = self.peers.holdings_changed(tunnel_ids)
        for event in self.peers.holdings_events(gained, lost):
            try:
                await self._broadcast(event)
            except Exception:
                logger.exception("announcing tunnel holdings failed (the peers' reload heals it)")

    async def _heartbeat_instance(self) -> None:
        if self.peers is not None and not self.peer_url:
            from dataplane.peers import own_peer_url

            self.peer_url = own_peer_url()
            if not self.peer_url and not self._peer_url_warned:
                self._peer_url_warned = True
                logger.warning(
                    "this instance advertises no peer address (set EDGE_PEER_URL): requests reaching other "
                    "instances for tunnels connected here cannot be forwarded to it"
                )
        await self.db(
            ledger.heartbeat_instance,
            self.server_id,
            socket.gethostname(),
            os.getpid(),
            self.started_at,
            self.peer_url,
        )

    async def _reload_peers(self) -> None:
        if self.peers is not None:
            try:
                await self.peers.reload()
            except Exception:
                logger.exception("loading where tunnels are connected failed")

    async def _sweep_loop(self) -> None:
        """Heartbeats for every connection of this process: ping the quiet ones, drop the silent ones."""
        interval = float(settings.CONNECTOR_HEARTBEAT_SECONDS)
        deadline = interval * protocol.HEARTBEAT_MISSES
        period = min(1.0, interval / 4)
        # Connectors PING every interval themselves and our PONGs keep them from declaring us dead, so only a
        # connection quiet for an interval (plus one sweep period, not to race a PING on its way) gets ours: it
        # still hears from us within 1.5 intervals, and the idle traffic is halved (docs/benchmarks.md).
        quiet = interval + period
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for peers in list(self.sessions.values()):
                for session in list(peers.values()):
                    if now - session.last_rx > deadline:
                        await self.unregister(session, f"heartbeat timeout (nothing received for {deadline:.0f} s)")
                        with contextlib.suppress(Exception):
                            await session.close(protocol.CloseCode.GOING_AWAY, "heartbeat timeout")
                    elif now - session.last_rx >= quiet and now - session.last_ping >= interval:
                        session.last_ping = now
                        with contextlib.suppress(Exception):
                            await session.send(protocol.Ping(nonce=next(self._nonce), ts=time.time()))

    async def _instance_loop(self) -> None:
        while True:
            await asyncio.sleep(settings.SERVER_INSTANCE_HEARTBEAT_SECONDS)
            try:
                await self._heartbeat_instance()
                changed = await self.db(
                    ledger.reconcile_lost_instances,
                    self.server_id,
                    _seconds(settings.SERVER_INSTANCE_DEADLINE_SECONDS),
                )
                await self._tunnels_changed(changed)
                self._housekeeping_turns += 1
                if self._housekeeping_turns % REPAIR_EVERY_TURNS == 0:
                    self._repair_due = True  # runs in the flush loop, between flushes (never beside one)
                    self._wake_flush()
                await self._resend_outdated_configs()
                await self._reload_peers()
            except Exception:
                logger.exception("hub housekeeping failed")

    async def _resend_outdated_configs(self) -> None:
        """Config events can be lost between processes; acks by version let us notice and resend. The tunnels
        are read in one query (one per tunnel cost ~13 % of a core at idle with 2,500 tunnels)."""
        for tunnel_id, fresh in (await self.db(load_tunnels, list(self.sessions))).items():
            self.tunnels[tunnel_id] = fresh
            for session in list(self.sessions.get(tunnel_id, {}).values()):
                if session.acked_version < fresh.config_version:
                    session.sent_version = -1
                    await self.push_config(session)


_gc_tuned = False


def tune_gc() -> None:
    """Once per process, when its hub starts: keep what start-up loaded (Django, the apps: never garbage) out of
    the collector's full passes, and collect the young generation every 50,000 allocations instead of 700, so
    that per-message objects die young instead of being promoted. Measured at 10,000 connections
    (docs/benchmarks.md): full collections over ~1M objects paused the loop 0.4-0.5 s every ~10-15 s at idle."""
    global _gc_tuned
    if _gc_tuned:
        return
    _gc_tuned = True
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD0, *gc.get_threshold()[1:])


def _seconds(value: int):
    import datetime

    return datetime.timedelta(seconds=value)
