"""Celery tasks of the core app. Each wraps one service or delivery step and takes plain ids."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from controlplane.mail import build_message


@shared_task(bind=True, autoretry_for=(OSError,), retry_backoff=True, retry_kwargs={"max_retries": 8})
def send_email(
    self: Any, *, to: list[str], subject: str, template: str, context: dict[str, Any], organisation_id: str | None
) -> None:
    build_message(to=to, subject=subject, template=template, context=context, organisation_id=organisation_id).send()
