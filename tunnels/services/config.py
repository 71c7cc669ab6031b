"""Writes on a tunnel's configuration: validate it, save it whole or one public hostname at a time, and keep the
DNS routes of its public hostnames in step. Each takes `actor`, writes its audit events in the same transaction,
and publishes its event to the hubs after commit."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q

from controlplane.actors import Actor
from controlplane.choices import AuditAction, ZoneStatus
from controlplane.models import AuditEvent, DnsRecord, Organisation, Zone
from controlplane.prepared import PreparedInsert, PreparedQuery, PreparedUpdate
from controlplane.services.audit import audit_event, audit_record, audit_records, diff
from controlplane.services.dns import DeleteSummary, dns_records_delete
from controlplane.validators import reserved_by_installation
from tunnels import events
from tunnels.dns import MANAGED_BY_TUNNEL
from tunnels.models import Tunnel, TunnelConfiguration


def _ingress_module():
    from connector import ingress

    return ingress


def validate_tunnel_config(config: Any) -> dict[str, Any]:
    ingress = _ingress_module()
    if not isinstance(config, dict):
        raise ValidationError({"config": "Must be an object with an “ingress” list."})
    check_config_limits(config)
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


# Limits of one tunnel's configuration (docs/tunnels.md, "Limits"; docs/security.md). Cloudflare allows 1,000 hostname
# routes per account; the encoded configuration must also fit one CONFIG frame (connector/protocol.py MAX_FRAME_SIZE).
MAX_INGRESS_RULES = 1000
MAX_CONFIG_BYTES = 512 * 1024


def check_config_limits(config: dict[str, Any]) -> None:
    """Refuse a configuration too large to validate, store and push quickly, before any other work on it."""
    rules = config.get("ingress")
    if isinstance(rules, (list, tuple)) and len(rules) > MAX_INGRESS_RULES:
        raise ValidationError(
            {
                "config.ingress": f"A tunnel has at most {MAX_INGRESS_RULES:,} ingress rules; this configuration has "
                f"{len(rules):,}. Spread the hostnames over several tunnels, or use a wildcard hostname."
            }
        )
    try:
        size = len(json.dumps(config, separators=(",", ":"), ensure_ascii=False).encode())
    except (TypeError, ValueError):
        raise ValidationError({"config": "The configuration must be plain JSON."}) from None
    if size > MAX_CONFIG_BYTES:
        raise ValidationError(
            {"config": f"The configuration is {size:,} bytes once encoded; a tunnel's is at most {MAX_CONFIG_BYTES:,}."}
        )


def _zone_for(zones_by_name: dict[str, Zone], hostname: str) -> Zone | None:
    """The most specific zone covering `hostname`: a dict lookup per label, whatever the number of zones."""
    labels = (hostname[2:] if hostname.startswith("*.") else hostname).split(".")
    for start in range(len(labels)):
        zone = zones_by_name.get(".".join(labels[start:]))
        if zone is not None:
            return zone
    return None


# The reads of a configuration write, compiled once per process (controlplane/prepared.py): building and compiling
# them was most of the write's cost (issue 13).
_ACTIVE_ZONES = PreparedQuery(
    lambda organisation: Zone.objects.for_org(organisation).filter(status=ZoneStatus.ACTIVE),
    organisation=Organisation,
)
_LIVE_ZONES = PreparedQuery(
    lambda organisation, ids: Zone.objects.for_org(organisation).filter(pk__in=ids, status=ZoneStatus.ACTIVE),
    organisation=Organisation,
    ids=[uuid.UUID],
)
_DNS_COLUMNS = ("pk", "name", "type", "content", "managed_by", "managed_by_id")
_DNS_ROWS = PreparedQuery(
    lambda organisation, tunnel, names: (
        DnsRecord.objects.for_org(organisation)
        .filter(Q(name__in=names) | Q(managed_by=MANAGED_BY_TUNNEL, managed_by_id=tunnel))
        .order_by()
        .values_list(*_DNS_COLUMNS)
    ),
    organisation=Organisation,
    tunnel=uuid.UUID,
    names=[str],
)
# The tunnel re-read under lock by a configuration write, its configuration deferred (read again only when someone
# saved meanwhile).
_TUNNEL_LOCKED = PreparedQuery(
    lambda organisation, pk: (
        Tunnel.objects.for_org(organisation).select_for_update().defer("config").filter(pk=pk).order_by()[:1]
    ),
    organisation=Organisation,
    pk=uuid.UUID,
)

# Its writes: the tunnel's new version and the version's row, compiled once too.
_SAVE_CONFIG = PreparedUpdate(
    lambda organisation, pk: Tunnel.objects.for_org(organisation).filter(pk=pk),
    fields=("config_version", "config", "updated_at"),
    organisation=Organisation,
    pk=uuid.UUID,
)
_INSERT_CONFIGURATION = PreparedInsert(TunnelConfiguration)


def _place_hostnames(organisation: Organisation, hostnames: set[str]) -> dict[str, Zone]:
    """Each hostname's zone (one query), refusing one outside the account's active zones. Runs before the write
    transaction: it only reads, and what it read is checked again in `_sync_dns_routes`. No hostname: no query."""
    if not hostnames:
        return {}
    zones = {z.name: z for z in _ACTIVE_ZONES.rows(organisation=organisation)}
    placed: dict[str, Zone] = {}
    for hostname in sorted(hostnames):
        zone = _zone_for(zones, hostname)
        if zone is None:
            names = ", ".join(sorted(zones)) or "none yet"
            raise ValidationError(
                {
                    "config.ingress": f"{hostname} is not under one of this account's active zones ({names}). "
                    "Add and verify its zone first."
                }
            )
        reserved = reserved_by_installation(hostname.removeprefix("*."))
        if reserved:
            raise ValidationError({"config.ingress": reserved})
        placed[hostname] = zone
    return placed


@dataclass
class _DnsPlan:
    """The DNS writes that route exactly a configuration's hostnames, worked out from the rows in `seen`."""

    seen: set[Any]
    new: list[DnsRecord] = field(default_factory=list)
    adopted: list[uuid.UUID] = field(default_factory=list)
    stale: list[uuid.UUID] = field(default_factory=list)
    audits: list[AuditEvent] = field(default_factory=list)


