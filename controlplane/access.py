"""Resolving what the caller may do in an organisation. The one place where UI views, API views and (later)
websocket consumers learn the organisation and the caller's scopes; it hides existence from non-members."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import PermissionDenied

from controlplane.choices import ROLE_SCOPES, Level, Resource, scope
from controlplane.errors import NotFound
from controlplane.models import ApiToken, Membership, Organisation, User
from controlplane.prepared import PreparedQuery


class NotSignedIn(Exception):
    """No principal at all: the API answers 401, the UI redirects to sign-in."""


class SecondFactorRequired(PermissionDenied):
    """A member of an organisation that requires 2FA signed in with a password only."""


@dataclass(frozen=True)
class OrgAccess:
    organisation: Organisation
    scopes: frozenset[str]
    membership: Membership | None = None
    token: ApiToken | None = None

    @property
    def role(self) -> str | None:
        return self.membership.role if self.membership else None

    def can(self, resource: str, level: str = Level.READ) -> bool:
        return scope(resource, level) in self.scopes

    def require(self, resource: str, level: str) -> None:
        if not self.can(resource, level):
            what = "change" if level == Level.EDIT else "see"
            raise PermissionDenied(f"You do not have permission to {what} {Resource(resource).label.lower()}.")


def parse_account_id(value: Any) -> uuid.UUID:
    try:
        return uuid.UUID(hex=str(value))
    except (ValueError, TypeError, AttributeError):
        raise NotFound("No such account.") from None


def user_is_verified(user: Any) -> bool:
    is_verified = getattr(user, "is_verified", None)
    return bool(is_verified and is_verified())


def resolve_org_access(*, user: Any, token: ApiToken | None, account_id: Any) -> OrgAccess:
    """The caller's access to the organisation `account_id`; NotFound when it is not theirs (or does not exist)."""
    org_id = parse_account_id(account_id)
    if token is not None:
        if token.organisation_id != org_id:
            raise NotFound("No such account.")
        return OrgAccess(organisation=token.organisation, scopes=token.scopes, token=token)
    if user is None or not user.is_authenticated:
        raise NotSignedIn()
    membership = membership_with_organisation(organisation_id=org_id, user=user)
    if membership is None:
        raise NotFound("No such account.")
    if membership.organisation.require_2fa and not user_is_verified(user):
        raise SecondFactorRequired(
            "This organisation requires two-factor authentication: sign in with your second factor."
        )
    return OrgAccess(organisation=membership.organisation, scopes=ROLE_SCOPES[membership.role], membership=membership)


_MEMBERSHIP_FIELDS = tuple(f.attname for f in Membership._meta.concrete_fields)
_ORGANISATION_FIELDS = tuple(f.attname for f in Organisation._meta.concrete_fields)
# A user's membership of one organisation with the organisation (the `select_related` read), compiled once per process
# (controlplane/prepared.py; issue 13): the membership's columns, then the organisation's. At most one row (one
# membership per organisation and user); scoped by the organisation's id, a parameter.
_MEMBERSHIP = PreparedQuery(
    lambda organisation_id, user: Membership.objects.filter(organisation_id=organisation_id, user=user).values_list(
        *_MEMBERSHIP_FIELDS, *(f"organisation__{name}" for name in _ORGANISATION_FIELDS)
    ),
    organisation_id=uuid.UUID,
    user=User,
)


def membership_with_organisation(*, organisation_id: uuid.UUID, user: Any) -> Membership | None:
    """`Membership.objects.filter(organisation_id=…, user=user).select_related("organisation").first()`, prepared:
    the same models (built by `from_db`), the organisation cached on the membership as select_related caches it."""
    if not isinstance(user, User):  # e.g. a lazy user: the ORM's own read
        return (
            Membership.objects.filter(organisation_id=organisation_id, user=user).select_related("organisation").first()
        )
    row = _MEMBERSHIP.first(organisation_id=organisation_id, user=user)
    if row is None:
        return None
    split = len(_MEMBERSHIP_FIELDS)
    membership = Membership.from_db("default", _MEMBERSHIP_FIELDS, row[:split])
    organisation = Organisation.from_db("default", _ORGANISATION_FIELDS, row[split:])
    Membership._meta.get_field("organisation").set_cached_value(membership, organisation)
    return membership


def accessible_organisations(*, user: Any, token: ApiToken | None) -> list[Organisation]:
    """Organisations the caller can act in (a token: its own; a user: memberships whose 2FA rule is met)."""
    if token is not None:
        return [token.organisation]
    if user is None or not user.is_authenticated:
        raise NotSignedIn()
    verified = user_is_verified(user)
    memberships = (
        Membership.objects.filter(user=user).select_related("organisation").unscoped("the caller's own memberships")
    )
    return [m.organisation for m in memberships if verified or not m.organisation.require_2fa]
