"""Celery jobs of the Origin CA: each wraps a service (certificates/services.py)."""

from __future__ import annotations

from celery import shared_task

from certificates import services


# In embedded mode (no broker) issuing runs inline after commit: it is local CPU work (no outbound call), and the
# POST that queued it waits for its result anyway (CERTIFICATE_ISSUE_WAIT_SECONDS).
@shared_task(
    autoretry_for=(ConnectionError,),
    retry_backoff=True,
    max_retries=5,
    embedded_inline_setting="CELERY_TASK_ALWAYS_EAGER",
)
def issue_certificate(*, organisation_id: str, certificate_id: str) -> str:
    """Idempotent: a retry or a duplicate of a job that already issued the certificate changes nothing."""
    return services.certificate_issue(organisation_id=organisation_id, certificate_id=certificate_id)


@shared_task
def send_expiry_reminders() -> int:
    """Beat's periodic job: expiry reminders, and pending certificates whose job was lost are queued again."""
    services.certificates_requeue_stale()
    return services.expiry_reminders_send()