# (pk, name, type, content, id of the tunnel managing it or None) of a DNS record: plain tuples, cheap to compare.
_DnsRow = tuple[uuid.UUID, str, str, str, "uuid.UUID | None"]


_ROUTE_RECORDS = PreparedQuery(
    lambda organisation, tunnel: DnsRecord.objects.for_org(organisation).filter(
        managed_by=MANAGED_BY_TUNNEL, managed_by_id=tunnel
    ),
    organisation=Organisation,
    tunnel=uuid.UUID,
)


def tunnel_routes(tunnel: Tunnel) -> list[DnsRecord]:
    """The DNS records this tunnel manages (the CNAMEs of its public hostnames), read by a query compiled once per
    process."""
    return _ROUTE_RECORDS.rows(organisation=tunnel.organisation, tunnel=tunnel.pk)


def _dns_rows(tunnel: Tunnel, names: list[str]) -> set[_DnsRow]:
    """The records a sync depends on: those with the hostnames' names and those routed to the tunnel."""
    rows = _DNS_ROWS.rows(organisation=tunnel.organisation, tunnel=tunnel.pk, names=names)
    return {
        (pk, name, type_, content, by_id if by == MANAGED_BY_TUNNEL else None)
        for pk, name, type_, content, by, by_id in rows
    }


def _plan_dns_routes(
    tunnel: Tunnel, placed: dict[str, Zone], actor: Actor, seen: set[_DnsRow] | None = None
) -> _DnsPlan:
    """CNAMEs <hostname> → <tunnel>.<TUNNEL_DOMAIN> for exactly the `placed` hostnames, refusing a hostname that
    another record (or another tunnel's route) already uses. One query whatever the number of hostnames (one per
    record made 2,000 hostnames take a minute, holding the write lock); none when given the rows (`seen`)."""
    organisation = tunnel.organisation
    plan = _DnsPlan(seen=_dns_rows(tunnel, list(placed)) if seen is None else seen)
    by_name: dict[str, list[_DnsRow]] = {}
    for row in plan.seen:
        by_name.setdefault(row[1], []).append(row)
    target = tunnel.cname_target
    for hostname, zone in placed.items():
        found = by_name.get(hostname, [])
        if not found:
            plan.new.append(
                DnsRecord(
                    organisation=organisation,
                    zone=zone,
                    type="CNAME",
                    name=hostname,
                    content=target,
                    proxied=True,
                    comment=f"Route to tunnel {tunnel.name}"[:500],
                    managed_by=MANAGED_BY_TUNNEL,
                    managed_by_id=tunnel.pk,
                )
            )
        elif len(found) == 1 and found[0][2] == "CNAME" and found[0][3] == target:
            if found[0][4] != tunnel.pk:
                plan.adopted.append(found[0][0])
        else:
            _pk, _name, type_, content, other_tunnel = next(
                (row for row in found if row[4] and row[4] != tunnel.pk), found[0]
            )
            other_name = (
                Tunnel.objects.for_org(organisation).filter(pk=other_tunnel).values_list("name", flat=True).first()
                if other_tunnel
                else None
            )
            owner = f"tunnel “{other_name}”" if other_name else f"a {type_} record to {content}"
            raise ValidationError({"config.ingress": f"{hostname} already routes to {owner}. Remove that first."})
    stale = sorted((row[1], row[0], row[3]) for row in plan.seen if row[4] == tunnel.pk and row[1] not in placed)
    plan.stale = [pk for _name, pk, _content in stale]
    # One audit event per kind of change, naming every record: a configuration of 1,000 hostnames wrote 2,000
    # events (most of its write transaction), where the configuration's own event lists each rule anyway.
    if plan.new:
        plan.audits.append(
            _routes_audit(
                tunnel,
                actor,
                AuditAction.CREATE,
                [r.name for r in plan.new],
                {r.name: [None, f"CNAME {target}"] for r in plan.new},
            )
        )
    return plan


