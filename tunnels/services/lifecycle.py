"""Writes on a tunnel itself: create, rename, rotate the secret, delete, disconnect its connectors. Each takes `actor`,
writes its audit event in the same transaction, and publishes its event to the hubs after commit."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from controlplane.actors import Actor
from controlplane.choices import AuditAction
from controlplane.models import Organisation
from controlplane.prepared import PreparedInsert, PreparedQuery, PreparedUpdate
from controlplane.services.audit import audit_record, save_audited
from controlplane.services.dns import dns_records_delete
from tunnels import events
from tunnels.models import Connection, Tunnel
from tunnels.secrets import build_token, decrypt_secret, encrypt_secret, new_secret, parse_user_secret
from tunnels.services.config import locked_tunnel, tunnel_routes

# Application close codes shared with the connector (connector/protocol.py mirrors them).
CLOSE_TOKEN_ROTATED = 4003
CLOSE_FORCED = 4009
CLOSE_TUNNEL_DELETED = 4010


def _clean_name(name: Any) -> str:
    text = (name or "").strip() if isinstance(name, str) else ""
    if not text:
        raise ValidationError({"name": "A tunnel needs a name."})
    if len(text) > 255:
        raise ValidationError({"name": "At most 255 characters."})
    try:
        uuid.UUID(text)
    except ValueError:
        return text
    raise ValidationError({"name": "A tunnel name cannot be a UUID (it would be confused with a tunnel id)."})


# A live tunnel's id by name (compiled once per process: building the query was a tenth of a create's cost).
_LIVE_BY_NAME = PreparedQuery(
    lambda organisation, name: (
        Tunnel.objects.for_org(organisation)
        .filter(name=name, deleted_at__isnull=True)
        .order_by()
        .values_list("pk", flat=True)[:2]
    ),
    organisation=Organisation,
    name=str,
)


# A tunnel's INSERT and its deletion's UPDATE, compiled once per process (issue 13: the ORM's save was a fifth of a
# create's or a delete's cost). The update finds the row through the organisation's scope.
_INSERT_TUNNEL = PreparedInsert(Tunnel)
_SAVE_DELETED = PreparedUpdate(
    lambda organisation, pk: Tunnel.objects.for_org(organisation).filter(pk=pk),
    fields=("deleted_at", "updated_at"),
    organisation=Organisation,
    pk=uuid.UUID,
)


def _check_name_free(organisation: Organisation, name: str, exclude: Tunnel | None = None) -> None:
    taken = _LIVE_BY_NAME.rows(organisation=organisation, name=name)
    if exclude is not None:
        taken = [pk for pk in taken if pk != exclude.pk]
    if taken:
        raise ValidationError({"name": f"A tunnel named “{name}” already exists in this account."})


def _secret_from_input(tunnel_secret: Any) -> bytes:
    if tunnel_secret in (None, ""):
        return new_secret()
    try:
        return parse_user_secret(str(tunnel_secret))
    except ValueError as exc:
        raise ValidationError({"tunnel_secret": str(exc)}) from None


@transaction.atomic
def tunnel_create(
    *, organisation: Organisation, name: Any, actor: Actor, tunnel_secret: Any = None, config_src: Any = "cloudflare"
) -> Tunnel:
    name = _clean_name(name)
    if config_src not in (None, "cloudflare", "local"):
        raise ValidationError({"config_src": "Must be “cloudflare” (remote-managed) or “local”."})
    _check_name_free(organisation, name)
    tunnel = Tunnel(
        organisation=organisation,
        name=name,
        config_src=config_src or "cloudflare",
        secret_ciphertext=encrypt_secret(_secret_from_input(tunnel_secret)),
        created_by=actor.user,
    )
    save_audited(
        tunnel,
        conflict={"name": f"A tunnel named “{name}” already exists in this account."},
        organisation=organisation,
        actor=actor,
        action=AuditAction.CREATE,
        resource_type="tunnel",
        resource_name=name,
        changes={"name": [None, name], "config_src": [None, tunnel.config_src]},
        insert=_INSERT_TUNNEL,
        savepoint=False,  # a lost race ends this whole atomic create: nothing before the insert is kept anyway
    )
    events.tunnel_changed(organisation_id=organisation.pk, tunnel_id=tunnel.pk)
    _notify_lifecycle(tunnel, "created")
    return tunnel


def tunnel_token(tunnel: Tunnel) -> str:
    """The cloudflared-format token, carrying the address connectors dial as "e"."""
    return build_token(
        account_tag=tunnel.organisation_id.hex,
        tunnel_id=tunnel.id,
        secret=decrypt_secret(tunnel.secret_ciphertext),
        endpoint=settings.CONNECTOR_EDGE_URL or settings.PUBLIC_URL,
    )


@transaction.atomic
def tunnel_update(*, tunnel: Tunnel, actor: Actor, name: Any = None, tunnel_secret: Any = None) -> Tunnel:
    tunnel = locked_tunnel(tunnel)
    changes: dict[str, Any] = {}
    if name is not None:
        new_name = _clean_name(name)
        if new_name != tunnel.name:
            _check_name_free(tunnel.organisation, new_name, exclude=tunnel)
            changes["name"] = [tunnel.name, new_name]
            tunnel.name = new_name
    if tunnel_secret not in (None, ""):
        tunnel.secret_ciphertext = encrypt_secret(_secret_from_input(tunnel_secret))
        tunnel.secret_rotated_at = timezone.now()
        changes["tunnel_secret"] = ["(hidden)", "(rotated)"]
    if not changes:
        return tunnel
    save_audited(
        tunnel,
        conflict={"name": f"A tunnel named “{tunnel.name}” already exists in this account."},
        organisation=tunnel.organisation,
        actor=actor,
        action=AuditAction.ROTATE if set(changes) == {"tunnel_secret"} else AuditAction.UPDATE,
        resource_type="tunnel",
        resource_name=tunnel.name,
        changes=changes,
    )
    events.tunnel_changed(organisation_id=tunnel.organisation_id, tunnel_id=tunnel.pk)
    return tunnel


@transaction.atomic
def tunnel_rotate_secret(*, tunnel: Tunnel, actor: Actor, disconnect: bool = False) -> Tunnel:
    """A new secret: connections with the old token are refused from now on; existing ones stay unless
    `disconnect` (as Cloudflare: rotate, then DELETE …/connections)."""
    tunnel = locked_tunnel(tunnel)
    tunnel.secret_ciphertext = encrypt_secret(new_secret())
    tunnel.secret_rotated_at = timezone.now()
    tunnel.save(update_fields=["secret_ciphertext", "secret_rotated_at", "updated_at"])
    audit_record(
        organisation=tunnel.organisation,
        actor=actor,
        action=AuditAction.ROTATE,
        resource_type="tunnel",
        resource_id=tunnel.id,
        resource_name=tunnel.name,
        changes={"tunnel_secret": ["(hidden)", "(rotated)"], "disconnected": [None, disconnect]},
    )
    events.tunnel_changed(organisation_id=tunnel.organisation_id, tunnel_id=tunnel.pk)
    if disconnect:
        events.disconnect(
            organisation_id=tunnel.organisation_id,
            tunnel_id=tunnel.pk,
            code=CLOSE_TOKEN_ROTATED,
            reason="the tunnel token was rotated",
        )
    return tunnel


_LIVE_CONNECTIONS = PreparedQuery(
    lambda organisation, tunnel: (
        Connection.objects.for_org(organisation).filter(tunnel=tunnel, closed_at__isnull=True).order_by()
    ),
    organisation=Organisation,
    tunnel=Tunnel,
)


def live_connection_count(tunnel: Tunnel) -> int:
    return _LIVE_CONNECTIONS.bind(organisation=tunnel.organisation, tunnel=tunnel).count()


@transaction.atomic
def tunnel_delete(*, tunnel: Tunnel, actor: Actor, cascade: bool = False) -> Tunnel:
    """Soft delete (Cloudflare's deleted_at). Refused while connectors are connected unless `cascade`, which
    disconnects them. Its DNS routes go with it."""
    tunnel = locked_tunnel(tunnel)
    live = live_connection_count(tunnel)
    if live and not cascade:
        raise ValidationError(
            f"Tunnel “{tunnel.name}” has {live} active connection{'s' if live != 1 else ''}. Stop its connectors "
            "first, or delete with cascade=true to disconnect them."
        )
    dns_records_delete(records=tunnel_routes(tunnel), actor=actor)
    tunnel.deleted_at = timezone.now()
    _SAVE_DELETED.save(tunnel, organisation=tunnel.organisation, pk=tunnel.pk)
    events.routes_changed(organisation_id=tunnel.organisation_id)
    audit_record(
        organisation=tunnel.organisation,
        actor=actor,
        action=AuditAction.DELETE,
        resource_type="tunnel",
        resource_id=tunnel.id,
        resource_name=tunnel.name,
        changes={"deleted_at": [None, tunnel.deleted_at], "cascade": [None, cascade]},
    )
    events.tunnel_changed(organisation_id=tunnel.organisation_id, tunnel_id=tunnel.pk)
    if live:
        events.disconnect(
            organisation_id=tunnel.organisation_id,
            tunnel_id=tunnel.pk,
            code=CLOSE_TUNNEL_DELETED,
            reason="the tunnel was deleted",
        )
    _notify_lifecycle(tunnel, "deleted")
    return tunnel


def connections_disconnect(*, tunnel: Tunnel, actor: Actor, connector_id: Any = None) -> None:
    """Force-disconnect every connection of the tunnel, or one connector's (Cloudflare's client_id)."""
    if connector_id not in (None, ""):
        try:
            connector_id = uuid.UUID(str(connector_id))
        except ValueError:
            raise ValidationError({"client_id": "Must be a connector id (UUID)."}) from None
    with transaction.atomic():
        audit_record(
            organisation=tunnel.organisation,
            actor=actor,
            action=AuditAction.DELETE,
            resource_type="tunnel_connections",
            resource_id=tunnel.id,
            resource_name=tunnel.name,
            changes={"connector": [str(connector_id) if connector_id else "all", None]},
        )
        events.disconnect(
            organisation_id=tunnel.organisation_id,
            tunnel_id=tunnel.pk,
            connector_id=connector_id,
            code=CLOSE_FORCED,
            reason="disconnected by an administrator",
        )


def _notify_lifecycle(tunnel: Tunnel, what: str) -> None:
    """Tunnel created/deleted notifications (Cloudflare's tunnel_update_event), by Celery after commit."""
    from tunnels.tasks import notify_tunnel_event

    organisation_id, tunnel_id = str(tunnel.organisation_id), str(tunnel.pk)
    transaction.on_commit(
        lambda: notify_tunnel_event.delay(organisation_id=organisation_id, tunnel_id=tunnel_id, event=what)
    )
