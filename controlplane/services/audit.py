"""Writing the audit log: the only code that inserts `AuditEvent` rows (the model refuses any other insert), so
every row has the same shape whoever writes it. Called by services inside their transaction, so the event and
the change commit together or not at all."""

from __future__ import annotations

import contextlib
import datetime
import uuid
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction

from controlplane.actors import Actor
from controlplane.models import AuditEvent, Organisation
from controlplane.models.audit import audit_service_writing
from controlplane.prepared import PreparedInsert

# The audit row's INSERT, compiled once per process (controlplane/prepared.py): every audited write inserts one, and
# the ORM's insert was a tenth of a tunnel write's cost (issue 13). AuditEvent.save's checks hold: the row is new
# (PreparedInsert inserts new rows only) and written here, under `_writing()`.
_INSERT_EVENT = PreparedInsert(
    AuditEvent, own_save="the audit service's insert: a new row, written by the service (AuditEvent.save's checks)"
)


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


@contextlib.contextmanager
def _writing() -> Iterator[None]:
    token = audit_service_writing.set(True)
    try:
        yield
    finally:
        audit_service_writing.reset(token)


def audit_event(
    *,
    organisation: Organisation | None = None,
    organisation_id: Any = None,
    actor: Actor,
    action: str,
    resource_type: str,
    resource_id: Any = "",
    resource_name: str = "",
    changes: dict[str, Any] | None = None,
) -> AuditEvent:
    """One event, not yet saved: for writers that insert many at once with `audit_records`."""
    if organisation is not None:
        organisation_id = organisation.pk
    if organisation_id is None:
        raise ValueError("an audit event belongs to an organisation")
    return AuditEvent(
        organisation_id=organisation_id,
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
    with _writing():
        _INSERT_EVENT.save(event)
    return event


def audit_records(events: Iterable[AuditEvent]) -> list[AuditEvent]:
    """Insert events built by `audit_event` in one statement."""
    events = list(events)
    if not events:
        return events
    with _writing():
        return AuditEvent.objects.bulk_create(events)


def save_audited(
    instance: models.Model,
    *,
    conflict: dict[str, str],
    organisation: Organisation,
    actor: Actor,
    action: str,
    resource_type: str,
    resource_name: str,
    changes: dict[str, Any] | None,
    insert: PreparedInsert | None = None,
    savepoint: bool = True,
) -> None:
    """Save `instance` in a savepoint and audit it. A uniqueness race lost between the service's own check and
    the insert (IntegrityError) becomes the same ValidationError the check gives (`conflict`), never a 500, and
    leaves the surrounding transaction usable. A new row is inserted by `insert` when given (compiled once).

    `savepoint=False` for a caller whose own atomic block holds nothing else to keep: the error leaves that block,
    which is rolled back whole (and is itself a savepoint when nested), so the caller's caller's transaction stays
    usable without a savepoint of its own here (two statements less)."""
    try:
        with transaction.atomic(savepoint=savepoint):
            if insert is not None:
                insert.save(instance, organisation=organisation)
            else:
                instance.save()
    except IntegrityError:
        raise ValidationError(conflict) from None
    audit_record(
        organisation=organisation,
        actor=actor,
        action=action,
        resource_type=resource_type,
        resource_id=instance.pk,
        resource_name=resource_name,
        changes=changes,
    )
