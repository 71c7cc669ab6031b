"""Writing the audit log. Called by services inside their transaction, so the event and the change commit
together or not at all."""

from __future__ import annotations

import datetime
import uuid
from decimal import Decimal
from typing import Any

from django.db import models

from controlplane.actors import Actor
from controlplane.models import AuditEvent, Organisation


def _plain(value: Any) -> Any:
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, (uuid.UUID, Decimal)):
        return str(value)
    if isinstance(value, models.Model):
        return str(value.pk)
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    return value


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """{field: [old, new]} for the fields whose value changed."""
    changes: dict[str, list[Any]] = {}
    for key in sorted(set(before) | set(after)):
        old, new = _plain(before.get(key)), _plain(after.get(key))
        if old != new:
            changes[key] = [old, new]
    return changes


def snapshot(instance: models.Model, fields: list[str]) -> dict[str, Any]:
    return {field: _plain(getattr(instance, field)) for field in fields}


def audit_record(
    *,
    organisation: Organisation,
    actor: Actor,
    action: str,
    resource_type: str,
    resource_id: Any = "",
    resource_name: str = "",
    changes: dict[str, Any] | None = None,
) -> AuditEvent:
    event = audit_event(
        organisation=organisation,
        actor=actor,
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        resource_name=resource_name,
        changes=changes,
    )
    event.save()
    return event


def audit_event(
    *,
    organisation: Organisation,
    actor: Actor,
    action: str,
    resource_type: str,
    resource_id: Any = "",
    resource_name: str = "",
    changes: dict[str, Any] | None = None,
) -> AuditEvent:
    """The event `audit_record` writes, unsaved: for services that write many at once (`bulk_create`)."""
    return AuditEvent(
        organisation=organisation,
        action=action,
        resource_type=resource_type,
        resource_id=str(resource_id.hex if isinstance(resource_id, uuid.UUID) else resource_id)[:64],
        resource_name=str(resource_name)[:255],
        changes=_plain(changes or {}),
        actor_user=actor.user,
        actor_email=actor.user.email if actor.user else "",
        actor_type=actor.actor_type,
        actor_token_id=actor.token.id if actor.token else None,
        interface=actor.interface,
        ip=actor.ip,
        user_agent=actor.user_agent or (actor.label if actor.actor_type in {"system", "connector"} else ""),
    )
