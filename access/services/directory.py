"""Identity providers, groups, lists and service tokens: the things policies refer to."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from access.logic.durations import parse_go_duration
from access.models import AccessGroup, AccessList, IdentityProvider, Policy, ServiceToken
from access.services.common import audit, clean_name, clean_rules, save_and_audit
from controlplane.actors import Actor
from controlplane.choices import AuditAction
from controlplane.models import Organisation
from controlplane.services.audit import diff, snapshot

MAX_LIST_ITEMS = 1000
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,253}$")


# --- identity providers -----------------------------------------------------------------------------------------


def one_time_pin_provider(organisation: Organisation) -> IdentityProvider:
    """The organisation's one-time PIN provider, created when missing (every organisation has one)."""
    idp = IdentityProvider.objects.for_org(organisation).filter(type=IdentityProvider.Type.ONE_TIME_PIN).first()
    if idp is not None:
        return idp
    try:
        with transaction.atomic():
            return IdentityProvider.objects.create(
                organisation=organisation, name="One-time PIN", type=IdentityProvider.Type.ONE_TIME_PIN
            )
    except IntegrityError:
        return IdentityProvider.objects.for_org(organisation).get(type=IdentityProvider.Type.ONE_TIME_PIN)


def identity_provider_save(
    *, organisation: Organisation, actor: Actor, data: dict[str, Any], idp: IdentityProvider | None = None
) -> IdentityProvider:
    name = clean_name(data.get("name"), "An identity provider")
    kind = data.get("type")
    if kind != IdentityProvider.Type.ONE_TIME_PIN:
        raise ValidationError({"type": "Only “onetimepin” is available yet; OIDC and others come later."})
    config = data.get("config")
    if config not in (None, {}) and not (isinstance(config, dict) and not config):
        raise ValidationError({"config": "The one-time PIN provider takes an empty config: {}."})
    with transaction.atomic():
        if idp is None:
            conflict = {"type": "This account already has a one-time PIN provider."}
            if IdentityProvider.objects.for_org(organisation).filter(type=kind).exists():
                raise ValidationError(conflict)
            idp = IdentityProvider(organisation=organisation, name=name, type=kind)
            save_and_audit(
                idp,
                conflict=conflict,
                organisation=organisation,
                actor=actor,
                action=AuditAction.CREATE,
                kind="access_idp",
            )
        else:
            before = snapshot(idp, ["name"])
            idp.name = name
            idp.save(update_fields=["name", "updated_at"])
            audit(
                organisation=organisation,
                actor=actor,
                action=AuditAction.UPDATE,
                obj=idp,
                kind="access_idp",
                changes=diff(before, snapshot(idp, ["name"])),
            )
    return idp


def identity_provider_delete(*, idp: IdentityProvider, actor: Actor) -> None:
    if idp.type == IdentityProvider.Type.ONE_TIME_PIN:
        raise ValidationError({"type": "The one-time PIN provider is the default login method and cannot be removed."})
    with transaction.atomic():
        audit(organisation=idp.organisation, actor=actor, action=AuditAction.DELETE, obj=idp, kind="access_idp")
        idp.delete()


# --- groups -------------------------------------------------------------------------------------------------------

_GROUP_FIELDS = ["name", "include", "require", "exclude", "is_default"]


def _users_of(organisation: Organisation, kind: str, object_id: str) -> list[str]:
    """Names of the policies and groups whose rules mention `{kind: {...: object_id}}`."""
    names = []
    for model in (Policy, AccessGroup):
        for name, include, require, exclude in model.objects.for_org(organisation).values_list(
            "name", "include", "require", "exclude"
        ):
            if any(object_id in (rule.get(kind) or {}).values() for rule in [*include, *require, *exclude]):
                names.append(name)
    return names


