"""The organisation's Access settings (`access/organizations`), signing keys and user revocation."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from access import keys as access_keys
from access.logic.durations import MIN_GLOBAL_SESSION
from access.models import AccessSettings, SigningKey, UserRevocation
from access.services.common import audit, clean_duration
from controlplane.actors import Actor
from controlplane.choices import AuditAction
from controlplane.models import Organisation
from controlplane.services.audit import diff, snapshot

_COLOUR = re.compile(r"^#[0-9a-fA-F]{3}(?:[0-9a-fA-F]{3})?$")
DESIGN_FIELDS = {"background_color", "text_color", "logo_path", "header_text", "footer_text"}
SETTINGS_FIELDS = ["session_duration", "auto_redirect_to_identity", "login_design", "key_rotation_interval_days"]


def access_settings(organisation: Organisation) -> AccessSettings:
    """The saved settings, or the defaults (unsaved: reading never writes)."""
    row = AccessSettings.objects.for_org(organisation).first()
    return row if row is not None else AccessSettings(organisation=organisation, updated_at=organisation.created_at)


def _design(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValidationError(
            {"login_design": "An object with background_color, text_color, logo_path, header_text, footer_text."}
        )
    unknown = sorted(set(raw) - DESIGN_FIELDS)
    if unknown:
        raise ValidationError({"login_design": f"Unknown field “{unknown[0]}”."})
    design: dict[str, str] = {}
    for key, value in raw.items():
        if value in (None, ""):
            continue
        if not isinstance(value, str) or len(value) > 500:
            raise ValidationError({"login_design": f"{key}: text of at most 500 characters."})
        if key.endswith("_color") and not _COLOUR.match(value):
            raise ValidationError({"login_design": f"{key}: a colour such as #1f2933."})
        if key == "logo_path" and not value.startswith(("https://", "http://")):
            raise ValidationError({"login_design": "logo_path: an absolute http(s) URL."})
        design[key] = value
    return design


def access_settings_update(*, organisation: Organisation, actor: Actor, data: dict[str, Any]) -> AccessSettings:
    row = access_settings(organisation)
    before = snapshot(row, SETTINGS_FIELDS)
    if "session_duration" in data:
        value = clean_duration(data["session_duration"], "session_duration")
        if access_keys_duration(value) < MIN_GLOBAL_SESSION:
            raise ValidationError({"session_duration": "The global session lasts at least 15m."})
        row.session_duration = value
    if "auto_redirect_to_identity" in data:
        if not isinstance(data["auto_redirect_to_identity"], bool):
            raise ValidationError({"auto_redirect_to_identity": "true or false."})
        row.auto_redirect_to_identity = data["auto_redirect_to_identity"]
    if "login_design" in data:
        row.login_design = _design(data["login_design"])
    if "name" in data and data["name"] not in (None, organisation.team_name, organisation.display_name):
        raise ValidationError({"name": "The team's name is changed in the organisation's settings."})
    if "auth_domain" in data and data["auth_domain"] not in (None, organisation.team_domain):
        raise ValidationError(
            {"auth_domain": f"The team domain is {organisation.team_domain}; it follows the team name."}
        )
    with transaction.atomic():
        row.save()
        audit(
            organisation=organisation,
            actor=actor,
            action=AuditAction.UPDATE,
            obj=row,
            kind="access_settings",
            changes=diff(before, snapshot(row, SETTINGS_FIELDS)),
        )
    return row


def access_keys_duration(value: str) -> timedelta:
    from access.logic.durations import parse_go_duration

    return parse_go_duration(value)


def keys_update(*, organisation: Organisation, actor: Actor, days: Any) -> AccessSettings:
    if isinstance(days, bool) or not isinstance(days, int) or not 21 <= days <= 365:
        raise ValidationError({"key_rotation_interval_days": "A whole number of days from 21 to 365."})
    row = access_settings(organisation)
    before = snapshot(row, ["key_rotation_interval_days"])
    with transaction.atomic():
        row.key_rotation_interval_days = days
        row.save()
        audit(
            organisation=organisation,
            actor=actor,
            action=AuditAction.UPDATE,
            obj=row,
            kind="access_keys",
            changes=diff(before, snapshot(row, ["key_rotation_interval_days"])),
        )
    return row


def keys_rotate(*, organisation: Organisation, actor: Actor) -> SigningKey:
    with transaction.atomic():
        key = access_keys.rotate_key(organisation)
        audit(organisation=organisation, actor=actor, action=AuditAction.ROTATE, obj=key, kind="access_keys")
    return key


def keys_status(organisation: Organisation) -> dict[str, Any]:
    row = access_settings(organisation)
    key = SigningKey.objects.for_org(organisation).filter(retired_at__isnull=True).first()
    started = key.created_at if key is not None else timezone.now()  # the first key is made when first needed
    next_at = started + timedelta(days=row.key_rotation_interval_days)
    return {
        "key_rotation_interval_days": row.key_rotation_interval_days,
        "last_key_rotation_at": key.created_at if key is not None else None,
        "days_until_next_rotation": max(0, (next_at - timezone.now()).days),
    }


def rotate_due_keys() -> int:
    """Celery beat: rotate every organisation's key older than its rotation interval. Returns how many rotated."""
    rotated = 0
    current = SigningKey.objects.unscoped("periodic rotation of every organisation's signing key").filter(
        retired_at__isnull=True
    )
    intervals = dict(
        AccessSettings.objects.unscoped("periodic rotation reads every organisation's interval").values_list(
            "organisation_id", "key_rotation_interval_days"
        )
    )
    now = timezone.now()
    for key in current.select_related("organisation"):
        if key.created_at + timedelta(days=intervals.get(key.organisation_id, 42)) <= now:
            keys_rotate(organisation=key.organisation, actor=Actor.system("scheduled key rotation"))
            rotated += 1
    return rotated


def user_sessions_end(*, organisation: Organisation, email: str) -> UserRevocation:
    """Every token of this identity issued until now is refused, on every application of the team, within seconds
    (the `access` event drops the edges' views). A visitor's logout; `user_revoke` is the audited admin action."""
    from access.events import access_changed

    row, _ = UserRevocation.objects.update_or_create(
        organisation=organisation, email=email.strip().lower(), defaults={"revoked_at": timezone.now()}
    )
    access_changed(organisation_id=organisation.pk)
    return row


def user_revoke(*, organisation: Organisation, actor: Actor, email: Any) -> UserRevocation:
    if not isinstance(email, str) or "@" not in email or len(email) > 320:
        raise ValidationError({"email": "An email address."})
    with transaction.atomic():
        row = user_sessions_end(organisation=organisation, email=email)
        audit(
            organisation=organisation,
            actor=actor,
            action=AuditAction.UPDATE,
            obj=row,
            kind="access_user",
            changes={"revoked_sessions": [None, row.email]},
        )
    return row
