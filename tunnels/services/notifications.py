"""Where a tunnel's alerts go: notification destinations (email, signed webhooks), created and deleted audited."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from controlplane.actors import Actor
from controlplane.choices import AuditAction
from controlplane.models import Organisation
from controlplane.services.audit import audit_record
from tunnels.secrets import encrypt_secret


def notification_destination_create(
    *,
    organisation: Organisation,
    actor: Actor,
    name: Any,
    kind: str,
    emails: Any = None,
    url: str = "",
    secret: str = "",
    alert_types: Any = None,
):
    """Where tunnel alerts go. Webhooks are signed with `secret` (HMAC-SHA256; see tunnels/notifications.py)."""
    from django.core.validators import URLValidator, validate_email

    from tunnels.models import NotificationDestination
    from tunnels.webhooks import webhook_url_validate

    name = (name or "").strip() if isinstance(name, str) else ""
    if not name:
        raise ValidationError({"name": "Give the destination a name."})
    types = list(alert_types or [NotificationDestination.ALERT_HEALTH, NotificationDestination.ALERT_UPDATE])
    allowed = {NotificationDestination.ALERT_HEALTH, NotificationDestination.ALERT_UPDATE}
    if not types or not set(types) <= allowed:
        raise ValidationError({"alert_types": f"Choose from {', '.join(sorted(allowed))}."})
    destination = NotificationDestination(organisation=organisation, name=name[:120], kind=kind, alert_types=types)
    if kind == NotificationDestination.KIND_EMAIL:
        addresses = [e.strip().lower() for e in (emails or []) if str(e).strip()]
        if not addresses:
            raise ValidationError({"emails": "Give at least one email address."})
        for address in addresses:
            try:
                validate_email(address)
            except ValidationError:
                raise ValidationError({"emails": f"“{address}” is not an email address."}) from None
        destination.emails = addresses
    elif kind == NotificationDestination.KIND_WEBHOOK:
        try:
            URLValidator(schemes=["http", "https"])(url)
        except ValidationError:
            raise ValidationError({"url": "Enter an http(s) URL."}) from None
        webhook_url_validate(url)  # no internal or own addresses (checked again at each delivery)
        if len(secret or "") < 16:
            raise ValidationError({"secret": "Use a signing secret of at least 16 characters."})
        destination.url = url
        destination.secret_ciphertext = encrypt_secret(secret.encode())
    else:
        raise ValidationError({"kind": "Must be “email” or “webhook”."})
    with transaction.atomic():
        destination.save()
        audit_record(
            organisation=organisation,
            actor=actor,
            action=AuditAction.CREATE,
            resource_type="notification_destination",
            resource_id=destination.id,
            resource_name=destination.name,
            changes={"kind": [None, kind], "alert_types": [None, types], "target": [None, url or destination.emails]},
        )
    return destination


@transaction.atomic
def notification_destination_delete(*, destination, actor: Actor) -> None:
    audit_record(
        organisation=destination.organisation,
        actor=actor,
        action=AuditAction.DELETE,
        resource_type="notification_destination",
        resource_id=destination.id,
        resource_name=destination.name,
        changes={"kind": [destination.kind, None]},
    )
    destination.delete()
