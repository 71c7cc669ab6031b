"""Celery tasks of the tunnels app: alert delivery with flap damping."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from controlplane.mail import build_message
from controlplane.prepared import PreparedQuery
from tunnels.models import NotificationDestination, Tunnel, TunnelAlertState
from tunnels.notifications import alert_payload, destinations_for, post_webhook
from tunnels.secrets import decrypt_secret
from tunnels.webhooks import WebhookFailed, WebhookRefused

logger = logging.getLogger(__name__)


def _tunnel(organisation_id: str, tunnel_id: str) -> Tunnel | None:
    return Tunnel.objects.filter(organisation_id=organisation_id, pk=tunnel_id).select_related("organisation").first()


# A lifecycle notification's reads, compiled once per process (controlplane/prepared.py): an organisation's enabled
# destinations, then (only when one takes tunnel_update_event) the tunnel. Every tunnel created or deleted queues one
# (issue 13: the two ORM queries were a third of a create + delete's instructions); both are scoped by the
# organisation's own column.
_ENABLED_DESTINATIONS = PreparedQuery(
    lambda organisation_id: NotificationDestination.objects.filter(organisation_id=organisation_id, enabled=True),
    organisation_id=uuid.UUID,
)
_TUNNEL = PreparedQuery(
    lambda organisation_id, pk: Tunnel.objects.filter(organisation_id=organisation_id, pk=pk).order_by()[:1],
    organisation_id=uuid.UUID,
    pk=uuid.UUID,
)


def _deliver(
    tunnel: Tunnel,
    alert_type: str,
    status: str,
    text: str,
    destinations: list[NotificationDestination] | None = None,
) -> None:
    payload = alert_payload(tunnel=tunnel, alert_type=alert_type, status=status, text=text)
    organisation_id = str(tunnel.organisation_id)
    if destinations is None:
        destinations = destinations_for(tunnel, alert_type)
    for destination in destinations:
        transaction.on_commit(
            lambda d=str(destination.pk): deliver_alert.delay(
                organisation_id=organisation_id, destination_id=d, payload=payload
            )
        )


@shared_task
def notify_tunnel_event(*, organisation_id: str, tunnel_id: str, event: str) -> None:
    """Tell the organisation's destinations that take tunnel_update_event. Most organisations have none: their
    destinations are read first, and the tunnel only when someone is to be told (the same deliveries either way)."""
    alert_type = NotificationDestination.ALERT_UPDATE
    destinations = [
        d for d in _ENABLED_DESTINATIONS.rows(organisation_id=organisation_id) if alert_type in (d.alert_types or [])
    ]
    if not destinations:
        return
    tunnel = _TUNNEL.first(organisation_id=organisation_id, pk=tunnel_id)
    if tunnel is None:
        return
    _deliver(
        tunnel,
        alert_type,
        "deleted" if event == "deleted" else "inactive",
        f"Tunnel {tunnel.name} was {event}.",
        destinations,
    )


@shared_task
def check_tunnel_health(*, organisation_id: str, tunnel_id: str) -> str | None:
    """Announce the tunnel's health if it differs from the last announced one. Scheduled a damping delay after
    each change, so a flap that settles back within the delay announces nothing. Idempotent: the conditional
    update lets only one worker announce a given change."""
    from tunnels.selectors import tunnel_health

    tunnel = _tunnel(organisation_id, tunnel_id)
    if tunnel is None or tunnel.deleted_at is not None:
        return None
    health = tunnel_health(tunnel=tunnel)
    with transaction.atomic():
        state, _ = TunnelAlertState.objects.for_org(tunnel.organisation).get_or_create(
            organisation=tunnel.organisation, tunnel=tunnel
        )
        if state.notified_status == health.status:
            return None
        updated = (
            TunnelAlertState.objects.for_org(tunnel.organisation)
            .filter(pk=state.pk, notified_status=state.notified_status)
            .update(notified_status=health.status, notified_at=timezone.now())
        )
        if not updated:
            return None
        _deliver(
            tunnel,
            NotificationDestination.ALERT_HEALTH,
            health.status,
            f"Tunnel {tunnel.name} is {health.status} (was {state.notified_status}). {health.explanation}",
        )
    return health.status


@shared_task(bind=True, autoretry_for=(OSError,), retry_backoff=True, retry_kwargs={"max_retries": 6})
def deliver_alert(self: Any, *, organisation_id: str, destination_id: str, payload: dict[str, Any]) -> None:
    destination = NotificationDestination.objects.filter(organisation_id=organisation_id, pk=destination_id).first()
    if destination is None or not destination.enabled:
        return
    if destination.kind == NotificationDestination.KIND_WEBHOOK:
        secret = decrypt_secret(destination.secret_ciphertext) if destination.secret_ciphertext else b""
        try:
            post_webhook(destination.url, secret, payload)
        except (WebhookRefused, WebhookFailed) as exc:  # permanent: retrying would get the same answer
            logger.warning("webhook %s of organisation %s not delivered: %s", destination_id, organisation_id, exc)
        return
    data = payload["data"]
    build_message(
        to=list(destination.emails),
        subject=f"[{data['tunnel_status']}] Tunnel {data['tunnel_name']}",
        template="tunnels/email/alert",
        context={"text": payload["text"], **data},
        organisation_id=organisation_id,
    ).send()
