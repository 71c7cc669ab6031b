"""This process's hub as the tunnels app reaches it, and what the layers above register with the tunnels app.

The hub (dataplane/hub.py) belongs to the data plane, a layer above tunnels (docs/architecture.md, "Layers"): it
registers its class here when imported, so that the tunnels app's browser status socket (status_socket.py) and its
event publishing (events.py) use the process's hub without importing the layer above. The certificates app
registers the Origin CA's trust bundle here (in its AppConfig.ready), sent with every connector configuration.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tunnels.bus import publish_to

if TYPE_CHECKING:
    from dataplane.hub import Hub
    from tunnels.events import Event

_hub: Hub | None = None
_hub_lock = threading.Lock()
_hub_class: Callable[[], Hub] | None = None


def register_hub_class(factory: Callable[[], Hub]) -> None:
    """How this process builds its hub (dataplane/hub.py registers `Hub` when it is imported)."""
    global _hub_class
    _hub_class = factory


def get_hub() -> Hub:
    global _hub
    with _hub_lock:
        if _hub is None:
            if _hub_class is None:
                raise RuntimeError("no hub in this process: the data plane (dataplane/hub.py) was never imported")
            _hub = _hub_class()
        return _hub


def current_hub() -> Hub | None:
    """This process's hub once started (its event loop set), else None: a hot path's check without a lock."""
    hub = _hub
    return hub if hub is not None and hub.loop is not None else None


def forget_hub() -> Hub | None:
    """Detach this process's hub and return it (tests stop it and start a fresh one per event loop)."""
    global _hub
    with _hub_lock:
        hub, _hub = _hub, None
    return hub


def publish(event: Event | dict[str, Any]) -> None:
    """Deliver an event (tunnels/events.py; a wire dict is accepted too) to every hub: this process's directly,
    the others' through the channel layer. Safe to call from any thread (services call it after commit)."""
    publish_to(_hub, event)


# The Origin CA's trust bundle (PEM) sent with every configuration: registered by the certificates app in its
# AppConfig.ready (tunnels does not import it: the product apps' layer contracts).
_origin_ca_source: Callable[[], str] | None = None


def register_origin_ca_source(source: Callable[[], str]) -> None:
    global _origin_ca_source
    _origin_ca_source = source


def origin_ca_bundle() -> str:
    return _origin_ca_source() if _origin_ca_source is not None else ""
