"""Batched database writes for connector connections.

A reconnect storm opens thousands of connections a second; writing each one in its own transaction would make
the database the bottleneck. The hub queues opens, closes and config acks here, and one flush every
FLUSH_INTERVAL writes them all in one transaction (bulk inserts, grouped updates), then reports which tunnels
changed so their status can be pushed."""

from __future__ import annotations

import datetime
import itertools
import logging
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

from django.db import InterfaceError, OperationalError, close_old_connections, transaction
from django.db.models import Count, Q
from django.utils import timezone

from connector import protocol
from controlplane.actors import Actor
from controlplane.choices import AuditAction, Interface
from controlplane.models import AuditEvent
from controlplane.services.audit import audit_event, audit_records
from tunnels.models import Connection, Connector, ServerInstance, Tunnel

logger = logging.getLogger("tunnels.ledger")


@dataclass
class ConnOpen:
    connection_id: uuid.UUID
    organisation_id: uuid.UUID
    tunnel_id: uuid.UUID
    connector_id: uuid.UUID
    conn_index: int
    expected_connections: int
    version: str
    arch: str
    platform: str
    hostname: str
    local_ip: str
    origin_ip: str
    features: list[str]
    config_version: int
    opened_at: datetime.datetime


@dataclass
class ConnClose:
    connection_id: uuid.UUID
    organisation_id: uuid.UUID
    tunnel_id: uuid.UUID
    connector_id: uuid.UUID
    reason: str
    closed_at: datetime.datetime


@dataclass
class ConfigAck:
    organisation_id: uuid.UUID
    tunnel_id: uuid.UUID
    connector_id: uuid.UUID
    version: int
    error: str


@dataclass
class Batch:
    opens: list[ConnOpen] = field(default_factory=list)
    closes: list[ConnClose] = field(default_factory=list)
    acks: list[ConfigAck] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.opens or self.closes or self.acks)


def _audit(org_id: uuid.UUID, action: str, tunnel_id: uuid.UUID, name: str, changes: dict) -> AuditEvent:
    return audit_event(
        organisation_id=org_id,
        actor=Actor(interface=Interface.CONNECTOR, label=name),
        action=action,
        resource_type="connector",
        resource_id=tunnel_id,
        resource_name=name,
        changes=changes,
    )


# A batch mixes every tenant's rows: one row that cannot be written must never cost the others theirs.
TRANSIENT_RETRIES = 3  # a locked or briefly unreachable database: the whole batch again, after 0.1, 0.2, 0.4 s
TRANSIENT_ERRORS = (OperationalError, InterfaceError)

Item = ConnOpen | ConnClose | ConfigAck


@dataclass
class Flushed:
    """What a flush did: the (organisation_id, tunnel_id) pairs whose live state changed; the rows skipped because
    they cannot be written (logged); and, when the database stayed unavailable, the rows still to write (the hub
    queues them again: state is never dropped)."""

    changed: set[tuple[uuid.UUID, uuid.UUID]] = field(default_factory=set)
    skipped: list[Item] = field(default_factory=list)
    pending: Batch = field(default_factory=Batch)


def _items(batch: Batch) -> list[Item]:
    return [*batch.opens, *batch.closes, *batch.acks]  # the order _flush applies them in


def _batch_of(items: list[Item]) -> Batch:
    batch = Batch()
    for item in items:
        (
            batch.opens if isinstance(item, ConnOpen) else batch.closes if isinstance(item, ConnClose) else batch.acks
        ).append(item)
    return batch


def flush(batch: Batch, server_id: str) -> Flushed:
    """Write the batch in one transaction. If that fails, a transient database error is retried; any other error
    is isolated by bisecting the batch (each half in its own transaction, in order) down to the rows that fail,
    which are logged and skipped while every other row is written."""
    close_old_connections()
    result = Flushed()
    items = _items(batch)
    try:
        for attempt in range(TRANSIENT_RETRIES + 1):
            try:
                with transaction.atomic():
                    result.changed = _flush(batch, server_id)
                return result
            except TRANSIENT_ERRORS:
                if attempt == TRANSIENT_RETRIES:
                    logger.warning(
                        "the database is unavailable: %d connection rows wait for the next flush", len(items)
                    )
                    result.pending = batch
                    return result
                close_old_connections()
                time.sleep(0.1 * 2**attempt)
            except Exception:
                logger.warning(
                    "a batch of %d connection rows failed; isolating the failing rows", len(items), exc_info=True
                )
                break
        done = _bisect(items, server_id, result)
        if done < len(items):
            result.pending = _batch_of(items[done:])
        return result
    finally:
        close_old_connections()


