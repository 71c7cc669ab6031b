"""The hub's event bus: typed events (tunnels/events.py) delivered to the handlers subscribed to their kind.

An event published in this process reaches its hub directly; the other processes hear it through the channel layer
(one receive loop per process, group HUB_GROUP), as its wire dict. A feature subscribes from its own app
(`hub.subscribe(AccessChanged, handler)`); the hub knows no kind by name. A kind nobody here defined, or one whose
fields do not parse, is logged and ignored."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings

from tunnels.events import Event, MalformedEvent

logger = logging.getLogger("tunnels.hub")

HUB_GROUP = "zt-hub"

Handler = Callable[[Any], Awaitable[None]]


def uses_shared_layer() -> bool:
    backend = settings.CHANNEL_LAYERS.get("default", {}).get("BACKEND", "")
    return "InMemory" not in backend


def wire_of(event: Event | dict[str, Any]) -> dict[str, Any]:
    return event.to_wire() if isinstance(event, Event) else event


class EventBus:
    """Part of Hub (dataplane/hub.py): subscriptions by kind and the channel-layer side of events. Uses the hub's
    `server_id` and `stats`."""

    server_id: str
    stats: dict[str, int]

    def _init_bus(self) -> None:
        self.subscribers: dict[str, list[Handler]] = {}
        self._layer_channel: str | None = None
        self._unknown_kinds: set[str] = set()

    def subscribe(self, kind: type[Event] | str, handler: Handler) -> None:
        """Deliver events of `kind` (an Event class, or its KIND) to `handler`, in subscription order."""
        name = kind if isinstance(kind, str) else kind.KIND
        self.subscribers.setdefault(name, []).append(handler)

    def unsubscribe(self, kind: type[Event] | str, handler: Handler) -> None:
        name = kind if isinstance(kind, str) else kind.KIND
        handlers = self.subscribers.get(name, [])
        if handler in handlers:
            handlers.remove(handler)

    async def handle_event(self, event: Event | dict[str, Any]) -> None:
        """One event, typed or as its wire dict (from the channel layer), to its kind's handlers."""
        self.stats["events"] += 1
        if not isinstance(event, Event):
            try:
                parsed = Event.from_wire(event)
            except MalformedEvent as exc:
                logger.warning("hub event dropped: %s", exc)
                return
            if parsed is None:
                kind = str(event.get("kind"))[:40]
                if kind not in self._unknown_kinds:  # once per kind: a newer instance may publish kinds we lack
                    self._unknown_kinds.add(kind)
                    logger.warning("hub event of unknown kind %r ignored", kind)
                return
            event = parsed
        for handler in self.subscribers.get(event.KIND, ()):
            await handler(event)

    async def announce(self, event: Event) -> None:
        """From this process's loop: deliver `event` to this hub's handlers and, through the channel layer, to
        every other process's (`publish` does the same from any thread)."""
        await self.handle_event(event)
        if uses_shared_layer():
            await self._broadcast(event)

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

    async def _broadcast(self, event: Event | dict[str, Any]) -> None:
        from channels.layers import get_channel_layer

        await get_channel_layer().group_send(
            HUB_GROUP, {"type": "hub.event", "event": wire_of(event), "origin": self.server_id}
        )


def publish_to(hub: Any, event: Event | dict[str, Any]) -> None:
    """Deliver an event to every hub: `hub` (this process's, if started) directly, the others' through the channel
    layer. Safe to call from any thread (services call it after commit)."""
    if hub is not None and hub.loop is not None and not hub.loop.is_closed():
        hub.loop.call_soon_threadsafe(lambda: asyncio.ensure_future(_handle_safely(hub, event)))
    if uses_shared_layer():
        from asgiref.sync import async_to_sync
        from channels.layers import get_channel_layer

        origin = hub.server_id if hub is not None and hub.loop is not None else "publisher"
        wire = wire_of(event)
        try:
            async_to_sync(get_channel_layer().group_send)(
                HUB_GROUP, {"type": "hub.event", "event": wire, "origin": origin}
            )
        except Exception:
            logger.exception("publishing %s to the channel layer failed", wire.get("kind"))


async def _handle_safely(hub: Any, event: Event | dict[str, Any]) -> None:
    try:
        await hub.handle_event(event)
    except Exception:
        logger.exception("hub event failed: %r", event)
