"""The Origin CA (certificates app)."""

from __future__ import annotations

from .env import env_int, env_str

# Shown in the roots' subject (O=…, and in their common names).
ORIGIN_CA_NAME = env_str("ORIGIN_CA_NAME", "Zero Trust Control Plane") or "Zero Trust Control Plane"
# How long POST /certificates waits for its issuing job before answering with the certificate still pending.
CERTIFICATE_ISSUE_WAIT_SECONDS = env_int("CERTIFICATE_ISSUE_WAIT_SECONDS", 10)
# How often Celery beat looks for certificates reaching 30, 7 or 1 days before expiry.
CERTIFICATE_REMINDER_SECONDS = env_int("CERTIFICATE_REMINDER_SECONDS", 3600)