class _Unavailable(Exception):
    pass


def _bisect(items: list[Item], server_id: str, result: Flushed) -> int:
    """Write `items` in order, halving around failures; return how many were written or skipped (a prefix: the
    rest wait when the database becomes unavailable meanwhile)."""
    done = 0

    def write(part: list[Item]) -> None:
        nonlocal done
        try:
            with transaction.atomic():
                result.changed |= _flush(_batch_of(part), server_id)
        except TRANSIENT_ERRORS:
            raise _Unavailable from None
        except Exception:
            if len(part) == 1:
                logger.exception("skipped a connection row that cannot be written: %r", part[0])
                result.skipped.append(part[0])
            else:
                middle = len(part) // 2
                write(part[:middle])
                write(part[middle:])
                return
        done += len(part)

    try:
        write(items)
    except _Unavailable:
        close_old_connections()
    return done


def repair_open_connections(
    server_id: str, live: set[uuid.UUID], closing: set[uuid.UUID]
) -> set[tuple[uuid.UUID, uuid.UUID]]:
    """Close the rows this instance left open for connections it no longer holds (`live`: its sessions; `closing`:
    closes still queued), e.g. after a close could not be written: the hub's live view is the truth."""
    close_old_connections()
    rows = list(
        Connection.objects.unscoped("repairing this instance's connection rows from its live sessions")
        .filter(server_id=server_id, closed_at__isnull=True)
        .values_list("pk", "organisation_id", "tunnel_id", "connector__connector_id")
    )
    now = timezone.now()
    stale = [
        ConnClose(
            connection_id=pk,
            organisation_id=org,
            tunnel_id=tunnel,
            connector_id=connector,
            reason="closed (the connection was no longer held by its server)",
            closed_at=now,
        )
        for pk, org, tunnel, connector in rows
        if pk not in live and pk not in closing
    ]
    if not stale:
        return set()
    logger.warning("repairing %d connection rows left open by %s", len(stale), server_id)
    return flush(Batch(closes=stale), server_id).changed


