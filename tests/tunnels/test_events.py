"""Typed hub events (tunnels/events.py, tunnels/bus.py): each kind's wire form is the dict processes exchanged
before (so instances of both versions understand each other), handlers are subscribed by kind, and a kind nobody
defined or a malformed event from the channel layer is logged and ignored."""

from __future__ import annotations

import logging
import uuid

import pytest

from access.events import AccessChanged
from dataplane.hub import Hub
from tunnels.events import (
    EVENT_TYPES,
    ConfigChanged,
    Disconnect,
    Event,
    HoldersChanged,
    MalformedEvent,
    RoutesChanged,
    StatusChanged,
    TunnelChanged,
)

ORG = uuid.UUID("11111111-1111-4111-8111-111111111111")
TUNNEL = uuid.UUID("22222222-2222-4222-8222-222222222222")
CONNECTOR = uuid.UUID("33333333-3333-4333-8333-333333333333")

# The wire dicts as tunnels/events.py and access/events.py published them before the events were typed.
EARLIER_WIRE = [
    {"kind": "config", "org": str(ORG), "tunnel": str(TUNNEL), "version": 7},
    {"kind": "tunnel", "org": str(ORG), "tunnel": str(TUNNEL)},
    {"kind": "status", "org": str(ORG), "tunnel": str(TUNNEL)},
    {"kind": "status", "org": str(ORG), "tunnel": str(TUNNEL), "snapshot": {"id": str(TUNNEL), "status": "healthy"}},
    {
        "kind": "disconnect",
        "org": str(ORG),
        "tunnel": str(TUNNEL),
        "connector": str(CONNECTOR),
        "code": 4001,
        "reason": "deleted",
    },
    {"kind": "disconnect", "org": str(ORG), "tunnel": str(TUNNEL), "connector": None, "code": 4001, "reason": "x"},
    {"kind": "routes", "org": str(ORG), "tunnel": ""},
    {"kind": "holders", "server": "vm-a-1", "url": "ws://10.0.0.1:8000", "gained": [TUNNEL.hex], "lost": []},
    {"kind": "access", "org": str(ORG)},
]


@pytest.mark.parametrize("wire", EARLIER_WIRE, ids=lambda w: w["kind"])
def test_the_wire_form_is_the_earlier_dict_both_ways(wire):
    event = Event.from_wire(wire)
    assert event is not None and event.KIND == wire["kind"]
    assert event.to_wire() == wire


def test_fields_are_typed():
    event = Event.from_wire(EARLIER_WIRE[4])
    assert event == Disconnect(ORG, TUNNEL, CONNECTOR, code=4001, reason="deleted")
    assert isinstance(Event.from_wire(EARLIER_WIRE[0]), ConfigChanged)
    assert Event.from_wire(EARLIER_WIRE[0]).version == 7
    assert EVENT_TYPES["access"] is AccessChanged
    assert {"config", "tunnel", "status", "disconnect", "routes", "holders", "access"} <= set(EVENT_TYPES)


@pytest.mark.parametrize(
    "wire",
    [
        {"kind": "config", "org": "not-a-uuid", "tunnel": str(TUNNEL), "version": 1},
        {"kind": "config", "org": str(ORG), "tunnel": str(TUNNEL)},
        {"kind": "config", "org": str(ORG), "tunnel": str(TUNNEL), "version": "seven"},
        {"kind": "status", "org": str(ORG), "tunnel": str(TUNNEL), "snapshot": "<script>"},
        {"kind": "holders", "server": "vm-a-1", "gained": ["../../etc"]},
        {"kind": "access"},
    ],
)
def test_malformed_events_are_refused_with_the_reason(wire):
    with pytest.raises(MalformedEvent, match=wire["kind"]):
        Event.from_wire(wire)


def test_a_second_class_cannot_take_a_kind():
    with pytest.raises(TypeError, match="already"):

        class Impostor(Event):
            KIND = "config"


async def test_handlers_get_the_typed_event_of_their_kind_only():
    hub = Hub()
    seen: list[Event] = []

    async def on_tunnel(event):
        seen.append(event)

    hub.subscribe(TunnelChanged, on_tunnel)
    hub.subscribe("routes", on_tunnel)  # by its kind name, as before
    await hub.handle_event({"kind": "tunnel", "org": str(ORG), "tunnel": str(TUNNEL)})
    await hub.handle_event(RoutesChanged(ORG))
    await hub.handle_event(StatusChanged(ORG, TUNNEL))  # the hub's own handler; nobody watches: nothing sent
    assert seen == [TunnelChanged(ORG, TUNNEL), RoutesChanged(ORG)]
    hub.unsubscribe(TunnelChanged, on_tunnel)
    await hub.handle_event(TunnelChanged(ORG, TUNNEL))
    assert len(seen) == 2
    hub._db.shutdown(wait=False)


async def test_unknown_and_malformed_events_are_logged_and_ignored(caplog):
    hub = Hub()
    calls: list[Event] = []

    async def anything(event):
        calls.append(event)

    for kind in EVENT_TYPES:
        hub.subscribe(kind, anything)
    with caplog.at_level(logging.WARNING, logger="tunnels.hub"):
        await hub.handle_event({"kind": "certificate", "org": str(ORG)})
        await hub.handle_event({"kind": "certificate", "org": str(ORG)})
        await hub.handle_event({"kind": "disconnect", "org": str(ORG), "tunnel": "nope"})
        await hub.handle_event({"no": "kind"})
    assert calls == []
    assert caplog.text.count("unknown kind 'certificate'") == 1  # once per kind, not per event
    assert "dropped: disconnect" in caplog.text
    hub._db.shutdown(wait=False)


async def test_the_peers_hear_holders_as_before():
    hub = Hub()
    heard: list[dict] = []

    class Directory:
        def on_event(self, event):
            heard.append(event)

    hub.peers = Directory()
    await hub.handle_event(EARLIER_WIRE[7])
    assert heard == [EARLIER_WIRE[7]]
    assert HoldersChanged.parse(EARLIER_WIRE[7]).gained == (TUNNEL.hex,)
    hub._db.shutdown(wait=False)
