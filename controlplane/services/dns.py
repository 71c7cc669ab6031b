"""DNS records of a zone. Names are fully qualified in storage; "@" and relative names are accepted on input.
A CNAME cannot share its name with any other record (as in every DNS provider), and a CNAME into the tunnel
domain must name a live tunnel of the same organisation: that is what routes a public hostname."""

from __future__ import annotations

import ipaddress
import uuid
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from controlplane.actors import Actor
from controlplane.choices import AuditAction
from controlplane.models import DnsRecord, Zone
from controlplane.services.audit import audit_record, diff, snapshot
from controlplane.validators import normalise_hostname, reserved_by_installation, validate_domain_name

RECORD_TYPES = ("A", "AAAA", "CNAME", "TXT", "MX", "NS", "CAA", "SRV")
ADDRESS_RECORD_TYPES = ("A", "AAAA", "CNAME")
RECORD_FIELDS = ["type", "name", "content", "ttl", "proxied", "comment", "tags"]


def _routes_changed(organisation_id) -> None:
    from tunnels.events import routes_changed

    routes_changed(organisation_id=organisation_id)


def record_name(zone: Zone, value: str) -> str:
    raw = (value or "").strip()
    if raw in {"", "@"}:
        return zone.name
    try:
        name = normalise_hostname(raw)
    except ValidationError as exc:
        raise ValidationError({"name": exc.messages}) from None
    if name != zone.name and not name.endswith("." + zone.name):
        name = f"{name}.{zone.name}"
    try:
        validate_domain_name(name, allow_wildcard=True)
    except ValidationError as exc:
        raise ValidationError({"name": exc.messages}) from None
    reserved = reserved_by_installation(name)
    if reserved:
        raise ValidationError({"name": reserved})
    return name


def tunnel_for_target(zone: Zone, content: str):
    """The live tunnel a CNAME target `<uuid>.<TUNNEL_DOMAIN>` names, checked to be the zone's organisation's."""
    from tunnels.models import Tunnel

    suffix = "." + str(settings.TUNNEL_DOMAIN)
    if not content.endswith(suffix):
        return None
    try:
        tunnel_id = uuid.UUID(content[: -len(suffix)])
    except ValueError:
        raise ValidationError({"content": f"{content} is not <tunnel id>{suffix}."}) from None
    tunnel = Tunnel.objects.for_org(zone.organisation).filter(pk=tunnel_id, deleted_at__isnull=True).first()
    if tunnel is None:
        raise ValidationError({"content": f"No tunnel {tunnel_id} exists in this account."})
    return tunnel


def _clean_content(zone: Zone, type_: str, content: Any) -> str:
    text = str(content or "").strip()
    if not text:
        raise ValidationError({"content": "This field is required."})
    if type_ == "A":
        try:
            if not isinstance(ipaddress.ip_address(text), ipaddress.IPv4Address):
                raise ValueError
        except ValueError:
            raise ValidationError({"content": f"“{text}” is not an IPv4 address."}) from None
    elif type_ == "AAAA":
        try:
            if not isinstance(ipaddress.ip_address(text), ipaddress.IPv6Address):
                raise ValueError
        except ValueError:
            raise ValidationError({"content": f"“{text}” is not an IPv6 address."}) from None
    elif type_ == "CNAME":
        try:
            text = normalise_hostname(text)
            validate_domain_name(text)
        except ValidationError:
            raise ValidationError({"content": f"“{text}” is not a valid target hostname."}) from None
    elif len(text) > 4096:
        raise ValidationError({"content": "At most 4096 characters."})
    return text


def _clean_ttl(ttl: Any) -> int:
    if isinstance(ttl, bool) or not isinstance(ttl, int):
        raise ValidationError({"ttl": "Must be a whole number: 1 for automatic, or 60 to 86400 seconds."})
    if ttl != 1 and not 60 <= ttl <= 86400:
        raise ValidationError({"ttl": "Must be 1 (automatic) or between 60 and 86400 seconds."})
    return ttl


def _check_exclusive(zone: Zone, type_: str, name: str, exclude: DnsRecord | None = None) -> None:
    same_name = DnsRecord.objects.for_org(zone.organisation).filter(zone=zone, name=name)
    if exclude is not None:
        same_name = same_name.exclude(pk=exclude.pk)
    others = list(same_name.only("type", "content"))
    if type_ == "CNAME" and others:
        raise ValidationError({"name": f"{name} already has a {others[0].type} record; a CNAME must stand alone."})
    if type_ in ADDRESS_RECORD_TYPES and any(o.type == "CNAME" for o in others):
        cname = next(o for o in others if o.type == "CNAME")
        raise ValidationError({"name": f"{name} already has a CNAME record (to {cname.content})."})


