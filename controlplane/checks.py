"""System checks run by `manage.py check` (and before every server start): a broken key fails at start, not at the
first tunnel secret it should decrypt."""

from __future__ import annotations

import binascii
from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, register


@register(Tags.security)
def check_data_encryption_keys(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """Every DATA_ENCRYPTION_KEY(S) entry must be a Fernet key (32 bytes, url-safe base64); the key is never echoed."""
    from cryptography.fernet import Fernet

    keys = list(getattr(settings, "DATA_ENCRYPTION_KEYS", []))
    if not keys:
        return [Error("DATA_ENCRYPTION_KEYS is empty: tunnel secrets cannot be encrypted.", id="controlplane.E001")]
    errors = []
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key.encode())
        except (ValueError, TypeError, binascii.Error):
            errors.append(
                Error(
                    f"Data encryption key #{position} of {len(keys)} is not a valid Fernet key.",
                    hint="Generate one with: python -c 'from cryptography.fernet import Fernet; "
                    "print(Fernet.generate_key().decode())'",
                    obj="DATA_ENCRYPTION_KEYS" if len(keys) > 1 else "DATA_ENCRYPTION_KEY",
                    id="controlplane.E002",
                )
            )
    return errors
