"""Tunnel tokens, in cloudflared's format, and the control plane address they may carry.

A token is standard base64 (with padding) of the JSON `{"a": account tag, "t": tunnel UUID, "s": base64 of the
secret, "e": optional control plane URL}`; the secret is therefore base64 inside base64.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import ipaddress
import json
import uuid
from urllib.parse import urlsplit, urlunsplit

from .protocol import WEBSOCKET_PATH

INVALID_TOKEN_MESSAGE = "Provided Tunnel token is not valid."


class InvalidToken(ValueError):
    def __init__(self, detail: str = "") -> None:
        super().__init__(INVALID_TOKEN_MESSAGE)
        self.detail = detail


@dataclasses.dataclass(frozen=True)
class TunnelToken:
    account_tag: str
    tunnel_id: str
    secret: bytes = dataclasses.field(repr=False)
    endpoint: str = ""
    raw: str = dataclasses.field(default="", repr=False)

    @property
    def authorization(self) -> str:
        """The header value the connector authenticates with (the token never goes in a URL)."""
        return f"Bearer {self.raw}"


def encode_token(account_tag: str, tunnel_id: str, secret: bytes, endpoint: str = "") -> str:
    data = {"a": account_tag, "t": str(tunnel_id), "s": base64.b64encode(secret).decode("ascii")}
    if endpoint:
        data["e"] = endpoint
    return base64.b64encode(json.dumps(data, separators=(",", ":")).encode("utf-8")).decode("ascii")


def _b64decode(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise InvalidToken(f"{what} is not standard base64")


def parse_token(token: str) -> TunnelToken:
    """Decode and check a token; any defect raises InvalidToken ("Provided Tunnel token is not valid.")."""
    if not isinstance(token, str):
        raise InvalidToken("the token is not a string")
    raw = token.strip()
    if not raw:
        raise InvalidToken("the token is empty")
    decoded = _b64decode(raw, "the token")
    try:
        data = json.loads(decoded.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise InvalidToken("the token does not hold a JSON object")
    if not isinstance(data, dict):
        raise InvalidToken("the token does not hold a JSON object")
    account_tag, tunnel_id, secret, endpoint = data.get("a"), data.get("t"), data.get("s"), data.get("e", "")
    if not isinstance(account_tag, str) or not account_tag:
        raise InvalidToken('the token has no account tag ("a")')
    if not isinstance(tunnel_id, str):
        raise InvalidToken('the token has no tunnel id ("t")')
    try:
        tunnel_id = str(uuid.UUID(tunnel_id))
    except ValueError:
        raise InvalidToken('the tunnel id ("t") is not a UUID')
    if not isinstance(secret, str) or not secret:
        raise InvalidToken('the token has no secret ("s")')
    secret_bytes = _b64decode(secret, 'the secret ("s")')
    if not secret_bytes:
        raise InvalidToken('the secret ("s") is empty')
    if endpoint is None:
        endpoint = ""
    if not isinstance(endpoint, str):
        raise InvalidToken('the endpoint ("e") is not a string')
    return TunnelToken(account_tag, tunnel_id, secret_bytes, endpoint, raw)


def read_token_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidToken(f"cannot read token file {path}: {exc}")


def resolve_edge_url(edge: str | None, token: TunnelToken) -> str:
    """The websocket URL to dial: `--edge` wins over the token's "e". http(s) maps to ws(s), a bare host means
    wss://, and the connector path is appended unless the URL already ends with it."""
    value = (edge or token.endpoint or "").strip()
    if not value:
        raise ValueError('no control plane address: the token carries none ("e"); pass --edge <url>')
    if "://" not in value:
        value = f"wss://{value}"
    parts = urlsplit(value)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme.lower())
    if scheme is None or not parts.hostname:
        raise ValueError(f"{value!r} is not a valid control plane address (use https://host[:port])")
    path = parts.path.rstrip("/")
    if not path.endswith(WEBSOCKET_PATH):
        path += WEBSOCKET_PATH
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