def _tunnel_owning(record: DnsRecord) -> Any:
    """The live tunnel whose configuration routes this record's name (the record follows that configuration), or
    None for a record nothing manages."""
    tunnel = record.tunnel if record.tunnel_id else None
    if tunnel is None or tunnel.deleted_at is not None:
        return None
    rules = (tunnel.config or {}).get("ingress") or []
    return tunnel if any(isinstance(r, dict) and r.get("hostname") == record.name for r in rules) else None


def _managed_error(tunnel: Any, name: str, verb: str) -> ValidationError:
    return ValidationError(
        f"{name} is managed by tunnel “{tunnel.name}” (its public hostname {name}): it cannot be {verb} here. "
        "Remove the public hostname from the tunnel instead."
    )


@transaction.atomic
def dns_record_create(
    *,
    zone: Zone,
    actor: Actor,
    type: str,
    name: str,
    content: Any,
    ttl: Any = 1,
    proxied: bool = False,
    comment: str = "",
    tags: list[str] | None = None,
    tunnel: Any = None,
) -> DnsRecord:
    type_ = (type or "").upper()
    if type_ not in RECORD_TYPES:
        raise ValidationError({"type": f"Unsupported record type “{type}”; use one of {', '.join(RECORD_TYPES)}."})
    fqdn = record_name(zone, name)
    text = _clean_content(zone, type_, content)
    target_tunnel = tunnel_for_target(zone, text) if type_ == "CNAME" else None
    _check_exclusive(zone, type_, fqdn)
    record = DnsRecord.objects.create(
        organisation=zone.organisation,
        zone=zone,
        type=type_,
        name=fqdn,
        content=text,
        ttl=_clean_ttl(ttl),
        proxied=bool(proxied),
        comment=(comment or "")[:500],
        tags=list(tags or []),
        tunnel=tunnel or target_tunnel,
    )
    _routes_changed(zone.organisation_id)
    audit_record(
        organisation=zone.organisation,
        actor=actor,
        action=AuditAction.CREATE,
        resource_type="dns_record",
        resource_id=record.id,
        resource_name=f"{fqdn} {type_}",
        changes=diff({}, snapshot(record, RECORD_FIELDS)),
    )
    return record


@transaction.atomic
def dns_record_update(*, record: DnsRecord, actor: Actor, **fields: Any) -> DnsRecord:
    zone = record.zone
    before = snapshot(record, RECORD_FIELDS)
    owner = _tunnel_owning(record)
    type_ = (fields.get("type") or record.type).upper()
    if type_ not in RECORD_TYPES:
        raise ValidationError({"type": f"Unsupported record type “{type_}”."})
    name = record_name(zone, fields["name"]) if "name" in fields else record.name
    content = _clean_content(zone, type_, fields["content"]) if "content" in fields else record.content
    record.type, record.name, record.content = type_, name, content
    if "ttl" in fields:
        record.ttl = _clean_ttl(fields["ttl"])
    if "proxied" in fields:
        record.proxied = bool(fields["proxied"])
    if "comment" in fields:
        record.comment = (fields["comment"] or "")[:500]
    if "tags" in fields:
        record.tags = list(fields["tags"] or [])
    record.tunnel = tunnel_for_target(zone, content) if type_ == "CNAME" else None
    _check_exclusive(zone, type_, name, exclude=record)
    if owner is not None and any(before[key] != getattr(record, key) for key in ("type", "name", "content", "proxied")):
        raise _managed_error(owner, before["name"], "renamed, retargeted or unproxied")
    record.save()
    changes = diff(before, snapshot(record, RECORD_FIELDS))
    _routes_changed(zone.organisation_id)
    if changes:
        audit_record(
            organisation=zone.organisation,
            actor=actor,
            action=AuditAction.UPDATE,
            resource_type="dns_record",
            resource_id=record.id,
            resource_name=f"{record.name} {record.type}",
            changes=changes,
        )
    return record


@transaction.atomic
def dns_record_delete(*, record: DnsRecord, actor: Actor) -> None:
    owner = _tunnel_owning(record)
    if owner is not None:
        raise _managed_error(owner, record.name, "deleted")
    _routes_changed(record.organisation_id)
    audit_record(
        organisation=record.organisation,
        actor=actor,
        action=AuditAction.DELETE,
        resource_type="dns_record",
        resource_id=record.id,
        resource_name=f"{record.name} {record.type}",
        changes=diff(snapshot(record, RECORD_FIELDS), {}),
    )
    record.delete()
