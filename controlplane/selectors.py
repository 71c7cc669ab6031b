"""Reads of the core app. Every selector takes the organisation (or the organisations) first, returns rows of
those organisations only, and owns its `select_related`, so that a list costs a constant number of queries.
A malformed id and another tenant's id both raise `NotFound`."""

from __future__ import annotations

import datetime
import ipaddress
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from controlplane.choices import InvitationStatus
from controlplane.errors import NotFound
from controlplane.models import ApiToken, AuditEvent, Invitation, Membership, Organisation, User, Zone


def parse_hex_id(value: Any, what: str) -> uuid.UUID:
    """A 32-hex (or dashed) UUID from a URL or a filter; anything else is a missing `what`."""
    try:
        return uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        raise NotFound(f"No such {what}.") from None


# --- members ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemberEntry:
    """A member as the API shows it: an accepted membership, or an invitation still waiting for an answer."""

    membership: Membership | None = None
    invitation: Invitation | None = None

    @property
    def id(self) -> str:
        # Membership ids are integers and invitation ids 32-hex, so one path segment tells them apart.
        return str(self.membership.pk) if self.membership is not None else self.invitation.id.hex  # type: ignore[union-attr]

    @property
    def status(self) -> str:
        return "accepted" if self.membership is not None else "pending"

    @property
    def email(self) -> str:
        return self.membership.user.email if self.membership is not None else self.invitation.email  # type: ignore[union-attr]

    @property
    def role(self) -> str:
        return self.membership.role if self.membership is not None else self.invitation.role  # type: ignore[union-attr]

    @property
    def user(self) -> User | None:
        return self.membership.user if self.membership is not None else None

    @property
    def two_factor_enabled(self) -> bool:
        return bool(getattr(self.membership, "user_has_2fa", False))

    @property
    def created_at(self) -> datetime.datetime:
        return (self.membership or self.invitation).created_at  # type: ignore[union-attr]


MEMBER_ORDERS = ("user.email", "user.first_name", "user.last_name", "status")


def _memberships(organisation: Organisation) -> QuerySet[Membership]:
    confirmed_totp = TOTPDevice.objects.filter(user_id=OuterRef("user_id"), confirmed=True)
    return (
        Membership.objects.for_org(organisation)
        .select_related("user", "organisation")
        .annotate(user_has_2fa=Exists(confirmed_totp))
    )


def _member_sort_key(order: str) -> Any:
    def name_part(entry: MemberEntry, index: int) -> str:
        parts = (entry.user.name if entry.user else "").split(" ", 1)
        return parts[index].lower() if len(parts) > index else ""

    keys = {
        "user.email": lambda entry: entry.email.lower(),
        "user.first_name": lambda entry: (name_part(entry, 0), entry.email.lower()),
        "user.last_name": lambda entry: (name_part(entry, 1), entry.email.lower()),
        "status": lambda entry: (entry.status, entry.email.lower()),
    }
    return keys[order]


def member_list(
    *, organisation: Organisation, status: str | None = None, order: str = "user.email", direction: str = "asc"
) -> list[MemberEntry]:
    """Accepted members and pending invitations (`status` "rejected" lists declined invitations). Members of one
    organisation are few, so both tables are read whole (two queries) and merged in order."""
    entries: list[MemberEntry] = []
    if status in (None, "accepted"):
        entries += [MemberEntry(membership=membership) for membership in _memberships(organisation)]
    if status in (None, "pending", "rejected"):
        wanted = InvitationStatus.DECLINED if status == "rejected" else InvitationStatus.PENDING
        # Expired invitations stay listed: one still blocks a new invitation to that address until it is revoked.
        invitations = Invitation.objects.for_org(organisation).select_related("organisation").filter(status=wanted)
        entries += [MemberEntry(invitation=invitation) for invitation in invitations]
    entries.sort(key=_member_sort_key(order), reverse=direction == "desc")
    return entries


def member_get(*, organisation: Organisation, member_id: Any) -> MemberEntry:
    """A membership (integer id) or a pending invitation (32-hex id) of `organisation`."""
    text = str(member_id or "")
    if text.isdigit() and len(text) < 19:
        membership = _memberships(organisation).filter(pk=int(text)).first()
        if membership is not None:
            return MemberEntry(membership=membership)
        raise NotFound("No such member.")
    invitation_id = parse_hex_id(text, "member")
    invitation = (
        Invitation.objects.for_org(organisation)
        .select_related("organisation")
        .filter(pk=invitation_id, status=InvitationStatus.PENDING)
        .first()
    )
    if invitation is None:
        raise NotFound("No such member.")
    return MemberEntry(invitation=invitation)


# --- zones -----------------------------------------------------------------------------------------------------

ZONE_ORDERS = {
    "name": "name",
    "status": "status",
    "account.id": "organisation_id",
    "account.name": "organisation__display_name",
    "plan.id": "name",
}


