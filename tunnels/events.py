"""The events every server process's hub hears (tunnels/bus.py), one frozen dataclass per kind.

An event travels between processes through the channel layer as its wire form: a dict with "kind" and string
fields (`to_wire()`, the format of the plain dicts used before, so processes of both versions understand each
other); `Event.from_wire()` turns it back into its dataclass, validating it on receipt. A feature declares its own
kinds by subclassing `Event` in its app (access/events.py) and subscribes handlers to them (`hub.subscribe`).

The functions at the bottom publish tunnels' events after the transaction commits (services call them)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, ClassVar

from django.db import transaction

# kind -> its dataclass, filled as subclasses are defined (a kind nobody defined is logged and ignored).
EVENT_TYPES: dict[str, type[Event]] = {}


class MalformedEvent(ValueError):
    """An event whose fields do not parse (a bad or hostile publisher): dropped with this reason."""


@dataclass(frozen=True)
class Event:
    KIND: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.KIND:
            if cls.KIND in EVENT_TYPES and EVENT_TYPES[cls.KIND].__qualname__ != cls.__qualname__:
                raise TypeError(f"event kind {cls.KIND!r} is already {EVENT_TYPES[cls.KIND].__qualname__}")
            EVENT_TYPES[cls.KIND] = cls

    def to_wire(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def parse(cls, wire: dict[str, Any]) -> Event:
        raise NotImplementedError

    @staticmethod
    def from_wire(wire: dict[str, Any]) -> Event | None:
        """The event a wire dict describes; None for a kind this process does not know (the caller logs it).
        Raises MalformedEvent when a known kind's fields do not parse."""
        event_type = EVENT_TYPES.get(str(wire.get("kind") or ""))
        if event_type is None:
            return None
        try:
            return event_type.parse(wire)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MalformedEvent(f"{wire.get('kind')}: {exc!r}") from exc


def _uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


@dataclass(frozen=True)
class TunnelEvent(Event):
    """An event about one tunnel of an organisation."""

    organisation_id: uuid.UUID
    tunnel_id: uuid.UUID

    def to_wire(self) -> dict[str, Any]:
        return {"kind": self.KIND, "org": str(self.organisation_id), "tunnel": str(self.tunnel_id)}

    @classmethod
    def parse(cls, wire: dict[str, Any]) -> Event:
        return cls(organisation_id=_uuid(wire["org"]), tunnel_id=_uuid(wire["tunnel"]))


@dataclass(frozen=True)
class ConfigChanged(TunnelEvent):
    """Push the tunnel's new configuration to its connectors."""

    KIND: ClassVar[str] = "config"
    version: int = 0

    def to_wire(self) -> dict[str, Any]:
        return {**super().to_wire(), "version": self.version}

    @classmethod
    def parse(cls, wire: dict[str, Any]) -> Event:
        return cls(organisation_id=_uuid(wire["org"]), tunnel_id=_uuid(wire["tunnel"]), version=int(wire["version"]))


@dataclass(frozen=True)
class TunnelChanged(TunnelEvent):
    """Created, renamed, rotated or deleted: refresh lists, drop the cached secret."""

    KIND: ClassVar[str] = "tunnel"


@dataclass(frozen=True)
class StatusChanged(TunnelEvent):
    """The tunnel's live state changed: refresh status pages. `snapshot` is the status JSON when the publishing
    process computed it already (tunnels/fanout.py: computed once, sent to every process's watchers)."""

    KIND: ClassVar[str] = "status"
    snapshot: dict[str, Any] | None = None

    def to_wire(self) -> dict[str, Any]:
        wire = super().to_wire()
        if self.snapshot is not None:
            wire["snapshot"] = self.snapshot
        return wire

    @classmethod
    def parse(cls, wire: dict[str, Any]) -> Event:
        snapshot = wire.get("snapshot")
        if snapshot is not None and not isinstance(snapshot, dict):
            raise TypeError("snapshot is not an object")
        return cls(organisation_id=_uuid(wire["org"]), tunnel_id=_uuid(wire["tunnel"]), snapshot=snapshot)


ORIGIN_ERRORS_PER_EVENT = 50  # at most this many rows per event (the edge sends at most 20 per tunnel per flush)