def _flush(batch: Batch, server_id: str) -> set[tuple[uuid.UUID, uuid.UUID]]:
    now = timezone.now()
    changed: set[tuple[uuid.UUID, uuid.UUID]] = set()
    orgs = (
        {o.organisation_id for o in batch.opens}
        | {c.organisation_id for c in batch.closes}
        | {a.organisation_id for a in batch.acks}
    )
    audits: list[AuditEvent] = []

    # Connectors: one row per (tunnel, connector run); created on their first connection.
    wanted = {(o.tunnel_id, o.connector_id): o for o in batch.opens}
    connector_pk: dict[tuple[uuid.UUID, uuid.UUID], int] = {}
    if wanted:
        existing = Connector.objects.filter(
            organisation_id__in=orgs,
            tunnel_id__in={k[0] for k in wanted},
            connector_id__in={k[1] for k in wanted},
        )
        for connector in existing:
            connector_pk[(connector.tunnel_id, connector.connector_id)] = connector.pk
        new = [
            Connector(
                organisation_id=o.organisation_id,
                tunnel_id=o.tunnel_id,
                connector_id=o.connector_id,
                version=o.version[:64],
                arch=o.arch[:64],
                platform=o.platform[:128],
                hostname=o.hostname[:255],
                local_ip=o.local_ip[:64],
                origin_ip=o.origin_ip[:64],
                features=o.features,
                expected_connections=o.expected_connections,
                config_version=o.config_version,
                run_at=o.opened_at,
                last_seen_at=now,
            )
            for key, o in wanted.items()
            if key not in connector_pk
        ]
        if new:
            Connector.objects.bulk_create(new)
            for connector in Connector.objects.filter(
                organisation_id__in=orgs,
                tunnel_id__in={c.tunnel_id for c in new},
                connector_id__in={c.connector_id for c in new},
            ):
                connector_pk[(connector.tunnel_id, connector.connector_id)] = connector.pk
            for c in new:
                audits.append(
                    _audit(
                        c.organisation_id,
                        AuditAction.REGISTER,
                        c.tunnel_id,
                        f"connector {c.connector_id}",
                        {
                            "version": [None, c.version],
                            "arch": [None, c.arch],
                            "origin_ip": [None, c.origin_ip],
                            "hostname": [None, c.hostname],
                        },
                    )
                )
        reconnected = [pk for key, pk in connector_pk.items() if key in wanted]
        Connector.objects.filter(organisation_id__in=orgs, pk__in=reconnected).update(
            last_seen_at=now, disconnected_at=None
        )
        Connection.objects.bulk_create(
            [
                Connection(
                    id=o.connection_id,
                    organisation_id=o.organisation_id,
                    tunnel_id=o.tunnel_id,
                    connector_id=connector_pk[(o.tunnel_id, o.connector_id)],
                    conn_index=o.conn_index,
                    origin_ip=o.origin_ip[:64],
                    server_id=server_id,
                    opened_at=o.opened_at,
                )
                for o in batch.opens
            ]
        )
        changed |= {(o.organisation_id, o.tunnel_id) for o in batch.opens}

    if batch.closes:
        by_reason: dict[tuple[str, datetime.datetime], list[uuid.UUID]] = defaultdict(list)
        for c in batch.closes:
            by_reason[(c.reason[:300], c.closed_at)].append(c.connection_id)
        for (reason, closed_at), ids in by_reason.items():
            Connection.objects.filter(organisation_id__in=orgs, pk__in=ids, closed_at__isnull=True).update(
                closed_at=closed_at, close_reason=reason
            )
        changed |= {(c.organisation_id, c.tunnel_id) for c in batch.closes}

    # A push to a tunnel's 1,000 connections is acked 1,000 times within a flush: one UPDATE per run of acks with
    # the same (tunnel, version, outcome) instead of one per ack. Only consecutive acks are merged, so the rows
    # end up exactly as if the acks were applied one by one, in order.
    def ack_key(ack: ConfigAck) -> tuple[uuid.UUID, uuid.UUID, int, str]:
        return (ack.organisation_id, ack.tunnel_id, ack.version, ack.error)

    for (org_id, tunnel_id, version, error), run in itertools.groupby(batch.acks, key=ack_key):
        connectors = Connector.objects.filter(
            organisation_id=org_id, tunnel_id=tunnel_id, connector_id__in={ack.connector_id for ack in run}
        )
        if error:
            connectors.update(config_error=f"version {version}: {error}"[:1000])
        else:
            connectors.filter(config_version__lte=version).update(config_version=version, config_error="")
        changed.add((org_id, tunnel_id))

    if batch.closes:
        audits.extend(_mark_stopped_connectors(orgs, {c.connector_id for c in batch.closes}, now))
    _update_tunnel_activity(orgs, {t for _, t in changed}, now)
    if audits:
        audit_records(audits)
    return changed


def _mark_stopped_connectors(orgs: set[uuid.UUID], connector_ids: set[uuid.UUID], now) -> list[AuditEvent]:
    """Connectors whose last connection just closed are no longer running: say so once."""
    stopped = (
        Connector.objects.filter(organisation_id__in=orgs, connector_id__in=connector_ids, disconnected_at__isnull=True)
        .annotate(live=Count("connections", filter=Q(connections__closed_at__isnull=True)))
        .filter(live=0)
    )
    audits = []
    pks = []
    for connector in stopped:
        pks.append(connector.pk)
        audits.append(
            _audit(
                connector.organisation_id,
                AuditAction.UNREGISTER,
                connector.tunnel_id,
                f"connector {connector.connector_id}",
                {"status": ["connected", "disconnected"]},
            )
        )
    if pks:
        Connector.objects.filter(organisation_id__in=orgs, pk__in=pks).update(disconnected_at=now)
    return audits


