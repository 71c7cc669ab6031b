"""Tunnel secrets at rest and the cloudflared token format."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import secrets
import uuid
from dataclasses import dataclass
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

SECRET_BYTES = 32


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in keys])


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.DATA_ENCRYPTION_KEYS))


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def encrypt_secret(secret: bytes) -> str:
    return fernet().encrypt(secret).decode()


def decrypt_secret(ciphertext: str) -> bytes:
    try:
        return fernet().decrypt(ciphertext.encode())
    except InvalidToken:
        raise RuntimeError("A tunnel secret cannot be decrypted: DATA_ENCRYPTION_KEYS lost the key it used") from None


def secrets_equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


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
