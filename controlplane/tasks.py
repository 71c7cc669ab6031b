"""Celery tasks of the core app. Each wraps one service or delivery step and takes plain ids."""

from __future__ import annotations

import datetime

from celery import shared_task
from django.db.models import Q
from django.utils import timezone

from controlplane.actors import Actor
from controlplane.choices import ZoneStatus
from controlplane.mail import send_email  # noqa: F401  (defined with mail; registered with the core's tasks)
from controlplane.models import Zone
from controlplane.services.zones import zone_check_verification


@shared_task
def check_pending_zones(*, not_checked_for_seconds: int = 600, limit: int = 500) -> dict[str, int]:
    """Look up the TXT record of pending zones not checked recently (Celery beat runs this periodically), so a
    zone activates soon after its owner publishes the record even if nobody presses "Check now"."""
    cutoff = timezone.now() - datetime.timedelta(seconds=not_checked_for_seconds)
    due = (
        Zone.objects.unscoped("periodic verification of every organisation's pending zones")
        .select_related("organisation")
        .filter(status=ZoneStatus.PENDING)
        .filter(Q(last_checked_at__isnull=True) | Q(last_checked_at__lt=cutoff))
        .order_by("last_checked_at", "created_at")[:limit]
    )
    actor = Actor.system("zone verification")
    checked = verified = 0
    for zone in list(due):
        checked += 1
        if zone_check_verification(zone=zone, actor=actor).is_active:
            verified += 1
    return {"checked": checked, "verified": verified}