def _text_filter(field: str, operator: str, value: str) -> Q:
    lookups = {
        "equal": "iexact",
        "not_equal": "iexact",
        "starts_with": "istartswith",
        "ends_with": "iendswith",
        "contains": "icontains",
        "starts_with_case_sensitive": "startswith",
        "ends_with_case_sensitive": "endswith",
        "contains_case_sensitive": "contains",
    }
    condition = Q(**{f"{field}__{lookups[operator]}": value})
    return ~condition if operator == "not_equal" else condition


def zone_list(
    *,
    organisations: Sequence[Organisation],
    name: tuple[str, str] | None = None,
    status: str | None = None,
    account_id: uuid.UUID | None = None,
    account_name: tuple[str, str] | None = None,
    types: Iterable[str] | None = None,
    match: str = "all",
    order: str = "name",
    direction: str = "asc",
) -> QuerySet[Zone]:
    """Zones of `organisations`, filtered as `GET /zones` asks. `name`/`account_name` are (operator, value)."""
    zones = Zone.objects.for_orgs(organisations).select_related("organisation")
    if types is not None and "full" not in types:
        return zones.none()
    conditions = []
    if name is not None:
        conditions.append(_text_filter("name", *name))
    if status is not None:
        conditions.append(Q(status=status))
    if account_id is not None:
        conditions.append(Q(organisation_id=account_id))
    if account_name is not None:
        conditions.append(_text_filter("organisation__display_name", *account_name))
    if conditions:
        combined = conditions[0]
        for condition in conditions[1:]:
            combined = combined | condition if match == "any" else combined & condition
        zones = zones.filter(combined)
    field = ZONE_ORDERS[order]
    prefix = "-" if direction == "desc" else ""
    return zones.order_by(f"{prefix}{field}", f"{prefix}name", "id")


def zone_get(*, organisations: Sequence[Organisation], zone_id: Any) -> Zone:
    pk = parse_hex_id(zone_id, "zone")
    zone = Zone.objects.for_orgs(organisations).select_related("organisation").filter(pk=pk).first()
    if zone is None:
        raise NotFound("No such zone.")
    return zone


# --- audit log -------------------------------------------------------------------------------------------------


def _ip_filter(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> Q:
    """Addresses inside `network`, expressed on the stored text form: exact for single addresses; IPv4 ranges as
    prefixes of their octet-aligned subnets (at most 128 of them)."""
    if network.num_addresses == 1:
        return Q(ip=str(network.network_address))
    if not isinstance(network, ipaddress.IPv4Network):
        raise ValueError("IPv6 ranges are not supported: give one address.")
    aligned = -(-network.prefixlen // 8) * 8
    condition = Q()
    for subnet in network.subnets(new_prefix=aligned):
        octets = str(subnet.network_address).split(".")[: aligned // 8]
        condition |= Q(ip__startswith=".".join(octets) + ".") if octets else Q(ip__isnull=False)
    return condition


def audit_event_list(
    *,
    organisation: Organisation,
    event_id: uuid.UUID | None = None,
    actor_email: str | None = None,
    actor_ip: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None,
    action: str | None = None,
    resource_type: str | None = None,
    zone_name: str | None = None,
    since: datetime.datetime | None = None,
    before: datetime.datetime | None = None,
    hide_user_logs: bool = False,
    direction: str = "desc",
) -> QuerySet[AuditEvent]:
    events = AuditEvent.objects.for_org(organisation)
    if event_id is not None:
        events = events.filter(pk=event_id)
    if actor_email:
        events = events.filter(actor_email__iexact=actor_email)
    if actor_ip is not None:
        events = events.filter(_ip_filter(actor_ip))
    if action:
        events = events.filter(action=action)
    if resource_type:
        events = events.filter(resource_type=resource_type)
    if zone_name:
        events = events.filter(resource_type="zone", resource_name__iexact=zone_name)
    if since is not None:
        events = events.filter(created_at__gte=since)
    if before is not None:
        events = events.filter(created_at__lt=before)
    if hide_user_logs:
        events = events.exclude(actor_type="user")
    return events.order_by("created_at", "id") if direction == "asc" else events.order_by("-created_at", "-id")


# --- API tokens ------------------------------------------------------------------------------------------------


def api_token_list(
    *, organisation: Organisation, include_expired: bool = False, direction: str = "desc"
) -> QuerySet[ApiToken]:
    tokens = ApiToken.objects.for_org(organisation).select_related("created_by", "organisation")
    if not include_expired:
        tokens = tokens.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))
    return tokens.order_by("created_at", "id") if direction == "asc" else tokens.order_by("-created_at", "-id")


def api_token_get(*, organisation: Organisation, token_id: Any) -> ApiToken:
    pk = parse_hex_id(token_id, "token")
    token = ApiToken.objects.for_org(organisation).select_related("created_by", "organisation").filter(pk=pk).first()
    if token is None:
        raise NotFound("No such token.")
    return token
