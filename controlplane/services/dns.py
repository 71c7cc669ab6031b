"""DNS records of a zone. Names are fully qualified in storage; "@" and relative names are accepted on input.
A CNAME cannot share its name with any other record (as in every DNS provider).

The core knows product apps only through what they register here, never by import: a CNAME target owner (tunnels:
a CNAME into the tunnel domain must name a live tunnel of the same organisation, and the record is then managed by
it) and the `dns_records_changed` signal (tunnels: every edge reloads its hostname → tunnel table)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.dispatch import Signal

from controlplane.actors import Actor
from controlplane.choices import AuditAction
from controlplane.models import DnsRecord, Zone
from controlplane.services.audit import audit_event, audit_record, audit_records, diff, snapshot
from controlplane.validators import normalise_hostname, reserved_by_installation, validate_domain_name

RECORD_TYPES = ("A", "AAAA", "CNAME", "TXT", "MX", "NS", "CAA", "SRV")
ADDRESS_RECORD_TYPES = ("A", "AAAA", "CNAME")
RECORD_FIELDS = ["type", "name", "content", "ttl", "proxied", "comment", "tags"]


# Sent (inside the writing transaction) whenever a record of the organisation is created, changed or deleted;
# kwargs: organisation_id. Receivers that publish events do so on commit.
dns_records_changed = Signal()


@dataclass(frozen=True)
class ManagedBy:
    """The product-app object that keeps a record in step, e.g. ManagedBy("tunnel", tunnel.pk)."""

    kind: str
    id: Any


# Each owner looks at a CNAME target of a zone: None when the target is not its own, the ManagedBy when it is and
# names a live object of the zone's organisation, and a ValidationError on "content" when it is its own but wrong.
CnameTargetOwner = Callable[[Zone, str], "ManagedBy | None"]
_cname_target_owners: list[CnameTargetOwner] = []


def register_cname_target_owner(owner: CnameTargetOwner) -> None:
    """Called from a product app's AppConfig.ready()."""
    if owner not in _cname_target_owners:
        _cname_target_owners.append(owner)


def _routes_changed(organisation_id) -> None:
    dns_records_changed.send(sender=DnsRecord, organisation_id=organisation_id)


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


def cname_target_owner(zone: Zone, content: str) -> ManagedBy | None:
    """Who manages a CNAME to `content`, if a product app claims the target (and checks it is the zone's
    organisation's)."""
    for owner in _cname_target_owners:
        managed_by = owner(zone, content)
        if managed_by is not None:
            return managed_by
    return None


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


# kind of manager (ManagedBy.kind) -> guard(record, verb): why this record cannot be changed that way here, or None.
RecordGuard = Callable[[DnsRecord, str], "str | None"]
_record_guards: dict[str, RecordGuard] = {}


def register_record_guard(kind: str, guard: RecordGuard) -> None:
    """A product app refuses changes, through the DNS API, to records it keeps in step (tunnels: the CNAME of a
    public hostname follows the tunnel's configuration)."""
    _record_guards[kind] = guard


def _refused(record: DnsRecord, verb: str) -> ValidationError | None:
    guard = _record_guards.get(record.managed_by or "")
    message = guard(record, verb) if guard is not None else None
    return ValidationError(message) if message else None


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
    managed_by: ManagedBy | None = None,
) -> DnsRecord:
    type_ = (type or "").upper()
    if type_ not in RECORD_TYPES:
        raise ValidationError({"type": f"Unsupported record type “{type}”; use one of {', '.join(RECORD_TYPES)}."})
    fqdn = record_name(zone, name)
    text = _clean_content(zone, type_, content)
    owner = managed_by or (cname_target_owner(zone, text) if type_ == "CNAME" else None)
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
        managed_by=owner.kind if owner else "",
        managed_by_id=owner.id if owner else None,
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
    refusal = _refused(record, "renamed, retargeted or unproxied")
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
    owner = cname_target_owner(zone, content) if type_ == "CNAME" else None
    record.managed_by, record.managed_by_id = (owner.kind, owner.id) if owner else ("", None)
    _check_exclusive(zone, type_, name, exclude=record)
    if refusal is not None and any(
        before[key] != getattr(record, key) for key in ("type", "name", "content", "proxied")
    ):
        raise refusal
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
    """Through the DNS API: a record its manager keeps in step is refused (say where to change it instead)."""
    refusal = _refused(record, "deleted")
    if refusal is not None:
        raise refusal
    dns_records_delete(records=[record], actor=actor)


@dataclass(frozen=True)
class DeleteSummary:
    """One audit event for many deleted records (a configuration dropping its public hostnames' routes at once):
    the resource it is filed under and the name it shows."""

    resource_id: Any
    resource_name: str


def dns_records_delete(
    *, records: list[DnsRecord], actor: Actor, summary: DeleteSummary | None = None, announce: bool = True
) -> None:
    """Delete records of one organisation and audit it, in one insert and one delete: one event per record (the DNS
    API, a tunnel deleted), or with `summary` one event naming every record as `{name: ["TYPE content", None]}` (a
    configuration that drops many public hostnames: per-record events made a 1,000-hostname write mostly audit rows).
    `announce=False` when the caller announces the route change itself, once for all its writes."""
    if not records:
        return  # nothing to delete: not even a savepoint (a tunnel without routes is deleted in one query less)
    organisation = records[0].organisation
    if any(record.organisation_id != organisation.pk for record in records):
        raise ValueError("dns_records_delete deletes records of one organisation at a time")
    with transaction.atomic():
        _delete_and_audit(records, organisation, actor, summary, announce)


def _delete_and_audit(
    records: list[DnsRecord], organisation: Any, actor: Actor, summary: DeleteSummary | None, announce: bool
) -> None:
    if summary is None:
        entries = [(r.id, f"{r.name} {r.type}", diff(snapshot(r, RECORD_FIELDS), {})) for r in records]
    else:
        summarised = {r.name: [f"{r.type} {r.content}", None] for r in records}
        entries = [(summary.resource_id, summary.resource_name, summarised)]
    audit_records(
        audit_event(
            organisation=organisation,
            actor=actor,
            action=AuditAction.DELETE,
            resource_type="dns_record",
            resource_id=resource_id,
            resource_name=name,
            changes=changes,
        )
        for resource_id, name, changes in entries
    )
    DnsRecord.objects.for_org(organisation).filter(pk__in=[record.pk for record in records]).delete()
    if announce:
        _routes_changed(organisation.pk)
