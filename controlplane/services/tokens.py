"""API tokens: create (the secret is returned once), authenticate, revoke."""

from __future__ import annotations

import datetime
import ipaddress
import threading
import time
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models.base import ModelState
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from controlplane.actors import Actor
from controlplane.choices import TOKEN_RESOURCES, AuditAction, Level, Role, scope
from controlplane.models import ApiToken, Membership, Organisation
from controlplane.models.tokens import generate_token_secret, hash_token
from controlplane.services.audit import audit_record

LAST_USED_RESOLUTION = datetime.timedelta(seconds=60)
# A bearer's token row (with its organisation) is reused for this long in a process, so that automation's bursts
# of calls skip the lookup; a change made elsewhere (revocation in another process) counts within this time, one
# made in this process at once (`forget_cached_tokens`). Measured by tests/controlplane/test_token_cache.py.
TOKEN_CACHE_SECONDS = 1.0
TOKEN_CACHE_MAX = 4096


def clean_grants(grants: Any) -> dict[str, str]:
    if not isinstance(grants, dict) or not grants:
        raise ValidationError({"permissions": 'Grant at least one permission, e.g. {"tunnels": "edit"}.'})
    allowed = {resource.value for resource in TOKEN_RESOURCES}
    cleaned: dict[str, str] = {}
    for resource, level in grants.items():
        if resource not in allowed:
            raise ValidationError(
                {"permissions": f"Unknown resource group “{resource}”; use {', '.join(sorted(allowed))}."}
            )
        if level not in Level.values:
            raise ValidationError({"permissions": f"“{resource}” must be “read” or “edit”, not “{level}”."})
        cleaned[resource] = level
    return cleaned


def clean_networks(networks: Any) -> list[str]:
    if networks in (None, ""):
        return []
    if isinstance(networks, str):
        networks = [item for item in networks.replace("\n", ",").split(",")]
    if not isinstance(networks, list):
        raise ValidationError({"allowed_networks": "Give a list of IP addresses or CIDR ranges."})
    cleaned = []
    for item in networks:
        text = str(item).strip()
        if not text:
            continue
        try:
            cleaned.append(str(ipaddress.ip_network(text, strict=False)))
        except ValueError:
            raise ValidationError({"allowed_networks": f"“{text}” is not an IP address or CIDR range."}) from None
    return cleaned


def _cap_to_actor(organisation: Organisation, actor: Actor, grants: dict[str, str]) -> None:
    """Nobody creates a token that can do more than they can."""
    if actor.user is None:
        return  # the operator's CLI
    membership = Membership.objects.for_org(organisation).filter(user=actor.user).first()
    if membership is None:
        raise PermissionDenied("Only members create tokens.")
    for resource, level in grants.items():
        if scope(resource, level) not in membership.scopes:
            role = Role(membership.role).label
            raise PermissionDenied(f"Your role ({role}) cannot grant {level} on {resource}.")


@transaction.atomic
def api_token_create(
    *,
    organisation: Organisation,
    name: str,
    grants: Any,
    actor: Actor,
    allowed_networks: Any = None,
    expires_at: datetime.datetime | None = None,
    not_before: datetime.datetime | None = None,
) -> tuple[ApiToken, str]:
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "Give the token a name."})
    if len(name) > 120:
        raise ValidationError({"name": "At most 120 characters."})
    grants = clean_grants(grants)
    networks = clean_networks(allowed_networks)
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_on": "The expiry must be in the future."})
    if expires_at is not None and not_before is not None and not_before >= expires_at:
        raise ValidationError({"not_before": "must be before the expiry."})
    _cap_to_actor(organisation, actor, grants)
    raw = generate_token_secret()
    token = ApiToken.objects.create(
        organisation=organisation,
        name=name,
        token_hash=hash_token(raw),
        hint=raw[-4:],
        grants=grants,
        allowed_networks=networks,
        expires_at=expires_at,
        not_before=not_before,
        created_by=actor.user,
    )
    audit_record(
        organisation=organisation,
        actor=actor,
        action=AuditAction.CREATE,
        resource_type="api_token",
        resource_id=token.id,
        resource_name=name,
        changes={"grants": [None, grants], "allowed_networks": [None, networks], "expires_at": [None, expires_at]},
    )
    return token, raw