def group_save(
    *, organisation: Organisation, actor: Actor, data: dict[str, Any], group: AccessGroup | None = None
) -> AccessGroup:
    include = clean_rules(organisation, data.get("include"), "include", required=True)
    require = clean_rules(organisation, data.get("require"), "require")
    exclude = clean_rules(organisation, data.get("exclude"), "exclude")
    values: dict[str, Any] = {
        "name": clean_name(data.get("name"), "A group"),
        "include": include,
        "require": require,
        "exclude": exclude,
        "is_default": bool(data.get("is_default") is True),
    }
    if group is not None and any(
        rule.get("group", {}).get("id") == str(group.pk) for rule in include + require + exclude
    ):
        raise ValidationError({"include": "A group cannot refer to itself."})
    taken = AccessGroup.objects.for_org(organisation).filter(name=values["name"])
    if group is not None:
        taken = taken.exclude(pk=group.pk)
    conflict = {"name": f"A group named “{values['name']}” already exists."}
    with transaction.atomic():
        if taken.exists():
            raise ValidationError(conflict)
        if group is None:
            group = AccessGroup(organisation=organisation, **values)
            save_and_audit(
                group,
                conflict=conflict,
                organisation=organisation,
                actor=actor,
                action=AuditAction.CREATE,
                kind="access_group",
            )
            return group
        before = snapshot(group, _GROUP_FIELDS)
        for key, value in values.items():
            setattr(group, key, value)
        save_and_audit(
            group,
            conflict=conflict,
            organisation=organisation,
            actor=actor,
            action=AuditAction.UPDATE,
            kind="access_group",
            changes=diff(before, snapshot(group, _GROUP_FIELDS)),
        )
    return group


def group_delete(*, group: AccessGroup, actor: Actor) -> None:
    organisation = group.organisation
    users = [name for name in _users_of(organisation, "group", str(group.pk)) if name != group.name]
    if users:
        raise ValidationError({"id": f"The group is used by “{users[0]}”: remove it from there first."})
    with transaction.atomic():
        audit(organisation=organisation, actor=actor, action=AuditAction.DELETE, obj=group, kind="access_group")
        group.delete()


# --- lists --------------------------------------------------------------------------------------------------------


def _list_items(kind: str, raw: Any) -> list[str]:
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise ValidationError({"items": 'A list of entries, e.g. [{"value": "ana@example.com"}].'})
    if len(raw) > MAX_LIST_ITEMS:
        raise ValidationError({"items": f"At most {MAX_LIST_ITEMS} entries."})
    items: list[str] = []
    for position, entry in enumerate(raw):
        value = entry.get("value") if isinstance(entry, dict) else entry
        if not isinstance(value, str) or not value.strip():
            raise ValidationError({"items": f"items[{position}]: each entry needs a “value”."})
        value = value.strip()
        if kind == AccessList.Type.EMAIL:
            if not _EMAIL.match(value):
                raise ValidationError({"items": f"items[{position}]: “{value}” is not an email address."})
            value = value.lower()
        else:
            try:
                value = str(ipaddress.ip_network(value, strict=False))
            except ValueError:
                raise ValidationError({"items": f"items[{position}]: “{value}” is not an IP or CIDR range."}) from None
        if value not in items:
            items.append(value)
    return items


def list_save(
    *, organisation: Organisation, actor: Actor, data: dict[str, Any], access_list: AccessList | None = None
) -> AccessList:
    name = clean_name(data.get("name"), "A list")
    kind = data.get("type", access_list.type if access_list else None)
    if kind not in AccessList.Type.values:
        raise ValidationError({"type": "“EMAIL” or “IP”."})
    if access_list is not None and kind != access_list.type:
        raise ValidationError({"type": "A list's type cannot change; create a new list."})
    description = data.get("description") or ""
    if not isinstance(description, str) or len(description) > 500:
        raise ValidationError({"description": "Text of at most 500 characters."})
    items = _list_items(kind, data.get("items"))
    taken = AccessList.objects.for_org(organisation).filter(name=name)
    if access_list is not None:
        taken = taken.exclude(pk=access_list.pk)
    conflict = {"name": f"A list named “{name}” already exists."}
    with transaction.atomic():
        if taken.exists():
            raise ValidationError(conflict)
        if access_list is None:
            access_list = AccessList(
                organisation=organisation, name=name, type=kind, description=description, items=items
            )
            save_and_audit(
                access_list,
                conflict=conflict,
                organisation=organisation,
                actor=actor,
                action=AuditAction.CREATE,
                kind="access_list",
            )
            return access_list
        before = snapshot(access_list, ["name", "description", "items"])
        access_list.name, access_list.description, access_list.items = name, description, items
        save_and_audit(
            access_list,
            conflict=conflict,
            organisation=organisation,
            actor=actor,
            action=AuditAction.UPDATE,
            kind="access_list",
            changes=diff(before, snapshot(access_list, ["name", "description", "items"])),
        )
    return access_list


