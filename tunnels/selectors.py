"""Reads of tunnels and their live state. Each selector owns its queries; lists run a constant number."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from django.db.models import Max, QuerySet

from controlplane.errors import NotFound
from controlplane.models import DnsRecord, Organisation
from controlplane.prepared import BoundQuery, PreparedQuery
from tunnels.choices import TunnelStatus
from tunnels.dns import MANAGED_BY_TUNNEL
from tunnels.logic.status import (
    ConnectionView,
    ConnectorHealth,
    ConnectorView,
    TunnelHealth,
    compute_health,
    unconnected_health,
)
from tunnels.models import Connection, Connector, OriginError, Tunnel, TunnelConfiguration


def tunnel_list(*, organisation: Organisation, is_deleted: bool | None = False) -> QuerySet[Tunnel]:
    qs = Tunnel.objects.for_org(organisation)
    if is_deleted is True:
        qs = qs.filter(deleted_at__isnull=False)
    elif is_deleted is False:
        qs = qs.filter(deleted_at__isnull=True)
    return qs.order_by("-created_at")


class ListedTunnel(NamedTuple):
    """A tunnel as the lists show it (tunnels/api/serializers.py, tunnel_data, its health, the UI's list), read as a
    tuple: not its configuration (a JSON document to decode per row) nor its encrypted secret. Read by the same
    attribute names as a model instance, and cheaper to build (~28,000 instructions a row less, issue 13)."""

    id: uuid.UUID
    organisation_id: uuid.UUID
    name: str
    config_src: str
    config_version: int
    created_at: datetime.datetime
    deleted_at: datetime.datetime | None
    conns_active_at: datetime.datetime | None
    conns_inactive_at: datetime.datetime | None

    @property
    def pk(self) -> uuid.UUID:
        return self.id


LISTED_FIELDS = ListedTunnel._fields

# tunnel_list without further filters, compiled once per process (controlplane/prepared.py), by `is_deleted`.
_TUNNEL_LISTS = {
    is_deleted: PreparedQuery(
        lambda organisation, is_deleted=is_deleted: tunnel_list(
            organisation=organisation, is_deleted=is_deleted
        ).values_list(*LISTED_FIELDS),
        row_class=ListedTunnel,
        organisation=Organisation,
    )
    for is_deleted in (False, True, None)
}


def tunnel_list_pages(*, organisation: Organisation, is_deleted: bool | None = False) -> BoundQuery:
    """What `tunnel_list` reads, for a paginator: `count()` and one page by a slice (of ListedTunnel rows), without
    building the queries again on every request (the API's unfiltered list, the UI's list)."""
    return _TUNNEL_LISTS[is_deleted].bind(organisation=organisation)


# The public hostnames routed to each tunnel of a page (the DNS records the tunnel manages), compiled once per process
# and page length.
_TUNNEL_ROUTES = PreparedQuery(
    lambda organisation, ids: (
        DnsRecord.objects.for_org(organisation)
        .filter(managed_by=MANAGED_BY_TUNNEL, managed_by_id__in=ids)
        .order_by()
        .values_list("managed_by_id", "name")
    ),
    organisation=Organisation,
    ids=[uuid.UUID],
)


def tunnel_routes_map(
    *, organisation: Organisation, tunnels: Sequence[Tunnel | ListedTunnel]
) -> dict[uuid.UUID, list[str]]:
    """The names of the DNS records routed to each of `tunnels` (sorted; a tunnel with none is absent), in one
    query whatever the number of tunnels."""
    routes: dict[uuid.UUID, list[str]] = {}
    for tunnel_id, name in _TUNNEL_ROUTES.rows(organisation=organisation, ids=[t.id for t in tunnels]):
        routes.setdefault(tunnel_id, []).append(name)
    for names in routes.values():
        names.sort()
    return routes


# The API's hottest reads, compiled once per process (controlplane/prepared.py): one row by its key, no ORDER BY.
_TUNNEL_BY_ID = PreparedQuery(
    lambda organisation, pk: Tunnel.objects.for_org(organisation).filter(pk=pk, deleted_at__isnull=True).order_by()[:1],
    organisation=Organisation,
    pk=uuid.UUID,
)
_TUNNEL_BY_ID_WITH_DELETED = PreparedQuery(
    lambda organisation, pk: Tunnel.objects.for_org(organisation).filter(pk=pk).order_by()[:1],
    organisation=Organisation,
    pk=uuid.UUID,
)


def tunnel_get(*, organisation: Organisation, tunnel_id: object, include_deleted: bool = False) -> Tunnel:
    """The organisation's tunnel, or NotFound for a missing id, a malformed id and another tenant's tunnel alike."""
    try:
        pk = tunnel_id if isinstance(tunnel_id, uuid.UUID) else uuid.UUID(str(tunnel_id))
    except ValueError:
        raise NotFound("Tunnel not found.") from None
    query = _TUNNEL_BY_ID_WITH_DELETED if include_deleted else _TUNNEL_BY_ID
    tunnel = query.first(organisation=organisation, pk=pk)
    if tunnel is None:
        raise NotFound("Tunnel not found.")
    return tunnel


_CONFIGURATION_DATE = PreparedQuery(
    lambda organisation, tunnel, version: (
        TunnelConfiguration.objects.for_org(organisation)
        .filter(tunnel=tunnel, version=version)
        .order_by()
        .values_list("created_at", flat=True)[:1]
    ),
    organisation=Organisation,
    tunnel=Tunnel,
    version=int,
)


def tunnel_configuration_date(*, tunnel: Tunnel) -> datetime.datetime:
    """When the tunnel's current configuration version was saved (the tunnel's creation before any was)."""
    found = _CONFIGURATION_DATE.first(organisation=tunnel.organisation, tunnel=tunnel, version=tunnel.config_version)
    return found or tunnel.created_at


def _connector_view(connector: Connector) -> ConnectorView:
    return ConnectorView(
        connector_id=str(connector.connector_id),
        version=connector.version,
        arch=connector.arch,
        platform=connector.platform,
        hostname=connector.hostname,
        origin_ip=connector.origin_ip,
        expected_connections=connector.expected_connections,
        config_version=connector.config_version,
        config_error=connector.config_error,
        run_at=connector.run_at,
        features=tuple(connector.features or ()),
    )


# The columns tunnel_health_map reads, as tuples: with model instances, a status snapshot of a tunnel with 1,000 live
# connections built 2,000 of them (each connection's connector again) and cost ~105 ms of CPU; with tuples ~32 ms
# (bench/connectors, docs/benchmarks.md "The same-run yardstick").
_LIVE_COLUMNS = (
    "id",
    "tunnel_id",
    "connector_id",
    "conn_index",
    "origin_ip",
    "opened_at",
    "server_id",
    "connector__connector_id",
)
_CONNECTOR_COLUMNS = (
    "connector__version",
    "connector__arch",
    "connector__platform",
    "connector__hostname",
    "connector__origin_ip",
    "connector__expected_connections",
    "connector__config_version",
    "connector__config_error",
    "connector__run_at",
    "connector__features",
)
_CLOSED_COLUMNS = ("id", "tunnel_id", "connector_id", "conn_index", "origin_ip", "opened_at", "server_id", "closed_at")


_LIVE_CONNECTIONS = PreparedQuery(
    lambda organisation, ids: (
        Connection.objects.for_org(organisation)
        .filter(tunnel_id__in=ids, closed_at__isnull=True)
        .values_list(*_LIVE_COLUMNS, *_CONNECTOR_COLUMNS)
    ),
    organisation=Organisation,
    ids=[uuid.UUID],
)


class HealthOf(Protocol):
    """What the health of a tunnel is worked out from: a Tunnel or a ListedTunnel."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def config_version(self) -> int: ...
    @property
    def conns_active_at(self) -> datetime.datetime | None: ...


