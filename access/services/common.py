"""Helpers shared by the Access services: turning rule lists into validated JSON with references checked
against the organisation, and the one way an Access write is audited."""

from __future__ import annotations

import uuid
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models

from access.logic.durations import format_go_duration, session_duration
from access.logic.rules import Rule, RuleError, parse_rules
from access.models import AccessGroup, AccessList, IdentityProvider, ServiceToken
from controlplane.actors import Actor
from controlplane.models import Organisation
from controlplane.services.audit import audit_record, save_audited

MAX_NAME = 255

_REFERENCE_MODELS: dict[str, tuple[type[models.Model], str]] = {
    "group": (AccessGroup, "Access group"),
    "service_token": (ServiceToken, "service token"),
    "login_method": (IdentityProvider, "identity provider"),
    "email_list": (AccessList, "email list"),
    "ip_list": (AccessList, "IP list"),
}


def clean_name(value: Any, what: str) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        raise ValidationError({"name": f"{what} needs a name."})
    if len(text) > MAX_NAME:
        raise ValidationError({"name": f"At most {MAX_NAME} characters."})
    return text


def clean_duration(value: Any, field: str, *, allow_empty: bool = False, default: str = "24h") -> str:
    if value in (None, ""):
        if allow_empty:
            return ""
        value = default
    try:
        return format_go_duration(session_duration(value, field=field))
    except ValueError as exc:
        raise ValidationError({field: str(exc)}) from None


def _as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def check_references(organisation: Organisation, rules: list[Rule], field: str) -> None:
    """Every id a rule names must be one of this organisation's objects of the right kind (another tenant's
    group is as unknown as a missing one)."""
    wanted: dict[str, set[str]] = {}
    for rule in rules:
        if rule.kind in _REFERENCE_MODELS:
            wanted.setdefault(rule.kind, set()).add(rule.value)
    for kind, ids in wanted.items():
        model, label = _REFERENCE_MODELS[kind]
        parsed = {value: _as_uuid(value) for value in ids}
        bad = sorted(value for value, pk in parsed.items() if pk is None)
        if not bad:
            qs = model.objects.for_org(organisation).filter(pk__in=[pk for pk in parsed.values()])  # type: ignore[attr-defined]
            if kind in {"email_list", "ip_list"}:
                qs = qs.filter(type=AccessList.Type.EMAIL if kind == "email_list" else AccessList.Type.IP)
            found = {str(pk) for pk in qs.values_list("pk", flat=True)}
            bad = sorted(value for value, pk in parsed.items() if str(pk) not in found)
        if bad:
            raise ValidationError({field: f"{kind}: no {label} with id “{bad[0]}” in this account."})


def clean_rules(organisation: Organisation, raw: Any, field: str, *, required: bool = False) -> list[dict[str, Any]]:
    try:
        rules = parse_rules(raw, field_name=field, required=required)
    except RuleError as exc:
        raise ValidationError({field: str(exc)}) from None
    check_references(organisation, rules, field)
    return [rule.to_json() for rule in rules]


def audit(
    *, organisation: Organisation, actor: Actor, action: str, obj: Any, kind: str, changes: dict[str, Any] | None = None
) -> None:
    from access.events import access_changed

    access_changed(organisation_id=organisation.pk)
    audit_record(
        organisation=organisation,
        actor=actor,
        action=action,
        resource_type=kind,
        resource_id=obj.pk,
        resource_name=getattr(obj, "name", ""),
        changes=changes,
    )


def save_and_audit(
    obj: Any,
    *,
    conflict: dict[str, str],
    organisation: Organisation,
    actor: Actor,
    action: str,
    kind: str,
    changes: dict[str, Any] | None = None,
) -> None:
    """`audit` for a row with a uniqueness rule: saved through the core's `save_audited`, so a race lost between the
    service's own check and the insert is the check's ValidationError (`conflict`), never a 500."""
    from access.events import access_changed

    save_audited(
        obj,
        conflict=conflict,
        organisation=organisation,
        actor=actor,
        action=action,
        resource_type=kind,
        resource_name=getattr(obj, "name", ""),
        changes=changes,
    )
    access_changed(organisation_id=organisation.pk)
