"""What tunnels register with the core's DNS service (controlplane/services/dns.py) from TunnelsConfig.ready():
a CNAME into the tunnel domain is owned by the tunnel it names, and a changed record reloads every edge's routes.
The core never imports tunnels; this is how it learns about them."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

from controlplane.models import Zone
from controlplane.services.dns import ManagedBy

MANAGED_BY_TUNNEL = "tunnel"


def tunnel_cname_owner(zone: Zone, content: str) -> ManagedBy | None:
    """A CNAME target `<tunnel id>.<TUNNEL_DOMAIN>` must name a live tunnel of the zone's organisation."""
    from tunnels.models import Tunnel

    suffix = "." + str(settings.TUNNEL_DOMAIN)
    if not content.endswith(suffix):
        return None
    try:
        tunnel_id = uuid.UUID(content[: -len(suffix)])
    except ValueError:
        raise ValidationError({"content": f"{content} is not <tunnel id>{suffix}."}) from None
    if not Tunnel.objects.for_org(zone.organisation).filter(pk=tunnel_id, deleted_at__isnull=True).exists():
        raise ValidationError({"content": f"No tunnel {tunnel_id} exists in this account."})
    return ManagedBy(MANAGED_BY_TUNNEL, tunnel_id)


def managed_by_tunnel(tunnel: Any) -> ManagedBy:
    return ManagedBy(MANAGED_BY_TUNNEL, tunnel.pk)


def reload_routes(*, organisation_id: Any, **_: Any) -> None:
    from tunnels.events import routes_changed

    routes_changed(organisation_id=organisation_id)


def tunnel_record_guard(record: Any, verb: str) -> str | None:
    """A CNAME that a live tunnel's configuration routes follows that configuration: the DNS API may not rename,
    retarget, unproxy or delete it (comments and tags stay editable). A CNAME no public hostname uses is ordinary."""
    from tunnels.models import Tunnel

    tunnel = (
        Tunnel.objects.for_org(record.organisation)
        .filter(pk=record.managed_by_id, deleted_at__isnull=True)
        .only("name", "config")
        .first()
    )
    if tunnel is None:
        return None
    rules = (tunnel.config or {}).get("ingress") or []
    if not any(isinstance(rule, dict) and rule.get("hostname") == record.name for rule in rules):
        return None
    return (
        f"{record.name} is managed by tunnel “{tunnel.name}” (its public hostname {record.name}): it cannot be {verb} "
        "here. Remove the public hostname from the tunnel instead."
    )
