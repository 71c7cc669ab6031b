"""Secrets at rest: Fernet with the installation's DATA_ENCRYPTION_KEYS (the first encrypts, every one decrypts,
so a key can be rotated in). In the core because every product app that stores a secret needs it (tunnel
secrets, Origin CA private keys, Access signing keys)."""

from __future__ import annotations

import hmac
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class UndecryptableSecret(RuntimeError):
    """Ciphertext that no key in DATA_ENCRYPTION_KEYS opens: the key it used was removed."""


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in keys])


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.DATA_ENCRYPTION_KEYS))


def encrypt_bytes(plain: bytes) -> str:
    return fernet().encrypt(plain).decode()


def decrypt_bytes(ciphertext: str, *, what: str = "A secret") -> bytes:
    try:
        return fernet().decrypt(ciphertext.encode())
    except InvalidToken:
        raise UndecryptableSecret(f"{what} cannot be decrypted: DATA_ENCRYPTION_KEYS lost the key it used") from None


def secrets_equal(a: bytes, b: bytes) -> bool:
    """Constant-time comparison."""
    return hmac.compare_digest(a, b)
