"""Zones: adding a domain, proving ownership with a DNS TXT record, removing it.

A name and everything under it belongs to at most one organisation, so the overlap check runs across all
organisations, inside a transaction that holds the write lock (SQLite IMMEDIATE, or a Postgres advisory lock)."""

from __future__ import annotations

import dns.exception
import dns.inet
import dns.nameserver
import dns.resolver
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from controlplane.actors import Actor
from controlplane.choices import AuditAction, ZoneStatus
from controlplane.models import Organisation, Zone
from controlplane.services.audit import audit_record, save_audited
from controlplane.validators import normalise_hostname, reserved_by_installation, validate_domain_name

_ZONE_LOCK_KEY = 0x5A4F4E45  # "ZONE": serialises overlap checks between concurrent writers on PostgreSQL


def _lock_zone_registry() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_ZONE_LOCK_KEY])


def clean_zone_name(value: str) -> str:
    try:
        name = normalise_hostname(value)
        validate_domain_name(name)
    except ValidationError as exc:
        raise ValidationError({"name": exc.messages}) from None
    reserved = reserved_by_installation(name)
    if reserved:
        raise ValidationError({"name": reserved})
    return name


def overlapping_zones(name: str):
    """Zones, in any organisation, equal to `name`, above it, or under it."""
    labels = name.split(".")
    ancestors = [".".join(labels[i:]) for i in range(1, len(labels) - 1)]
    return Zone.objects.unscoped("a name belongs to one organisation across the installation").filter(
        Q(name=name) | Q(name__in=ancestors) | Q(name__endswith="." + name)
    )


@transaction.atomic
def zone_create(*, organisation: Organisation, name: str, actor: Actor) -> Zone:
    name = clean_zone_name(name)
    _lock_zone_registry()
    clash = overlapping_zones(name).order_by("name").first()
    if clash is not None:
        if clash.organisation_id == organisation.pk:
            relation = "is" if clash.name == name else ("covers" if name.endswith("." + clash.name) else "is under")
            raise ValidationError({"name": f"Your zone {clash.name} {relation} {name} already."})
        raise ValidationError(
            {
                "name": f"{name} cannot be added: {clash.name} belongs to another organisation. A domain and the names "
                f"under it belong to one organisation only."
            }
        )
    zone = Zone(organisation=organisation, name=name)
    if settings.ZONES_AUTO_VERIFY:
        zone.status = ZoneStatus.ACTIVE
        zone.verified_at = timezone.now()
    save_audited(
        zone,
        conflict={"name": f"{name} has just been added by someone else."},
        organisation=organisation,
        actor=actor,
        action=AuditAction.CREATE,
        resource_type="zone",
        resource_name=name,
        changes={"name": [None, name], "status": [None, zone.status]},
    )
    return zone


def parse_nameserver(entry: str) -> tuple[str, int]:
    """("ip", port) from "ip", "ip:port", "v6" or "[v6]:port" (ZONE_VERIFICATION_NAMESERVERS)."""
    text = entry.strip()
    host, port = text, "53"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ("53" if not rest else "invalid")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    if not dns.inet.is_address(host) or not port.isdigit() or not 0 < int(port) < 65536:
        raise ImproperlyConfigured(
            f"ZONE_VERIFICATION_NAMESERVERS: {entry!r} is not an IP address with an optional port "
            "(1.2.3.4, 1.2.3.4:5353, 2001:db8::1 or [2001:db8::1]:5353)."
        )
    return host, int(port)


def _resolver() -> dns.resolver.Resolver:
    nameservers = settings.ZONE_VERIFICATION_NAMESERVERS
    resolver = dns.resolver.Resolver(configure=not nameservers)
    if nameservers:
        resolver.nameservers = [dns.nameserver.Do53Nameserver(*parse_nameserver(entry)) for entry in nameservers]
    resolver.lifetime = 5.0
    resolver.timeout = 2.0
    return resolver


def lookup_verification(zone: Zone) -> tuple[bool, str]:
    """(found, explanation): whether the zone's TXT record carries its verification value."""
    expected = zone.verification_record_value
    try:
        answer = _resolver().resolve(zone.verification_record_name, "TXT")
    except dns.resolver.NXDOMAIN:
        return False, f"No TXT record exists at {zone.verification_record_name}."
    except dns.resolver.NoAnswer:
        return False, f"{zone.verification_record_name} has no TXT record."
    except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
        return False, f"DNS lookup of {zone.verification_record_name} failed: {exc.__class__.__name__}. Try again."
    values = [b"".join(record.strings).decode(errors="replace") for record in answer]
    if expected in values:
        return True, ""
    return False, f"{zone.verification_record_name} has TXT {values!r}, not “{expected}”."


def zone_check_verification(*, zone: Zone, actor: Actor) -> Zone:
    """Look the TXT record up (outside any transaction: DNS can be slow) and activate the zone if it matches."""
    if zone.status == ZoneStatus.ACTIVE:
        return zone
    found, error = lookup_verification(zone)
    if found:
        return zone_mark_verified(zone=zone, actor=actor)
    Zone.objects.for_org(zone.organisation).filter(pk=zone.pk).update(
        last_checked_at=timezone.now(), last_check_error=error[:300]
    )
    zone.refresh_from_db()
    return zone


@transaction.atomic
def zone_mark_verified(*, zone: Zone, actor: Actor) -> Zone:
    updated = (
        Zone.objects.for_org(zone.organisation)
        .filter(pk=zone.pk, status=ZoneStatus.PENDING)
        .update(
            status=ZoneStatus.ACTIVE, verified_at=timezone.now(), last_checked_at=timezone.now(), last_check_error=""
        )
    )
    zone.refresh_from_db()
    if updated:
        audit_record(
            organisation=zone.organisation,
            actor=actor,
            action=AuditAction.UPDATE,
            resource_type="zone",
            resource_id=zone.id,
            resource_name=zone.name,
            changes={"status": [ZoneStatus.PENDING, ZoneStatus.ACTIVE]},
        )
    return zone


@transaction.atomic
def zone_delete(*, zone: Zone, actor: Actor) -> None:
    audit_record(
        organisation=zone.organisation,
        actor=actor,
        action=AuditAction.DELETE,
        resource_type="zone",
        resource_id=zone.id,
        resource_name=zone.name,
        changes={"name": [zone.name, None], "status": [zone.status, None]},
    )
    zone.delete()