@transaction.atomic
def api_token_revoke(*, token: ApiToken, actor: Actor) -> ApiToken:
    updated = (
        ApiToken.objects.for_org(token.organisation)
        .filter(pk=token.pk, revoked_at__isnull=True)
        .update(revoked_at=timezone.now())
    )
    forget_cached_tokens(token.token_hash)
    token.refresh_from_db()
    if updated:
        audit_record(
            organisation=token.organisation,
            actor=actor,
            action=AuditAction.DELETE,
            resource_type="api_token",
            resource_id=token.id,
            resource_name=token.name,
            changes={"status": ["active", "disabled"]},
        )
    return token


class TokenRejected(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _json_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _json_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_copy(item) for item in value]
    return value


def _field_values(row: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A row's attributes without its state (the cached organisation is kept apart): the immutable ones, and the
    mutable ones (JSON dicts and lists) copied, since the caller keeps the row and may change it."""
    plain, mutable = {}, {}
    for name, value in row.__dict__.items():
        if name == "_state":
            continue
        if isinstance(value, (dict, list)):
            mutable[name] = _json_copy(value)
        else:
            plain[name] = value
    return plain, mutable


def _from_values(model: Any, values: tuple[dict[str, Any], dict[str, Any]]) -> Any:
    """A fresh instance with a row's attributes, as the database read it, built without `__init__` (as unpickling
    does, at half its cost); the mutable ones copied again, so that nothing a request changes on its objects
    reaches another request."""
    plain, mutable = values
    row = model.__new__(model)
    attributes = row.__dict__
    attributes.update(plain)
    for name, value in mutable.items():
        attributes[name] = _json_copy(value)
    state = row._state = ModelState()
    state.db, state.adding = "default", False
    return row


class _TokenCache:
    """token hash → (monotonic time read, the token's field values, its organisation's). Every request gets objects
    of its own, built from the values (~17 µs for both rows; unpickling them was ~37 µs, issue 13)."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[float, Any, Any]] = {}
        self.lock = threading.Lock()

    def get(self, digest: str) -> ApiToken | None:
        entry = self.rows.get(digest)
        if entry is None or time.monotonic() - entry[0] >= TOKEN_CACHE_SECONDS:
            return None
        token = _from_values(ApiToken, entry[1])
        token._state.fields_cache["organisation"] = _from_values(Organisation, entry[2])
        return token

    def put(self, digest: str, token: ApiToken, read_at: float) -> None:
        entry = (read_at, _field_values(token), _field_values(token.organisation))
        with self.lock:
            if len(self.rows) >= TOKEN_CACHE_MAX:
                self.rows.clear()
            self.rows[digest] = entry

    def forget(self, digest: str | None = None) -> None:
        with self.lock:
            if digest is None:
                self.rows.clear()
            else:
                self.rows.pop(digest, None)


_token_cache = _TokenCache()


def forget_cached_tokens(digest: str | None = None) -> None:
    """Drop one token (by hash) or all of them from this process's cache, now and again once the current
    transaction commits (a request reading the old row meanwhile must not keep it)."""
    _token_cache.forget(digest)
    transaction.on_commit(lambda: _token_cache.forget(digest))


def _forget_token_row(sender: Any, instance: ApiToken, **kwargs: Any) -> None:
    forget_cached_tokens(instance.token_hash)


def _forget_all(sender: Any, **kwargs: Any) -> None:
    forget_cached_tokens()


post_save.connect(_forget_token_row, sender=ApiToken, dispatch_uid="api-token-cache-row")
post_delete.connect(_forget_token_row, sender=ApiToken, dispatch_uid="api-token-cache-row-delete")
# A token's organisation travels with it (name, 2FA rule): any change to one empties the cache.
post_save.connect(_forget_all, sender=Organisation, dispatch_uid="api-token-cache-org")
post_delete.connect(_forget_all, sender=Organisation, dispatch_uid="api-token-cache-org-delete")


