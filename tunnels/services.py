"""Writes on tunnels: create, rename, rotate the secret, delete, configure (whole or one public hostname at a
time), disconnect. Each takes `actor`, writes its audit event in the same transaction, and publishes its event
to the hubs after commit."""

from __future__ import annotations

import copy
import uuid
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from controlplane.actors import Actor
from controlplane.choices import AuditAction, ZoneStatus
from controlplane.models import DnsRecord, Organisation, Zone
from controlplane.services.audit import audit_record, diff, save_audited
from controlplane.services.dns import dns_record_create, dns_records_delete
from tunnels import events
from tunnels.dns import MANAGED_BY_TUNNEL, managed_by_tunnel
from tunnels.models import Connection, Tunnel, TunnelConfiguration
from tunnels.secrets import build_token, decrypt_secret, encrypt_secret, new_secret, parse_user_secret

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


def _check_name_free(organisation: Organisation, name: str, exclude: Tunnel | None = None) -> None:
    taken = Tunnel.objects.for_org(organisation).filter(name=name, deleted_at__isnull=True)
    if exclude is not None:
        taken = taken.exclude(pk=exclude.pk)
    if taken.exists():
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
    tunnel = Tunnel.objects.for_org(tunnel.organisation).select_for_update().get(pk=tunnel.pk)
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
    tunnel = Tunnel.objects.for_org(tunnel.organisation).select_for_update().get(pk=tunnel.pk)
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


def live_connection_count(tunnel: Tunnel) -> int:
    return Connection.objects.for_org(tunnel.organisation).filter(tunnel=tunnel, closed_at__isnull=True).count()


@transaction.atomic
def tunnel_delete(*, tunnel: Tunnel, actor: Actor, cascade: bool = False) -> Tunnel:
    """Soft delete (Cloudflare's deleted_at). Refused while connectors are connected unless `cascade`, which
    disconnects them. Its DNS routes go with it."""
    tunnel = Tunnel.objects.for_org(tunnel.organisation).select_for_update().get(pk=tunnel.pk)
    live = live_connection_count(tunnel)
    if live and not cascade:
        raise ValidationError(
            f"Tunnel “{tunnel.name}” has {live} active connection{'s' if live != 1 else ''}. Stop its connectors "
            "first, or delete with cascade=true to disconnect them."
        )
    dns_records_delete(records=list(_routes_of(tunnel)), actor=actor)
    tunnel.deleted_at = timezone.now()
    tunnel.save(update_fields=["deleted_at", "updated_at"])
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


# --- configuration -------------------------------------------------------------------------------------------


def _ingress_module():
    from connector import ingress

    return ingress


def validate_tunnel_config(config: Any) -> dict[str, Any]:
    ingress = _ingress_module()
    if not isinstance(config, dict):
        raise ValidationError({"config": "Must be an object with an “ingress” list."})
    try:
        normalised = ingress.validate_config(config)
    except ingress.IngressError as exc:
        field = getattr(exc, "field", None) or "config"
        raise ValidationError({field: str(exc)}) from None
    _refuse_duplicate_rules(normalised["ingress"])
    return normalised


def _refuse_duplicate_rules(rules: list[dict[str, Any]]) -> None:
    """Refuse a rule with the hostname and path of an earlier one: rules match top to bottom, so the second would
    never be used (cloudflared accepts it silently; we say so, naming the rule that wins, as for another
    tunnel's hostname). Hostnames are compared normalised (lower case, punycode), paths as written."""
    first_rule: dict[tuple[str, str], int] = {}
    for index, rule in enumerate(rules):
        hostname = rule.get("hostname", "")
        if hostname in ("", "*"):
            continue
        key = (hostname, rule.get("path", ""))
        earlier = first_rule.setdefault(key, index)
        if earlier == index:
            continue
        where = f" with path {key[1]}" if key[1] else ""
        raise ValidationError(
            {
                f"config.ingress[{index}].hostname": f"{hostname}{where} is already rule #{earlier + 1} "
                f"of this tunnel (to {rules[earlier].get('service', '')}): a second rule for it would never be "
                "used. Edit that one instead."
            }
        )