def _routes_name(tunnel: Tunnel, names: list[str]) -> str:
    return f"{names[0]} CNAME" if len(names) == 1 else f"{len(names):,} CNAMEs of tunnel {tunnel.name}"


def _routes_audit(tunnel: Tunnel, actor: Actor, action: str, names: list[str], changes: dict) -> AuditEvent:
    return audit_event(
        organisation=tunnel.organisation,
        actor=actor,
        action=action,
        resource_type="dns_record",
        resource_id=tunnel.id,
        resource_name=_routes_name(tunnel, names),
        changes=changes,
    )


def _sync_dns_routes(tunnel: Tunnel, placed: dict[str, Zone], plan: _DnsPlan | None, actor: Actor) -> None:
    """Apply `plan` (made before the write transaction), or a fresh one when the rows it was made from changed
    meanwhile or there is none (no hostname: the tunnel's routes, read here, are all there is to plan from).
    Inside the transaction: two queries to check (one without hostnames), then bulk writes."""
    organisation = tunnel.organisation
    if placed:
        zone_ids = sorted({z.pk for z in placed.values()})
        live = _LIVE_ZONES.bind(organisation=organisation, ids=zone_ids).count()
        if live != len(zone_ids):
            raise ValidationError({"config.ingress": "A zone of this configuration's hostnames is no longer active."})
    seen = _dns_rows(tunnel, list(placed))
    if plan is None or seen != plan.seen:
        plan = _plan_dns_routes(tunnel, placed, actor, seen)
    if plan.new:
        DnsRecord.objects.bulk_create(plan.new)
    if plan.adopted:
        DnsRecord.objects.for_org(organisation).filter(pk__in=plan.adopted).update(
            managed_by=MANAGED_BY_TUNNEL, managed_by_id=tunnel.pk
        )
    if plan.audits:
        audit_records(plan.audits)
    if plan.stale:
        # The core's one way to delete records and audit it, summarised: one event naming every dropped route.
        stale = sorted(
            DnsRecord.objects.for_org(organisation).filter(pk__in=plan.stale), key=lambda record: record.name
        )
        summary = DeleteSummary(tunnel.id, _routes_name(tunnel, [record.name for record in stale]))
        dns_records_delete(records=stale, actor=actor, summary=summary, announce=False)
    if plan.new or plan.adopted or plan.stale:  # the edges' route table is made of these records alone
        events.routes_changed(organisation_id=organisation.pk)