def tunnel_health_map(*, organisation: Organisation, tunnels: Sequence[HealthOf]) -> dict[uuid.UUID, TunnelHealth]:
    """Health of each tunnel (a Tunnel or a ListedTunnel), in three queries whatever the number of tunnels. Rows
    are read as tuples: the connector's columns come with its connections (one join), and each connector's view is
    built once. A tunnel without a live connection gets one of two shared answers (`unconnected_health`)."""
    live = _LIVE_CONNECTIONS.rows(organisation=organisation, ids=[t.id for t in tunnels])
    connectors: dict[int, ConnectorView] = {}  # by connector pk
    connector_tunnel: dict[int, uuid.UUID] = {}
    live_by_tunnel: dict[uuid.UUID, list[ConnectionView]] = {}
    for row in live:
        pk, tunnel_id, connector_pk, conn_index, origin_ip, opened_at, server_id, connector_uuid = row[:8]
        view = connectors.get(connector_pk)
        if view is None:
            version, arch, platform, hostname, c_origin_ip, expected, config_version, config_error, run_at, features = (
                row[8:]
            )
            view = connectors[connector_pk] = ConnectorView(
                connector_id=str(connector_uuid),
                version=version,
                arch=arch,
                platform=platform,
                hostname=hostname,
                origin_ip=c_origin_ip,
                expected_connections=expected,
                config_version=config_version,
                config_error=config_error,
                run_at=run_at,
                features=tuple(features or ()),
            )
            connector_tunnel[connector_pk] = tunnel_id
        live_by_tunnel.setdefault(tunnel_id, []).append(
            ConnectionView(
                id=str(pk),
                connector_id=view.connector_id,
                conn_index=conn_index,
                origin_ip=origin_ip,
                opened_at=opened_at,
                server_id=server_id,
            )
        )
    closed_by_tunnel: dict[uuid.UUID, list[ConnectionView]] = {}
    if connectors:
        newest = (
            Connection.objects.for_org(organisation)
            .filter(connector_id__in=list(connectors), closed_at__isnull=False)
            .values("connector_id", "conn_index")
            .annotate(latest=Max("closed_at"))
        )
        keys = {(row["connector_id"], row["conn_index"], row["latest"]) for row in newest}
        if keys:
            candidates = (
                Connection.objects.for_org(organisation)
                .filter(connector_id__in={k[0] for k in keys}, closed_at__in={k[2] for k in keys})
                .values_list(*_CLOSED_COLUMNS, "close_reason")
            )
            for row in candidates:
                pk, tunnel_id, connector_pk, conn_index, origin_ip, opened_at, server_id, closed_at, reason = row
                if (connector_pk, conn_index, closed_at) not in keys:
                    continue
                closed_by_tunnel.setdefault(tunnel_id, []).append(
                    ConnectionView(
                        id=str(pk),
                        connector_id=connectors[connector_pk].connector_id,
                        conn_index=conn_index,
                        origin_ip=origin_ip,
                        opened_at=opened_at,
                        server_id=server_id,
                        closed_at=closed_at,
                        close_reason=reason,
                    )
                )
    connectors_by_tunnel: dict[uuid.UUID, list[ConnectorView]] = {}
    for connector_pk, view in connectors.items():
        connectors_by_tunnel.setdefault(connector_tunnel[connector_pk], []).append(view)
    healths = {}
    for tunnel in tunnels:
        tunnel_id = tunnel.id
        tunnel_live = live_by_tunnel.get(tunnel_id)
        if tunnel_live is None:  # what compute_health says of no live connection, without its work
            healths[tunnel_id] = unconnected_health(ever_connected=tunnel.conns_active_at is not None)
            continue
        healths[tunnel_id] = compute_health(
            ever_connected=tunnel.conns_active_at is not None,
            config_version=tunnel.config_version,
            connectors=connectors_by_tunnel.get(tunnel_id, []),
            live=tunnel_live,
            last_closed=closed_by_tunnel.get(tunnel_id, []),
        )
    return healths


