"""Tunnel secrets and the cloudflared token format. Encryption at rest lives in the core (controlplane/crypto.py);
`fernet`, `encrypt_secret`, `decrypt_secret` and `secrets_equal` stay importable from here for existing callers
(the certificates app imports `fernet` and `decrypt_secret` from this module): new code imports controlplane.crypto.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import uuid
from dataclasses import dataclass

from controlplane.crypto import decrypt_bytes, encrypt_bytes, fernet, secrets_equal

__all__ = [
    "SECRET_BYTES",
    "InvalidTunnelToken",
    "TunnelToken",
    "build_token",
    "decrypt_secret",
    "encrypt_secret",
    "fernet",
    "new_secret",
    "parse_token",
    "parse_user_secret",
    "secrets_equal",
]

SECRET_BYTES = 32


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def encrypt_secret(secret: bytes) -> str:
    return encrypt_bytes(secret)


def decrypt_secret(ciphertext: str) -> bytes:
    return decrypt_bytes(ciphertext, what="A tunnel secret")


@dataclass(frozen=True)
class TunnelToken:
    account_tag: str
    tunnel_id: uuid.UUID
    secret: bytes
    endpoint: str = ""


class InvalidTunnelToken(ValueError):
    def __init__(self) -> None:
        super().__init__("Provided Tunnel token is not valid.")


def build_token(*, account_tag: str, tunnel_id: uuid.UUID, secret: bytes, endpoint: str = "") -> str:
    """Standard padded base64 of {"a","t","s"[,"e"]}, where "s" is itself base64 (cloudflared's TunnelToken)."""
    payload: dict[str, str] = {"a": account_tag, "t": str(tunnel_id), "s": base64.b64encode(secret).decode()}
    if endpoint:
        payload["e"] = endpoint
    return base64.b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()


def parse_token(raw: str) -> TunnelToken:
    try:
        data = json.loads(base64.b64decode(raw.strip(), validate=True))
        secret = base64.b64decode(data["s"], validate=True)
        token = TunnelToken(
            account_tag=str(data["a"]), tunnel_id=uuid.UUID(str(data["t"])), secret=secret, endpoint=data.get("e", "")
        )
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError, AttributeError):
        raise InvalidTunnelToken() from None
    if not token.secret:
        raise InvalidTunnelToken()
    return token


def parse_user_secret(value: str) -> bytes:
    """A caller-supplied `tunnel_secret`: base64 of at least 32 bytes."""
    try:
        secret = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise ValueError("tunnel_secret must be base64") from None
    if len(secret) < SECRET_BYTES:
        raise ValueError(f"tunnel_secret must decode to at least {SECRET_BYTES} bytes")
    return secret
