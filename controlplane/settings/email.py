"""Outgoing mail. Without EMAIL_URL every message is kept in the outbox, readable in the UI and by
`manage.py outbox`, so a PIN or an invitation can be read without a mail server."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

from .env import env_str

_DEFAULT_PORTS = {"smtp": 25, "smtps": 465, "submission": 587}
_TRUE = {"1", "true", "yes", "on"}


def parse_email_url(url: str | None) -> dict[str, Any]:
    """Django EMAIL_* settings from `smtp://user:password@host:port[?tls=1&timeout=15]`.

    `smtps://` is implicit TLS (port 465), `submission://` STARTTLS (port 587), `smtp://` plain unless `tls=1`
    (or `ssl=1`). User and password are percent-decoded. No URL: keep mail in the outbox."""
    if url is None or not url.strip():
        return {"EMAIL_BACKEND": "controlplane.mail.OutboxEmailBackend", "EMAIL_OUTBOX_MODE": True}
    parts = urlsplit(url.strip())
    if parts.scheme not in _DEFAULT_PORTS:
        raise ImproperlyConfigured("EMAIL_URL must look like smtp://user:password@host:port[?tls=1]")
    query = {key.lower(): values[-1].strip().lower() for key, values in parse_qs(parts.query).items()}
    try:
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
        timeout = int(query.get("timeout", "15"))
    except ValueError as exc:
        raise ImproperlyConfigured(f"EMAIL_URL has an invalid port or timeout: {exc}") from None
    use_ssl = parts.scheme == "smtps" or query.get("ssl") in _TRUE
    use_tls = not use_ssl and (parts.scheme == "submission" or query.get("tls") in _TRUE)
    return {
        "EMAIL_BACKEND": "controlplane.mail.SmtpEmailBackend",
        "EMAIL_OUTBOX_MODE": False,
        "EMAIL_HOST": parts.hostname or "localhost",
        "EMAIL_PORT": port,
        "EMAIL_HOST_USER": unquote(parts.username or ""),
        "EMAIL_HOST_PASSWORD": unquote(parts.password or ""),
        "EMAIL_USE_SSL": use_ssl,
        "EMAIL_USE_TLS": use_tls,
        "EMAIL_TIMEOUT": timeout,
    }


DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Zero Trust control plane <noreply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

_email = parse_email_url(env_str("EMAIL_URL"))
EMAIL_BACKEND: str = _email["EMAIL_BACKEND"]
EMAIL_OUTBOX_MODE: bool = _email["EMAIL_OUTBOX_MODE"]
if not EMAIL_OUTBOX_MODE:
    EMAIL_HOST: str = _email["EMAIL_HOST"]
    EMAIL_PORT: int = _email["EMAIL_PORT"]
    EMAIL_HOST_USER: str = _email["EMAIL_HOST_USER"]
    EMAIL_HOST_PASSWORD: str = _email["EMAIL_HOST_PASSWORD"]
    EMAIL_USE_SSL: bool = _email["EMAIL_USE_SSL"]
    EMAIL_USE_TLS: bool = _email["EMAIL_USE_TLS"]
    EMAIL_TIMEOUT: int = _email["EMAIL_TIMEOUT"]
