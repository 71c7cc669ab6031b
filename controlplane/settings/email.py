"""Outgoing mail. Without EMAIL_URL every message is kept in the outbox, readable in the UI and by
`manage.py outbox`, so a PIN or an invitation can be read without a mail server."""

from __future__ import annotations

from urllib.parse import parse_qs, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

from .env import env_str

DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Zero Trust control plane <noreply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

_url = env_str("EMAIL_URL")
EMAIL_OUTBOX_MODE = _url is None

if _url is None:
    EMAIL_BACKEND = "controlplane.mail.OutboxEmailBackend"
else:
    _parts = urlsplit(_url)
    if _parts.scheme not in {"smtp", "smtps", "submission"}:
        raise ImproperlyConfigured("EMAIL_URL must look like smtp://user:password@host:port[?tls=1]")
    _query = {key: values[-1] for key, values in parse_qs(_parts.query).items()}
    EMAIL_BACKEND = "controlplane.mail.SmtpEmailBackend"
    EMAIL_HOST = _parts.hostname or "localhost"
    EMAIL_PORT = _parts.port or {"smtp": 25, "smtps": 465, "submission": 587}[_parts.scheme]
    EMAIL_HOST_USER = unquote(_parts.username or "")
    EMAIL_HOST_PASSWORD = unquote(_parts.password or "")
    EMAIL_USE_SSL = _parts.scheme == "smtps"
    EMAIL_USE_TLS = _parts.scheme == "submission" or _query.get("tls") in {"1", "true"}
    EMAIL_TIMEOUT = 15
