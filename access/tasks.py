"""Celery tasks of Access: the PIN email."""

from __future__ import annotations

import logging
import smtplib
from typing import Any

from celery import shared_task
from django.conf import settings
from django.template.loader import render_to_string
from django.utils import timezone

from access.models import LoginCode
from controlplane.mail import build_message

logger = logging.getLogger(__name__)


# ACCESS_EMAIL_RETRIES decides the retries, in retry(); mail kept in the outbox is a local row: written inline.
@shared_task(bind=True, max_retries=5, acks_late=True, embedded_inline_setting="EMAIL_OUTBOX_MODE")
def send_login_code(self: Any, *, code_id: str, organisation_id: str, pin: str) -> str:
    """Mail the PIN (text and HTML). Retried with backoff when the mail server fails; after the last try the failure
    is written where the admin sees it (the Access log) and on the code. A void or already sent code is skipped."""
    code = (
        LoginCode.objects.unscoped("a task takes the id it was given")
        .select_related("organisation", "application")
        .filter(pk=code_id, organisation_id=organisation_id)
        .first()
    )
    if code is None or code.used_at is not None or code.expires_at <= timezone.now():
        return "void"
    if code.sent_at is not None:
        return "already sent"
    organisation = code.organisation
    context = {
        "pin": pin,
        "team": organisation.display_name or organisation.team_name,
        "application": code.application.name,
        "minutes": 10,
        "email": code.email,
    }
    message = build_message(
        to=[code.email],
        subject=f"{pin} is your login code for {code.application.name}",
        template="access/email/pin",
        context=context,
        organisation_id=str(organisation.pk),
    )
    message.attach_alternative(render_to_string("access/email/pin.html", context), "text/html")
    try:
        message.send()
    except (OSError, smtplib.SMTPException) as exc:
        retries = settings.ACCESS_EMAIL_RETRIES
        if self.request.retries < retries:
            delay = min(60.0, settings.ACCESS_EMAIL_RETRY_MS / 1000 * 2**self.request.retries)
            raise self.retry(exc=exc, countdown=delay, max_retries=retries) from None
        reason = f"The login code email to {code.email} could not be sent: {exc}"[:300]
        LoginCode.objects.for_org(organisation).filter(pk=code.pk).update(send_error=reason)
        from access.login import log_request

        log_request(
            organisation=organisation,
            app=code.application,
            email=code.email,
            ip="",
            allowed=False,
            reason=reason,
            action="email_failed",
        )
        logger.error("%s", reason)
        return "failed"
    LoginCode.objects.for_org(organisation).filter(pk=code.pk, sent_at__isnull=True).update(sent_at=timezone.now())
    return "sent"


@shared_task
def housekeeping() -> dict[str, int]:
    """Hourly (Celery beat): rotate due signing keys; delete login and handoff codes spent or expired a day ago."""
    import datetime

    from access.models import HandoffCode
    from access.services.settings import rotate_due_keys

    cutoff = timezone.now() - datetime.timedelta(days=1)
    pins, _ = (
        LoginCode.objects.unscoped("pruning every organisation's spent codes").filter(expires_at__lt=cutoff).delete()
    )
    handoffs, _ = (
        HandoffCode.objects.unscoped("pruning every organisation's spent codes").filter(expires_at__lt=cutoff).delete()
    )
    return {"rotated": rotate_due_keys(), "pins_deleted": pins, "handoffs_deleted": handoffs}