def tunnel_health(*, tunnel: Tunnel) -> TunnelHealth:
    return tunnel_health_map(organisation=tunnel.organisation, tunnels=[tunnel])[tunnel.pk]


def unconnected_tunnel_health(*, tunnel: Tunnel) -> TunnelHealth:
    """The health of a tunnel no connector is connected to, without a query (what `tunnel_health` computes from no
    rows): one created by the current request (no connector can have connected with a token that has not been
    answered yet), or one it deleted without cascade (refused while a connector is connected; a deleted tunnel
    accepts none)."""
    return compute_health(
        ever_connected=tunnel.conns_active_at is not None, config_version=tunnel.config_version, connectors=[], live=[]
    )


@dataclass(frozen=True)
class TunnelSummary:
    """What the overview says about an organisation's tunnels. `idle` is the first tunnel with no connector
    serving (inactive or down); `serving` the first with one, the tunnel a public hostname would go to."""

    total: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    public_hostnames: int = 0
    idle: Tunnel | None = None
    serving: Tunnel | None = None

    @property
    def any_serving(self) -> bool:
        return self.serving is not None


def tunnel_summary(*, organisation: Organisation) -> TunnelSummary:
    """Counts of live tunnels by health and of their public hostnames, in at most four queries whatever the number
    of tunnels (one for the tunnels, the rest in `tunnel_health_map`)."""
    tunnels = list(tunnel_list(organisation=organisation))
    if not tunnels:
        return TunnelSummary()
    health = tunnel_health_map(organisation=organisation, tunnels=tunnels)
    by_status = {status: 0 for status in TunnelStatus.values}
    idle = serving = None
    hostnames = 0
    for tunnel in reversed(tunnels):  # oldest first: the tunnel the tutorial made
        status = health[tunnel.pk].status
        by_status[status] = by_status.get(status, 0) + 1
        if status in (TunnelStatus.HEALTHY, TunnelStatus.DEGRADED):
            serving = serving or tunnel
        else:
            idle = idle or tunnel
        hostnames += sum(1 for rule in (tunnel.config or {}).get("ingress") or [] if rule.get("hostname"))
    return TunnelSummary(
        total=len(tunnels), by_status=by_status, public_hostnames=hostnames, idle=idle, serving=serving
    )