def list_delete(*, access_list: AccessList, actor: Actor) -> None:
    kind = "email_list" if access_list.type == AccessList.Type.EMAIL else "ip_list"
    users = _users_of(access_list.organisation, kind, str(access_list.pk))
    if users:
        raise ValidationError({"id": f"The list is used by “{users[0]}”: remove it from there first."})
    with transaction.atomic():
        audit(
            organisation=access_list.organisation,
            actor=actor,
            action=AuditAction.DELETE,
            obj=access_list,
            kind="access_list",
        )
        access_list.delete()


# --- service tokens -----------------------------------------------------------------------------------------------


def _audit_token(token: ServiceToken, actor: Actor, action: str, changes: dict[str, Any] | None = None) -> None:
    audit(
        organisation=token.organisation,
        actor=actor,
        action=action,
        obj=token,
        kind="access_service_token",
        changes=changes,
    )


def hash_client_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def client_secret_matches(token: ServiceToken, secret: str) -> bool:
    return hmac.compare_digest(token.secret_hash, hash_client_secret(secret))


def _token_duration(value: Any) -> tuple[str, timedelta | None]:
    if value in (None, ""):
        value = "8760h"
    if value == "forever":
        return "forever", None
    try:
        duration = parse_go_duration(value)
    except ValueError as exc:
        raise ValidationError({"duration": f"{exc} Or “forever”."}) from None
    if duration < timedelta(minutes=1):
        raise ValidationError({"duration": "At least 1 minute."})
    return str(value), duration


def service_token_create(*, organisation: Organisation, actor: Actor, data: dict[str, Any]) -> tuple[ServiceToken, str]:
    """A new token and its client secret, which is returned this once and never again."""
    name = clean_name(data.get("name"), "A service token")
    duration_text, duration = _token_duration(data.get("duration"))
    secret = secrets.token_hex(32)
    with transaction.atomic():
        token = ServiceToken.objects.create(
            organisation=organisation,
            name=name,
            client_id=f"{secrets.token_hex(16)}.access",
            secret_hash=hash_client_secret(secret),
            duration=duration_text,
            expires_at=timezone.now() + duration if duration else None,
        )
        audit(organisation=organisation, actor=actor, action=AuditAction.CREATE, obj=token, kind="access_service_token")
    return token, secret


def service_token_update(*, token: ServiceToken, actor: Actor, data: dict[str, Any]) -> ServiceToken:
    before = snapshot(token, ["name", "duration"])
    if "name" in data:
        token.name = clean_name(data.get("name"), "A service token")
    if data.get("duration") not in (None, ""):
        token.duration, _ = _token_duration(data["duration"])
    with transaction.atomic():
        token.save()
        _audit_token(token, actor, AuditAction.UPDATE, diff(before, snapshot(token, ["name", "duration"])))
    return token


def service_token_refresh(*, token: ServiceToken, actor: Actor) -> ServiceToken:
    """Extend the token's life by its duration from now (Cloudflare's "refresh")."""
    _, duration = _token_duration(token.duration)
    with transaction.atomic():
        token.expires_at = timezone.now() + duration if duration else None
        token.save(update_fields=["expires_at", "updated_at"])
        _audit_token(
            token,
            actor,
            AuditAction.UPDATE,
            {"expires_at": ["", token.expires_at.isoformat() if token.expires_at else "never"]},
        )
    return token


def service_token_rotate(*, token: ServiceToken, actor: Actor) -> tuple[ServiceToken, str]:
    secret = secrets.token_hex(32)
    with transaction.atomic():
        token.secret_hash = hash_client_secret(secret)
        token.save(update_fields=["secret_hash", "updated_at"])
        _audit_token(token, actor, AuditAction.ROTATE)
    return token, secret


def service_token_delete(*, token: ServiceToken, actor: Actor) -> None:
    users = _users_of(token.organisation, "service_token", str(token.pk))
    if users:
        raise ValidationError({"id": f"The service token is used by “{users[0]}”: remove it from there first."})
    with transaction.atomic():
        _audit_token(token, actor, AuditAction.DELETE)
        token.delete()