def _zone_for(active_zones: list[Zone], hostname: str) -> Zone | None:
    bare = hostname[2:] if hostname.startswith("*.") else hostname
    best = None
    for zone in active_zones:
        if zone.covers(bare) and (best is None or len(zone.name) > len(best.name)):
            best = zone
    return best


def _sync_dns_routes(tunnel: Tunnel, hostnames: set[str], actor: Actor) -> None:
    """Make CNAMEs <hostname> → <tunnel>.<TUNNEL_DOMAIN> exist for exactly `hostnames`, refusing a hostname that
    another record (or another tunnel's route) already uses."""
    organisation = tunnel.organisation
    zones = list(Zone.objects.for_org(organisation).filter(status=ZoneStatus.ACTIVE))
    placed: dict[str, Zone] = {}
    for hostname in sorted(hostnames):
        zone = _zone_for(zones, hostname)
        if zone is None:
            names = ", ".join(z.name for z in zones) or "none yet"
            raise ValidationError(
                {
                    "config.ingress": f"{hostname} is not under one of this account's active zones ({names}). "
                    "Add and verify its zone first."
                }
            )
        placed[hostname] = zone
    existing = {r.name: r for r in DnsRecord.objects.for_org(organisation).filter(name__in=list(hostnames))}
    owners = dict(
        Tunnel.objects.for_org(organisation)
        .filter(pk__in={r.managed_by_id for r in existing.values() if r.managed_by == MANAGED_BY_TUNNEL})
        .values_list("pk", "name")
    )
    for hostname, zone in placed.items():
        record = existing.get(hostname)
        if record is None:
            dns_record_create(
                zone=zone,
                actor=actor,
                type="CNAME",
                name=hostname,
                content=tunnel.cname_target,
                proxied=True,
                comment=f"Route to tunnel {tunnel.name}",
                managed_by=managed_by_tunnel(tunnel),
            )
        elif record.type == "CNAME" and record.content == tunnel.cname_target:
            if (record.managed_by, record.managed_by_id) != (MANAGED_BY_TUNNEL, tunnel.pk):
                DnsRecord.objects.for_org(organisation).filter(pk=record.pk).update(
                    managed_by=MANAGED_BY_TUNNEL, managed_by_id=tunnel.pk
                )
        else:
            owner_name = owners.get(record.managed_by_id) if record.managed_by == MANAGED_BY_TUNNEL else None
            owner = f"tunnel “{owner_name}”" if owner_name else f"a {record.type} record to {record.content}"
            raise ValidationError({"config.ingress": f"{hostname} already routes to {owner}. Remove that first."})
    dns_records_delete(records=list(_routes_of(tunnel).exclude(name__in=list(hostnames))), actor=actor)
    events.routes_changed(organisation_id=organisation.pk)


def _routes_of(tunnel: Tunnel):
    """The DNS records this tunnel manages (the CNAMEs of its public hostnames)."""
    return DnsRecord.objects.for_org(tunnel.organisation).filter(managed_by=MANAGED_BY_TUNNEL, managed_by_id=tunnel.pk)


@transaction.atomic
def tunnel_config_update(*, tunnel: Tunnel, config: Any, actor: Actor) -> TunnelConfiguration:
    """Replace the configuration: validate as cloudflared does, route its public hostnames (DNS), bump the
    version and push it to every connected connector after commit."""
    normalised = validate_tunnel_config(config)
    tunnel = Tunnel.objects.for_org(tunnel.organisation).select_for_update().get(pk=tunnel.pk)
    if tunnel.deleted_at is not None:
        raise ValidationError("This tunnel is deleted.")
    hostnames = {host for host, _path in _ingress_module().public_hostnames(normalised) if host}
    _sync_dns_routes(tunnel, hostnames, actor)
    previous = tunnel.config
    tunnel.config_version += 1
    tunnel.config = normalised
    tunnel.save(update_fields=["config_version", "config", "updated_at"])
    configuration = TunnelConfiguration.objects.create(
        organisation=tunnel.organisation,
        tunnel=tunnel,
        version=tunnel.config_version,
        config=normalised,
        created_by_email=actor.user.email if actor.user else actor.display,
    )
    audit_record(
        organisation=tunnel.organisation,
        actor=actor,
        action=AuditAction.UPDATE,
        resource_type="tunnel_configuration",
        resource_id=tunnel.id,
        resource_name=tunnel.name,
        changes={"version": [tunnel.config_version - 1, tunnel.config_version], **config_diff(previous, normalised)},
    )
    events.config_changed(organisation_id=tunnel.organisation_id, tunnel_id=tunnel.pk, version=tunnel.config_version)
    return configuration


