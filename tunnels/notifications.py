"""Tunnel alerts (Cloudflare's tunnel_health_event and tunnel_update_event): who gets them, what they say,
and the signed webhook format. Delivery runs in Celery tasks (tunnels/tasks.py)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

from django.conf import settings
from django.utils import timezone

from tunnels.models import NotificationDestination, Tunnel
from tunnels.webhooks import webhook_post

SIGNATURE_HEADER = "X-ZT-Signature"
TIMESTAMP_HEADER = "X-ZT-Timestamp"


def destinations_for(tunnel: Tunnel, alert_type: str) -> list[NotificationDestination]:
    return [
        d
        for d in NotificationDestination.objects.for_org(tunnel.organisation).filter(enabled=True)
        if alert_type in (d.alert_types or [])
    ]


def alert_payload(*, tunnel: Tunnel, alert_type: str, status: str, text: str) -> dict[str, Any]:
    return {
        "alert_type": alert_type,
        "account_id": tunnel.organisation_id.hex,
        "ts": int(time.time()),
        "text": text,
        "data": {"tunnel_id": str(tunnel.id), "tunnel_name": tunnel.name, "tunnel_status": status},
        "sent_at": timezone.now().isoformat(),
    }


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """HMAC-SHA256 over "<timestamp>.<body>", hex; receivers recompute it and reject stale timestamps."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def post_webhook(url: str, secret: bytes, payload: dict[str, Any]) -> int:
    """Deliver one signed alert (tunnels/webhooks.py checks and pins the address; redirects are failures)."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "zt-controlplane-notifications",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(secret, timestamp, body),
    }
    return webhook_post(url, body=body, headers=headers, timeout=settings.WEBHOOK_TIMEOUT_SECONDS)