def _read_token(digest: str) -> ApiToken | None:
    cached = _token_cache.get(digest)
    if cached is not None:
        return cached
    read_at = time.monotonic()
    token = (
        ApiToken.objects.unscoped("a bearer secret identifies its organisation")
        .select_related("organisation")
        .filter(token_hash=digest)
        .first()
    )
    if token is not None:
        _token_cache.put(digest, token, read_at)
    return token


def api_token_authenticate(raw: str, *, ip: str | None) -> ApiToken:
    """The live token for a bearer secret, or TokenRejected saying why (never which part of a secret matched)."""
    digest = hash_token(raw)
    token = _read_token(digest)
    if token is None:
        raise TokenRejected("Invalid API Token")
    status = token.status
    if status != "active":
        raise TokenRejected(f"This API Token is {status}")
    if not token.allows_ip(ip):
        raise TokenRejected("This API Token cannot be used from this IP address")
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.for_org(token.organisation).filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
        _token_cache.put(digest, token, _cached_at(digest))
    return token


def _cached_at(digest: str) -> float:
    """When the cached row of `digest` was read (keeps its age when it is rewritten with a new last use)."""
    entry = _token_cache.rows.get(digest)
    return entry[0] if entry is not None else time.monotonic()


_UNCHANGED: Any = object()


@transaction.atomic
def api_token_update(
    *,
    token: ApiToken,
    actor: Actor,
    name: Any = _UNCHANGED,
    grants: Any = _UNCHANGED,
    allowed_networks: Any = _UNCHANGED,
    expires_at: Any = _UNCHANGED,
    not_before: Any = _UNCHANGED,
) -> ApiToken:
    """Change a token's name, grants (capped to the actor's role, as at creation), client IP ranges or validity.
    The secret stays the same; a revoked token cannot be changed."""
    token = ApiToken.objects.for_org(token.organisation).select_for_update().get(pk=token.pk)
    if token.revoked_at is not None:
        raise ValidationError("This token is revoked; create a new one.")
    before = {
        "name": token.name,
        "grants": token.grants,
        "allowed_networks": token.allowed_networks,
        "expires_at": token.expires_at,
        "not_before": token.not_before,
    }
    if name is not _UNCHANGED:
        text = (name or "").strip()
        if not text:
            raise ValidationError({"name": "Give the token a name."})
        if len(text) > 120:
            raise ValidationError({"name": "At most 120 characters."})
        token.name = text
    if grants is not _UNCHANGED:
        cleaned = clean_grants(grants)
        if cleaned != token.grants:
            _cap_to_actor(token.organisation, actor, cleaned)
        token.grants = cleaned
    if allowed_networks is not _UNCHANGED:
        token.allowed_networks = clean_networks(allowed_networks)
    if expires_at is not _UNCHANGED:
        if expires_at is not None and expires_at != token.expires_at and expires_at <= timezone.now():
            raise ValidationError({"expires_on": "The expiry must be in the future."})
        token.expires_at = expires_at
    if not_before is not _UNCHANGED:
        token.not_before = not_before
    if token.expires_at is not None and token.not_before is not None and token.not_before >= token.expires_at:
        raise ValidationError({"not_before": "must be before the expiry."})
    after = {
        "name": token.name,
        "grants": token.grants,
        "allowed_networks": token.allowed_networks,
        "expires_at": token.expires_at,
        "not_before": token.not_before,
    }
    from controlplane.services.audit import diff

    changes = diff(before, after)
    if changes:
        token.save()
        audit_record(
            organisation=token.organisation,
            actor=actor,
            action=AuditAction.UPDATE,
            resource_type="api_token",
            resource_id=token.id,
            resource_name=token.name,
            changes=changes,
        )
    return token
