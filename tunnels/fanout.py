"""The hub's status fan-out: the browser sockets following an organisation's tunnels (tunnels/status_socket.py),
and the status they are sent when a tunnel's connections change: computed once per change, pushed to this
process's watchers and, through the channel layer, to the other processes' (a `status` event with its snapshot).
Also the flap-damped health check that follows each change (tunnels/tasks.py)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from tunnels.bus import uses_shared_layer
from tunnels.events import OriginErrorsRecorded, StatusChanged

logger = logging.getLogger("tunnels.hub")


@dataclass(eq=False)
class Watcher:
    """A browser socket following one organisation's tunnels; on a tunnel's page (`tunnel_id`) it also gets that
    tunnel's origin errors as they are recorded (only those whose request id starts with `request_id`)."""

    organisation_id: uuid.UUID
    send_json: Callable[[dict[str, Any]], Awaitable[None]]
    tunnel_id: uuid.UUID | None = None
    request_id: str = ""


class StatusFanout:
    """Part of Hub (dataplane/hub.py). Uses the hub's `db`, `loop`, `_db` (executor) and `_broadcast` (bus.py)."""

    loop: asyncio.AbstractEventLoop | None
    db: Callable[..., Awaitable[Any]]
    _broadcast: Callable[..., Awaitable[None]]
    _db: Any

    def _init_fanout(self) -> None:
        self.watchers: dict[uuid.UUID, set[Watcher]] = {}
        # Tunnel -> when (loop time) its pending health check runs.
        self._health_checks: dict[uuid.UUID, float] = {}

    def _subscribe_fanout(self, subscribe: Callable[[Any, Any], None]) -> None:
        subscribe(StatusChanged, self._on_status_changed)
        subscribe(OriginErrorsRecorded, self._on_origin_errors)

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

    async def _on_status_changed(self, event: StatusChanged) -> None:
        if event.snapshot is not None:
            await self._notify_watchers(event.organisation_id, {"type": "tunnel", "tunnel": event.snapshot})
        else:
            await self._status_for(event.organisation_id, {event.tunnel_id}, local_only=True)

    async def _on_origin_errors(self, event: OriginErrorsRecorded) -> None:
        for watcher in list(self.watchers.get(event.organisation_id, ())):
            if watcher.tunnel_id != event.tunnel_id:
                continue
            errors = [row for row in event.errors if str(row.get("request_id")).startswith(watcher.request_id)]
            if not errors:
                continue
            message = {"type": "origin_errors", "tunnel": str(event.tunnel_id), "errors": errors[::-1]}
            try:
                await watcher.send_json(message)
            except Exception:  # a socket that went away; its handler unregisters it
                logger.debug("origin errors send failed", exc_info=True)

    async def _status_for(self, org_id: uuid.UUID, tunnel_ids: set[uuid.UUID], *, local_only: bool) -> None:
        """Compute the tunnels' status once and push it to this process's watchers (and, unless local_only,
        to the other processes' watchers through the layer)."""
        if org_id not in self.watchers and (local_only or not uses_shared_layer()):
            return  # nobody can see it (measured: a storm's flushes otherwise recompute status for no one)
        snapshots = await self.db(status_snapshots, org_id, tunnel_ids)
        for snapshot in snapshots:
            await self._notify_watchers(org_id, {"type": "tunnel", "tunnel": snapshot})
            if not local_only and uses_shared_layer():
                await self._broadcast(StatusChanged(org_id, uuid.UUID(snapshot["id"]), snapshot=snapshot))

    async def _tunnels_changed(self, changed: set[tuple[uuid.UUID, uuid.UUID]]) -> None:
        by_org: dict[uuid.UUID, set[uuid.UUID]] = {}
        for org_id, tunnel_id in changed:
            by_org.setdefault(org_id, set()).add(tunnel_id)
        for org_id, tunnel_ids in by_org.items():
            await self._status_for(org_id, tunnel_ids, local_only=False)
            for tunnel_id in tunnel_ids:
                self._schedule_health_check(org_id, tunnel_id)

    def _schedule_health_check(self, org_id: uuid.UUID, tunnel_id: uuid.UUID) -> None:
        """Flap damping: the alert task looks at the status a delay after each change. Changes of a tunnel less
        than a second (a tenth of the delay, if shorter) apart share one check: a storm changes a tunnel in
        flush after flush (measured: ~100 checks of a 10,000-connection tunnel, ~10 s of CPU, a minute later)."""
        from tunnels.tasks import check_tunnel_health

        assert self.loop is not None
        delay = settings.TUNNEL_HEALTH_NOTIFY_DELAY_SECONDS
        due = self.loop.time() + delay
        pending = self._health_checks.get(tunnel_id)
        if pending is not None and due - pending < min(1.0, delay / 10):
            return  # the pending check runs at most a second before this change's own would
        self._health_checks[tunnel_id] = due

        def enqueue() -> None:
            if self._health_checks.get(tunnel_id) == due:
                del self._health_checks[tunnel_id]
            self._db.submit(
                _run_quietly, check_tunnel_health.delay, organisation_id=str(org_id), tunnel_id=str(tunnel_id)
            )

        self.loop.call_later(delay, enqueue)


def _run_quietly(func: Callable[..., Any], **kwargs: Any) -> None:
    try:
        func(**kwargs)
    except Exception:
        logger.exception("enqueueing %s failed", getattr(func, "__name__", func))


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
