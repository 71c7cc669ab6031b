"""The connector wire protocol's control messages (connector/protocol.py is the protocol; import it from there): one
frozen dataclass per control kind, a JSON object on stream 0, checked for types and bounds on receipt.
Standard library only, Python >= 3.9, imported by the server too."""

from __future__ import annotations

import dataclasses
import math
import uuid
from typing import Any, ClassVar

from .protocol_base import DEFAULT_HEARTBEAT_INTERVAL, PROTOCOL_VERSION, Kind, ProtocolError

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "MAX_CONFIG_VERSION",
    "MAX_ERROR_TEXT",
    "MAX_LIST_ITEMS",
    "MAX_LIST_ITEM_LENGTH",
    "MAX_ORIGIN_CA_CHARS",
    "MAX_REASON_TEXT",
    "MAX_TEXT",
    "Config",
    "ConfigAck",
    "ControlMessage",
    "Drain",
    "Error",
    "Hello",
    "Ping",
    "Pong",
    "Welcome",
]


def _check_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_float(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# Bounds of what a peer may send in a control message (docs/protocol.md, "Bounds"). Every int fits a signed 64-bit
# column, every string and list is capped, and each kind tightens these where its values are stored or echoed.
# A message outside them is a protocol violation (4008): the receiver closes the connection with the reason.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MAX_CONFIG_VERSION = 2**31 - 1  # versions are stored in 32-bit integer columns (PostgreSQL `integer`)
MAX_TEXT = 4096  # characters of any control string without a tighter bound
MAX_LIST_ITEMS = 64
MAX_LIST_ITEM_LENGTH = 64  # characters of one entry of a list[str] (feature names)
MAX_ERROR_TEXT = 1000  # CONFIG_ACK.error, ERROR.message (the connector's config_error column)
MAX_REASON_TEXT = 300  # DRAIN.reason (close reasons are stored in 300 characters)


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ProtocolError(f"{name} is out of range ({low}..{high})")


# Field annotations are strings (postponed evaluation keeps Python 3.9 happy); these are the ones we use.
_TYPE_CHECKS = {
    "str": lambda v: isinstance(v, str),
    "int": _check_int,
    "float": _check_float,
    "bool": lambda v: isinstance(v, bool),
    "dict": lambda v: isinstance(v, dict),
    "list[str]": lambda v: isinstance(v, list) and all(isinstance(item, str) for item in v),
}


@dataclasses.dataclass(frozen=True)
class ControlMessage:
    KIND: ClassVar[Kind]

    def validate(self) -> None:
        """Semantic checks beyond types; raise ProtocolError."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> ControlMessage:
        name = cls.KIND.name
        if not isinstance(data, dict):
            raise ProtocolError(f"{name} payload must be a JSON object")
        values = {}
        for field in dataclasses.fields(cls):
            if field.name not in data:
                if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                    raise ProtocolError(f"{name} is missing {field.name!r}")
                continue
            value = data[field.name]
            if not _TYPE_CHECKS[field.type](value):  # type: ignore[index]
                raise ProtocolError(f"{name}.{field.name} must be {field.type}")
            _check_bounds(f"{name}.{field.name}", field.type, value)
            values[field.name] = float(value) if field.type == "float" else value
        message = cls(**values)
        message.validate()
        return message


MAX_ORIGIN_CA_CHARS = 256 * 1024  # a few dozen roots at most


def _check_length(name: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise ProtocolError(f"{name} is longer than {limit} characters")


def _check_bounds(name: str, type_: str, value: Any) -> None:
    """The bounds every field of its type keeps, whatever the kind (tighter ones are in each `validate`)."""
    if type_ == "int":
        _check_range(name, value, INT64_MIN, INT64_MAX)
    elif type_ == "str":
        _check_length(name, value, MAX_TEXT)
    elif type_ == "list[str]":
        if len(value) > MAX_LIST_ITEMS:
            raise ProtocolError(f"{name} has more than {MAX_LIST_ITEMS} entries")
        for item in value:
            _check_length(f"{name}[]", item, MAX_LIST_ITEM_LENGTH)


@dataclasses.dataclass(frozen=True)
class Hello(ControlMessage):
    """First frame of every connection: who is connecting. Each connection of one run registers separately."""

    KIND: ClassVar[Kind] = Kind.HELLO
    connector_id: str  # a fresh UUID per process start, shared by its connections
    version: str
    protocol: int = PROTOCOL_VERSION
    conn_index: int = 0  # 0 .. ha_connections-1
    ha_connections: int = 1  # how many connections this connector holds when healthy
    arch: str = ""  # GOOS_GOARCH style, e.g. "linux_amd64"
    platform: str = ""
    hostname: str = ""
    local_ip: str = ""  # the connector's side of this connection; the server sees the public one itself
    features: list[str] = dataclasses.field(default_factory=list)
    config_version: int = -1  # the version already applied (-1: none), so the server can skip a resend

    def validate(self) -> None:
        try:
            uuid.UUID(self.connector_id)
        except ValueError:
            raise ProtocolError("HELLO.connector_id must be a UUID")
        if self.protocol != PROTOCOL_VERSION:
            raise ProtocolError(f"unsupported protocol version {self.protocol}")
        if not 1 <= self.ha_connections <= 64 or not 0 <= self.conn_index < self.ha_connections:
            raise ProtocolError("HELLO.conn_index/ha_connections out of range")
        for name in ("version", "arch", "platform", "hostname", "local_ip"):
            _check_length(f"HELLO.{name}", getattr(self, name), 255)
        if len(self.features) > 64:
            raise ProtocolError("HELLO.features has too many entries")
        _check_range("HELLO.config_version", self.config_version, -1, MAX_CONFIG_VERSION)


@dataclasses.dataclass(frozen=True)
class Welcome(ControlMessage):
    """The server registered the connection. It is the first frame the server sends."""

    KIND: ClassVar[Kind] = Kind.WELCOME
    connection_id: str
    server_id: str = ""
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    location: str = ""
    features: list[str] = dataclasses.field(default_factory=list)  # what the server accepts, e.g. "batch"
    # Where `originRequest.access` finds a team's keys: `https://<team>.<auth_domain>`, fetched through the address
    # the connector dials (connector/access.py); `team_url` is the issuer with "{team}" for the team name.
    auth_domain: str = ""
    team_url: str = ""

    def validate(self) -> None:
        if not 0.01 <= self.heartbeat_interval <= 3600:
            raise ProtocolError("WELCOME.heartbeat_interval out of range")
        if len(self.features) > 64:
            raise ProtocolError("WELCOME.features has too many entries")
        if len(self.auth_domain) > 253 or len(self.team_url) > 512:
            raise ProtocolError("WELCOME.auth_domain or team_url too long")


@dataclasses.dataclass(frozen=True)
class Config(ControlMessage):
    """A configuration version ({"ingress": [...], "originRequest": {...}}). Versions <= the applied one are
    ignored; an invalid one leaves the old configuration running."""

    KIND: ClassVar[Kind] = Kind.CONFIG
    version: int
    config: dict
    # The control plane's Origin CA roots (PEM bundle) origins are verified against, besides the system store and
    # each rule's caPool. Absent from older servers ("": the connector keeps what it has); ignored by older
    # connectors (unknown fields are).
    origin_ca: str = ""

    def validate(self) -> None:
        _check_range("CONFIG.version", self.version, 0, MAX_CONFIG_VERSION)
        _check_length("CONFIG.origin_ca", self.origin_ca, MAX_ORIGIN_CA_CHARS)


@dataclasses.dataclass(frozen=True)
class ConfigAck(ControlMessage):
    """Answer to every CONFIG. `applied` is false both for an invalid config (`error` says why) and for a stale
    one (version <= running_version, `error` empty). `running_version` is what the connector runs now."""

    KIND: ClassVar[Kind] = Kind.CONFIG_ACK
    version: int
    applied: bool
    error: str = ""
    running_version: int = -1

    def validate(self) -> None:
        _check_range("CONFIG_ACK.version", self.version, 0, MAX_CONFIG_VERSION)
        _check_range("CONFIG_ACK.running_version", self.running_version, -1, MAX_CONFIG_VERSION)
        _check_length("CONFIG_ACK.error", self.error, MAX_ERROR_TEXT)


@dataclasses.dataclass(frozen=True)
class Ping(ControlMessage):
    KIND: ClassVar[Kind] = Kind.PING
    nonce: int = 0
    ts: float = 0.0  # the sender's clock; echoed so that the sender measures the round trip


@dataclasses.dataclass(frozen=True)
class Pong(ControlMessage):
    KIND: ClassVar[Kind] = Kind.PONG
    nonce: int = 0
    ts: float = 0.0


@dataclasses.dataclass(frozen=True)
class Drain(ControlMessage):
    KIND: ClassVar[Kind] = Kind.DRAIN
    reason: str = ""

    def validate(self) -> None:
        _check_length("DRAIN.reason", self.reason, MAX_REASON_TEXT)


@dataclasses.dataclass(frozen=True)
class Error(ControlMessage):
    KIND: ClassVar[Kind] = Kind.ERROR
    code: str
    message: str = ""

    def validate(self) -> None:
        _check_length("ERROR.code", self.code, 64)
        _check_length("ERROR.message", self.message, MAX_ERROR_TEXT)