@dataclass(frozen=True)
class OriginErrorsRecorded(TunnelEvent):
    """An edge process wrote these origin errors of the tunnel (edge/errors.py), each as tunnels.live's
    `origin_error_json`, newest last: the tunnel's open pages list them without a reload (tunnels/fanout.py)."""

    KIND: ClassVar[str] = "origin_errors"
    errors: tuple[dict[str, Any], ...] = ()

    def to_wire(self) -> dict[str, Any]:
        return {**super().to_wire(), "errors": list(self.errors)}

    @classmethod
    def parse(cls, wire: dict[str, Any]) -> Event:
        rows = wire.get("errors") or []
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise TypeError("errors is not a list of objects")
        fields = {"id": int, "occurred_at": str, "request_id": str, "hostname": str, "method": str, "path": str}
        fields.update(status=int, reason=str, unrecorded=int)
        errors = tuple(
            {name: cast(row[name]) if row.get(name) is not None else None for name, cast in fields.items()}
            for row in rows[-ORIGIN_ERRORS_PER_EVENT:]
        )
        return cls(organisation_id=_uuid(wire["org"]), tunnel_id=_uuid(wire["tunnel"]), errors=errors)


@dataclass(frozen=True)
class Disconnect(TunnelEvent):
    """Close the tunnel's connections, or one connector's (connector_id)."""

    KIND: ClassVar[str] = "disconnect"
    connector_id: uuid.UUID | None = None
    code: int = 0
    reason: str = ""

    def to_wire(self) -> dict[str, Any]:
        return {
            **super().to_wire(),
            "connector": str(self.connector_id) if self.connector_id else None,
            "code": self.code,
            "reason": self.reason,
        }

    @classmethod
    def parse(cls, wire: dict[str, Any]) -> Event:
        connector = wire.get("connector")
        return cls(
            organisation_id=_uuid(wire["org"]),
            tunnel_id=_uuid(wire["tunnel"]),
            connector_id=_uuid(connector) if connector else None,
            code=int(wire.get("code") or 0),
            reason=str(wire.get("reason") or ""),
        )


@dataclass(frozen=True)
class RoutesChanged(Event):
    """A DNS record changed: every edge reloads its hostname → tunnel table."""

    KIND: ClassVar[str] = "routes"
    organisation_id: uuid.UUID

    def to_wire(self) -> dict[str, Any]:
        return {"kind": self.KIND, "org": str(self.organisation_id), "tunnel": ""}

    @classmethod
    def parse(cls, wire: dict[str, Any]) -> Event:
        return cls(organisation_id=_uuid(wire["org"]))


@dataclass(frozen=True)
class HoldersChanged(Event):
    """Another instance started or stopped holding connections of these tunnels (hex ids), and the address of its
    peer link (dataplane/peers.py). Published by the hub after its connection rows are written."""

    KIND: ClassVar[str] = "holders"
    server: str
    url: str = ""
    gained: tuple[str, ...] = ()
    lost: tuple[str, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        return {
            "kind": self.KIND,
            "server": self.server,
            "url": self.url,
            "gained": list(self.gained),
            "lost": list(self.lost),
        }

    @classmethod
    def parse(cls, wire: dict[str, Any]) -> Event:
        return cls(
            server=str(wire.get("server") or ""),
            url=str(wire.get("url") or ""),
            gained=tuple(uuid.UUID(str(raw)).hex for raw in wire.get("gained") or ()),
            lost=tuple(uuid.UUID(str(raw)).hex for raw in wire.get("lost") or ()),
        )


def publish_on_commit(event: Event) -> None:
    from tunnels.runtime import publish

    transaction.on_commit(lambda: publish(event))


def config_changed(*, organisation_id: Any, tunnel_id: Any, version: int) -> None:
    publish_on_commit(ConfigChanged(_uuid(organisation_id), _uuid(tunnel_id), version=version))


def tunnel_changed(*, organisation_id: Any, tunnel_id: Any) -> None:
    publish_on_commit(TunnelChanged(_uuid(organisation_id), _uuid(tunnel_id)))


def status_changed(*, organisation_id: Any, tunnel_id: Any) -> None:
    publish_on_commit(StatusChanged(_uuid(organisation_id), _uuid(tunnel_id)))


def disconnect(*, organisation_id: Any, tunnel_id: Any, connector_id: Any = None, code: int, reason: str) -> None:
    connector = _uuid(connector_id) if connector_id else None
    publish_on_commit(Disconnect(_uuid(organisation_id), _uuid(tunnel_id), connector, code=code, reason=reason))


def routes_changed(*, organisation_id: Any) -> None:
    """A DNS record changed: every edge reloads its hostname → tunnel table."""
    publish_on_commit(RoutesChanged(_uuid(organisation_id)))