def connector_list(*, tunnel: Tunnel, live_only: bool = True) -> QuerySet[Connector]:
    qs = Connector.objects.for_org(tunnel.organisation).filter(tunnel=tunnel)
    if live_only:
        qs = qs.filter(connections__closed_at__isnull=True).distinct()
    return qs.order_by("-run_at")


def connector_get(*, tunnel: Tunnel, connector_id: object) -> Connector:
    try:
        cid = uuid.UUID(str(connector_id))
    except ValueError:
        raise NotFound("Connector not found.") from None
    connector = Connector.objects.for_org(tunnel.organisation).filter(tunnel=tunnel, connector_id=cid).first()
    if connector is None:
        raise NotFound("Connector not found.")
    return connector


def connector_health(*, tunnel: Tunnel, connector_id: object) -> ConnectorHealth:
    """One connector with its live connections (none if it is no longer running)."""
    connector = connector_get(tunnel=tunnel, connector_id=connector_id)
    for health in tunnel_health(tunnel=tunnel).connectors:
        if health.connector.connector_id == str(connector.connector_id):
            return health
    return ConnectorHealth(connector=_connector_view(connector), connections=[])


REQUEST_ID_MAX = 64


def clean_request_id(value: object) -> str:
    """A request id as a person pastes it (surrounding spaces, a "Request ID" label copied along), bounded."""
    text = str(value or "").strip()
    if text.lower().startswith("request id"):
        text = text[len("request id") :].strip(" :")
    return text[:REQUEST_ID_MAX]


def origin_errors_recent(*, tunnel: Tunnel, request_id: str = "") -> QuerySet[OriginError]:
    """The tunnel's recent origin errors, newest first; with `request_id`, those whose id starts with it (the
    visitor may quote it without the location suffix). Rows past the edge's retention are never shown."""
    from django.utils import timezone

    from tunnels.choices import ORIGIN_ERROR_MAX_AGE as MAX_AGE

    qs = OriginError.objects.for_org(tunnel.organisation).filter(
        tunnel=tunnel, occurred_at__gte=timezone.now() - MAX_AGE
    )
    if request_id:
        qs = qs.filter(request_id__startswith=request_id)
    return qs.order_by("-occurred_at", "-id")


ORIGIN_ERRORS_SHOWN = 50  # rows on the tunnel's page (and in its live updates)


def origin_error_list(*, tunnel: Tunnel, request_id: str = "", limit: int = ORIGIN_ERRORS_SHOWN) -> list[OriginError]:
    return list(origin_errors_recent(tunnel=tunnel, request_id=request_id)[:limit])


def origin_error_tunnels(*, organisation: Organisation, request_id: str) -> list[Tunnel]:
    """The organisation's live tunnels with an origin error of this request id (to point a search made on the
    wrong tunnel's page at the right one)."""
    if not request_id:
        return []
    ids = (
        OriginError.objects.for_org(organisation)
        .filter(request_id__startswith=request_id)
        .values_list("tunnel_id", flat=True)
    )
    return list(tunnel_list(organisation=organisation).filter(pk__in=ids))