def config_diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A readable diff: ingress rules by position, and top-level originRequest keys."""
    old_rules = (old or {}).get("ingress", []) or []
    new_rules = (new or {}).get("ingress", []) or []
    rules_before = {f"ingress[{i}]": rule for i, rule in enumerate(old_rules)}
    rules_after = {f"ingress[{i}]": rule for i, rule in enumerate(new_rules)}
    changes = diff(rules_before, rules_after)
    changes.update(
        diff(
            {f"originRequest.{k}": v for k, v in ((old or {}).get("originRequest") or {}).items()},
            {f"originRequest.{k}": v for k, v in ((new or {}).get("originRequest") or {}).items()},
        )
    )
    return changes


def _rules_with_catch_all(config: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rules = [copy.deepcopy(rule) for rule in (config.get("ingress") or [])]
    if rules and not rules[-1].get("hostname") and not rules[-1].get("path"):
        return rules[:-1], rules[-1]
    return rules, {"service": "http_status:404"}


def _locked(tunnel: Tunnel) -> Tunnel:
    return Tunnel.objects.for_org(tunnel.organisation).select_for_update().get(pk=tunnel.pk)


def _check_version(tunnel: Tunnel, expected_version: int | None) -> None:
    if expected_version is not None and expected_version != tunnel.config_version:
        raise ValidationError(
            {
                "version": f"The configuration is at version {tunnel.config_version}, not {expected_version}: someone "
                "changed it since you read it. Read it again and retry."
            }
        )


@transaction.atomic
def public_hostname_save(
    *,
    tunnel: Tunnel,
    actor: Actor,
    rule: dict[str, Any],
    index: int | None = None,
    expected_version: int | None = None,
) -> TunnelConfiguration:
    """Add (index None) or replace (index) one public hostname rule, keeping every other rule as it is. With
    `expected_version`, refuse if the configuration changed meanwhile (optimistic concurrency)."""
    if not isinstance(rule, dict) or not rule.get("hostname"):
        raise ValidationError({"hostname": "A public hostname needs a hostname."})
    tunnel = _locked(tunnel)
    _check_version(tunnel, expected_version)
    rules, catch_all = _rules_with_catch_all(tunnel.config or {})
    if index is None:
        rules.append(rule)
    else:
        if not 0 <= index < len(rules):
            raise ValidationError({"index": "No such public hostname."})
        rules[index] = rule
    config = {**(tunnel.config or {}), "ingress": [*rules, catch_all]}
    return tunnel_config_update(tunnel=tunnel, config=config, actor=actor)


@transaction.atomic
def public_hostname_delete(
    *, tunnel: Tunnel, actor: Actor, index: int, expected_version: int | None = None
) -> TunnelConfiguration:
    tunnel = _locked(tunnel)
    _check_version(tunnel, expected_version)
    rules, catch_all = _rules_with_catch_all(tunnel.config or {})
    if not 0 <= index < len(rules):
        raise ValidationError({"index": "No such public hostname."})
    del rules[index]
    config = {**(tunnel.config or {}), "ingress": [*rules, catch_all]}
    return tunnel_config_update(tunnel=tunnel, config=config, actor=actor)


def _notify_lifecycle(tunnel: Tunnel, what: str) -> None:
    """Tunnel created/deleted notifications (Cloudflare's tunnel_update_event), by Celery after commit."""
    from tunnels.tasks import notify_tunnel_event

    organisation_id, tunnel_id = str(tunnel.organisation_id), str(tunnel.pk)
    transaction.on_commit(
        lambda: notify_tunnel_event.delay(organisation_id=organisation_id, tunnel_id=tunnel_id, event=what)
    )


# --- notifications ---------------------------------------------------------------------------------------------


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
