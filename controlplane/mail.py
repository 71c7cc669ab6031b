"""Mail delivery: the outbox backend of embedded mode and the SMTP backend, plus the one way services send mail
(`email_send`, which queues the `send_email` task defined here, so that mail and tasks import in one direction)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from celery import shared_task
from django.core.mail import EmailMultiAlternatives
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.backends.smtp import EmailBackend as DjangoSmtpBackend
from django.db import transaction
from django.template.loader import render_to_string

logger = logging.getLogger(__name__)

ORGANISATION_HEADER = "X-ZT-Organisation"


class OutboxEmailBackend(BaseEmailBackend):
    """Keeps each message as an OutboxMessage instead of sending it."""

    def send_messages(self, email_messages: Sequence[Any]) -> int:
        from controlplane.models import OutboxMessage

        count = 0
        for message in email_messages:
            headers = dict(message.extra_headers)
            organisation_id = headers.pop(ORGANISATION_HEADER, None)
            html = ""
            for content, mimetype in getattr(message, "alternatives", []):
                if mimetype == "text/html":
                    html = content
            OutboxMessage.objects.create(
                organisation_id=organisation_id or None,
                from_email=message.from_email,
                to=list(message.to) + list(message.cc) + list(message.bcc),
                subject=message.subject,
                body=message.body,
                html_body=html,
            )
            logger.info(
                "mail to %s kept in the outbox (read it in the UI or with `manage.py outbox`): %s",
                ", ".join(message.to),
                message.subject,
            )
            count += 1
        return count


class SmtpEmailBackend(DjangoSmtpBackend):
    """Django's SMTP backend, without our internal routing header."""

    def send_messages(self, email_messages: Sequence[Any]) -> int:
        for message in email_messages:
            message.extra_headers.pop(ORGANISATION_HEADER, None)
        return super().send_messages(email_messages) or 0


def build_message(
    *, to: list[str], subject: str, template: str, context: dict[str, Any], organisation_id: str | None
) -> EmailMultiAlternatives:
    body = render_to_string(f"{template}.txt", context)
    message = EmailMultiAlternatives(subject=subject.strip(), body=body, to=to)
    if organisation_id:
        message.extra_headers[ORGANISATION_HEADER] = organisation_id
    return message


def email_send(
    *, to: list[str], subject: str, template: str, context: dict[str, Any], organisation_id: str | None = None
) -> None:
    """Queue a templated email (text template `<template>.txt`) once the current transaction commits."""
    payload = {
        "to": to,
        "subject": subject,
        "template": template,
        "context": context,
        "organisation_id": organisation_id,
    }
    transaction.on_commit(lambda: send_email.delay(**payload))


# Named as when it lived in controlplane/tasks.py, so messages already queued under that name still run.
@shared_task(
    name="controlplane.tasks.send_email",
    bind=True,
    autoretry_for=(OSError,),
    retry_backoff=True,
    retry_kwargs={"max_retries": 8},
    embedded_inline_setting="EMAIL_OUTBOX_MODE",  # the outbox is a local row: no outbound call to take off-thread
)
def send_email(
    self: Any, *, to: list[str], subject: str, template: str, context: dict[str, Any], organisation_id: str | None
) -> None:
    build_message(to=to, subject=subject, template=template, context=context, organisation_id=organisation_id).send()