def tunnel_config_update(
    *, tunnel: Tunnel, config: Any, actor: Actor, expected_version: int | None = None
) -> TunnelConfiguration:
    """Replace the configuration: validate as cloudflared does, route its public hostnames (DNS), bump the
    version and push it to every connected connector after commit. With `expected_version`, refuse if the
    configuration changed meanwhile.

    The work that grows with the configuration (validation, placing hostnames in zones) runs before the write
    transaction, which then takes a constant number of queries: with SQLite a transaction holds the one write lock
    for every tenant from its first statement.

    The diff of the audit event starts from `tunnel` as the caller read it (its configuration and version, as a view
    has just read them: no second read); when the locked re-read finds another version (saved meanwhile, or a
    `tunnel` read long ago), the diff is made again from the saved configuration."""
    normalised = validate_tunnel_config(config)
    hostnames = {host for host, _path in _ingress_module().public_hostnames(normalised) if host}
    placed = _place_hostnames(tunnel.organisation, hostnames)
    # Without a hostname there is nothing to plan ahead: the transaction reads the tunnel's routes (to drop) once.
    plan = _plan_dns_routes(tunnel, placed, actor) if placed else None
    if tunnel._state.adding or tunnel.get_deferred_fields() & {"config", "config_version"}:
        read_version, previous = (
            Tunnel.objects.for_org(tunnel.organisation).values_list("config_version", "config").get(pk=tunnel.pk)
        )
    else:
        read_version, previous = tunnel.config_version, tunnel.config
    changes = config_diff(previous, normalised)
    with transaction.atomic():
        tunnel = locked_tunnel(tunnel)
        if tunnel.deleted_at is not None:
            raise ValidationError("This tunnel is deleted.")
        _check_version(tunnel, expected_version)
        _sync_dns_routes(tunnel, placed, plan, actor)
        if tunnel.config_version != read_version:  # saved meanwhile: the diff is against that version
            changes = config_diff(Tunnel.objects.for_org(tunnel.organisation).get(pk=tunnel.pk).config, normalised)
        tunnel.config_version += 1
        tunnel.config = normalised
        _SAVE_CONFIG.save(tunnel, organisation=tunnel.organisation, pk=tunnel.pk)
        configuration = TunnelConfiguration(
            organisation=tunnel.organisation,
            tunnel=tunnel,
            version=tunnel.config_version,
            config=normalised,
            created_by_email=actor.user.email if actor.user else actor.display,
        )
        _INSERT_CONFIGURATION.save(configuration, organisation=tunnel.organisation)
        audit_record(
            organisation=tunnel.organisation,
            actor=actor,
            action=AuditAction.UPDATE,
            resource_type="tunnel_configuration",
            resource_id=tunnel.id,
            resource_name=tunnel.name,
            changes={
                "version": [tunnel.config_version - 1, tunnel.config_version],
                **changes,
            },
        )
        events.config_changed(
            organisation_id=tunnel.organisation_id, tunnel_id=tunnel.pk, version=tunnel.config_version
        )
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


def locked_tunnel(tunnel: Tunnel) -> Tunnel:
    """The tunnel read again under lock, inside the caller's transaction (FOR UPDATE on PostgreSQL; on SQLite the
    IMMEDIATE transaction holds the database's write lock from BEGIN), its configuration deferred (read on access).
    Tunnel.DoesNotExist if it is gone."""
    locked = _TUNNEL_LOCKED.first(organisation=tunnel.organisation, pk=tunnel.pk)
    if locked is None:
        raise Tunnel.DoesNotExist("Tunnel matching query does not exist.")
    return locked


def _check_version(tunnel: Tunnel, expected_version: int | None) -> None:
    if expected_version is not None and expected_version != tunnel.config_version:
        raise ValidationError(
            {
                "version": f"The configuration is at version {tunnel.config_version}, not {expected_version}: someone "
                "changed it since you read it. Read it again and retry."
            }
        )


def _edit_rules(
    tunnel: Tunnel, actor: Actor, expected_version: int | None, edit: Callable[[list[dict[str, Any]]], None]
) -> TunnelConfiguration:
    """Apply `edit` to the public hostname rules of the current configuration and save it. The configuration is
    read outside the write transaction and saved only if still at the version read: when someone saved meanwhile
    (and the caller named no version of its own), the edit is applied again to the newer one."""
    for attempt in range(3):
        current = Tunnel.objects.for_org(tunnel.organisation).get(pk=tunnel.pk)
        _check_version(current, expected_version)
        rules, catch_all = _rules_with_catch_all(current.config or {})
        edit(rules)
        config = {**(current.config or {}), "ingress": [*rules, catch_all]}
        try:
            return tunnel_config_update(
                tunnel=current, config=config, actor=actor, expected_version=current.config_version
            )
        except ValidationError as exc:
            raced = expected_version is None and "version" in getattr(exc, "error_dict", {})
            if not raced or attempt == 2:
                raise
    raise AssertionError("unreachable")


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

    def edit(rules: list[dict[str, Any]]) -> None:
        if index is None:
            rules.append(rule)
        elif not 0 <= index < len(rules):
            raise ValidationError({"index": "No such public hostname."})
        else:
            rules[index] = rule

    return _edit_rules(tunnel, actor, expected_version, edit)


def public_hostname_delete(
    *, tunnel: Tunnel, actor: Actor, index: int, expected_version: int | None = None
) -> TunnelConfiguration:
    def edit(rules: list[dict[str, Any]]) -> None:
        if not 0 <= index < len(rules):
            raise ValidationError({"index": "No such public hostname."})
        del rules[index]

    return _edit_rules(tunnel, actor, expected_version, edit)