def _update_tunnel_activity(orgs: set[uuid.UUID], tunnel_ids: set[uuid.UUID], now) -> None:
    """conns_active_at / conns_inactive_at as Cloudflare keeps them: when the tunnel last gained its first live
    connection, and when it last lost its last one."""
    if not tunnel_ids:
        return
    tunnels = Tunnel.objects.filter(organisation_id__in=orgs, pk__in=tunnel_ids).annotate(
        live=Count("connections", filter=Q(connections__closed_at__isnull=True))
    )
    for tunnel in tunnels:
        if tunnel.live and (tunnel.conns_active_at is None or tunnel.conns_inactive_at is not None):
            Tunnel.objects.filter(organisation_id=tunnel.organisation_id, pk=tunnel.pk).update(
                conns_active_at=now, conns_inactive_at=None
            )
        elif not tunnel.live and tunnel.conns_active_at is not None and tunnel.conns_inactive_at is None:
            Tunnel.objects.filter(organisation_id=tunnel.organisation_id, pk=tunnel.pk).update(conns_inactive_at=now)


def heartbeat_instance(server_id: str, hostname: str, pid: int, started_at, peer_url: str = "") -> None:
    close_old_connections()
    now = timezone.now()
    ServerInstance.objects.update_or_create(
        server_id=server_id,
        defaults={
            "hostname": hostname,
            "pid": pid,
            "started_at": started_at,
            "last_seen_at": now,
            "stopped_at": None,
            "peer_url": peer_url[:255],
        },
    )


def load_peer_holdings(
    server_id: str, deadline: datetime.timedelta
) -> tuple[dict[str, str], dict[uuid.UUID, set[str]]]:
    """For cross-instance forwarding (dataplane/peers.py): the other live instances that advertise a peer address, and
    for each tunnel the ones among them holding an open connection of a connector that carries streams."""
    close_old_connections()
    now = timezone.now()
    urls = dict(
        ServerInstance.objects.filter(last_seen_at__gte=now - deadline, stopped_at__isnull=True)
        .exclude(server_id=server_id)
        .exclude(peer_url="")
        .values_list("server_id", "peer_url")
    )
    holders: dict[uuid.UUID, set[str]] = {}
    if urls:
        rows = (
            Connection.objects.unscoped("the edge forwards to whichever instance holds a tunnel's connections")
            .filter(closed_at__isnull=True, server_id__in=list(urls))
            .order_by()
            .values_list("tunnel_id", "server_id", "connector__features")
            .distinct()
        )
        for tunnel_id, server, features in rows:
            if isinstance(features, list) and protocol.FEATURE_STREAMS in features:
                holders.setdefault(tunnel_id, set()).add(server)
    return urls, holders


def reconcile_lost_instances(server_id: str, deadline: datetime.timedelta, *, all_others: bool = False):
    """Close connections held by server instances that stopped heartbeating (or, in single-process mode, by any
    other instance), so a crashed server never leaves a tunnel looking healthy. Returns changed (org, tunnel)."""
    close_old_connections()
    now = timezone.now()
    with transaction.atomic():
        alive = set(
            ServerInstance.objects.filter(last_seen_at__gte=now - deadline, stopped_at__isnull=True).values_list(
                "server_id", flat=True
            )
        )
        alive.add(server_id)
        if all_others:
            alive = {server_id}
        lost = (
            Connection.objects.unscoped("reconciling connections of lost server instances")
            .filter(closed_at__isnull=True)
            .exclude(server_id__in=alive)
        )
        rows = list(lost.values_list("pk", "organisation_id", "tunnel_id", "connector__connector_id", "server_id"))
        if not rows:
            return set()
        batch = Batch(
            closes=[
                ConnClose(
                    connection_id=pk,
                    organisation_id=org,
                    tunnel_id=tunnel,
                    connector_id=connector,
                    reason=f"server instance {server} stopped responding",
                    closed_at=now,
                )
                for pk, org, tunnel, connector, server in rows
            ]
        )
        return _flush(batch, server_id)


def mark_instance_stopped(server_id: str) -> None:
    close_old_connections()
    ServerInstance.objects.filter(server_id=server_id).update(stopped_at=timezone.now())
