"""Self-hosted applications: destinations under the organisation's zones, session settings, attached policies."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from access.logic.destinations import Destination, host_in_zone, parse_destination
from access.models import Application, IdentityProvider
from access.services.common import audit, clean_duration, clean_name
from access.services.policies import attach_policies, parse_policy_refs
from controlplane.actors import Actor
from controlplane.choices import AuditAction, ZoneStatus
from controlplane.models import Organisation, Zone
from controlplane.services.audit import diff, snapshot

MAX_DESTINATIONS = 5
MAX_APPLICATIONS = 500
APP_FIELDS = [
    "name",
    "destinations",
    "session_duration",
    "allowed_idps",
    "auto_redirect_to_identity",
    "app_launcher_visible",
    "custom_deny_message",
    "custom_deny_url",
    "logo_url",
    "same_site_cookie_attribute",
    "http_only_cookie_attribute",
]
_BOOLEANS = {
    "auto_redirect_to_identity": False,
    "app_launcher_visible": True,
    "http_only_cookie_attribute": True,
}


def _raw_destinations(data: dict[str, Any]) -> list[Any]:
    if data.get("destinations") is not None:
        raw = data["destinations"]
        if not isinstance(raw, list):
            raise ValidationError({"destinations": 'A list of {"type": "public", "uri": "app.example.com/path"}.'})
        uris = []
        for position, item in enumerate(raw):
            if not isinstance(item, dict) or item.get("type", "public") != "public":
                raise ValidationError(
                    {"destinations": f"destinations[{position}]: only “public” destinations are available yet."}
                )
            uris.append(item.get("uri"))
        return uris
    if data.get("self_hosted_domains") is not None:
        if not isinstance(data["self_hosted_domains"], list):
            raise ValidationError({"self_hosted_domains": "A list of hostnames with optional paths."})
        return list(data["self_hosted_domains"])
    if data.get("domain") not in (None, ""):
        return [data["domain"]]
    return []


def _zone_of(zones: list[Zone], host: str) -> Zone | None:
    return next((zone for zone in zones if host_in_zone(host, zone.name)), None)


def clean_destinations(
    organisation: Organisation, data: dict[str, Any], app: Application | None, zone: Zone | None = None
) -> list[Destination]:
    """The application's domains, checked: each under an active zone of the organisation (under `zone` itself when
    the call names one, as `/zones/{zone}/access/apps` does), none listed twice or protected by another app."""
    raw = _raw_destinations(data)
    if not raw:
        raise ValidationError({"domain": "An application needs at least one domain (a hostname, optional path)."})
    if len(raw) > MAX_DESTINATIONS:
        raise ValidationError({"destinations": f"At most {MAX_DESTINATIONS} domains per application."})
    zones = list(Zone.objects.for_org(organisation).filter(status=ZoneStatus.ACTIVE))
    destinations: list[Destination] = []
    for position, uri in enumerate(raw):
        try:
            destination = parse_destination(uri)
        except ValueError as exc:
            raise ValidationError({"destinations": f"destinations[{position}]: {exc}"}) from None
        if zone is not None and not host_in_zone(destination.host, zone.name):
            raise ValidationError(
                {
                    "destinations": f"destinations[{position}]: “{destination.host}” is not under the zone "
                    f"“{zone.name}” this path names. Use the account's path for an application across zones."
                }
            )
        if _zone_of(zones, destination.host) is None:
            raise ValidationError(
                {
                    "destinations": f"destinations[{position}]: “{destination.host}” is not under an active zone of "
                    "this account. Add and verify the zone first."
                }
            )
        if destination in destinations:
            raise ValidationError({"destinations": f"destinations[{position}]: “{destination.uri}” is listed twice."})
        destinations.append(destination)
    others = Application.objects.for_org(organisation)
    if app is not None:
        others = others.exclude(pk=app.pk)
    for other_name, other_destinations in others.values_list("name", "destinations"):
        for item in other_destinations:
            if any(item.get("uri") == destination.uri for destination in destinations):
                raise ValidationError(
                    {"destinations": f"“{item['uri']}” is already protected by the application “{other_name}”."}
                )
    return destinations


def _clean_url(value: Any, field: str) -> str:
    if value in (None, ""):
        return ""
    if not isinstance(value, str) or len(value) > 1024:
        raise ValidationError({field: "A URL of at most 1024 characters."})
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValidationError({field: "An absolute http:// or https:// URL."})
    return value


def _clean_app(
    organisation: Organisation, data: dict[str, Any], app: Application | None, zone: Zone | None
) -> dict[str, Any]:
    kind = data.get("type", "self_hosted")
    if kind != "self_hosted":
        raise ValidationError({"type": f"“{kind}” applications are not available yet; use “self_hosted”."})
    destinations = clean_destinations(organisation, data, app, zone)
    values: dict[str, Any] = {
        "name": clean_name(data.get("name") or destinations[0].uri, "An application"),
        "destinations": [{"type": "public", "uri": destination.uri} for destination in destinations],
        "session_duration": clean_duration(data.get("session_duration"), "session_duration"),
        "custom_deny_url": _clean_url(data.get("custom_deny_url"), "custom_deny_url"),
        "logo_url": _clean_url(data.get("logo_url"), "logo_url"),
    }
    message = data.get("custom_deny_message") or ""
    if not isinstance(message, str) or len(message) > 1024:
        raise ValidationError({"custom_deny_message": "Text of at most 1024 characters."})
    values["custom_deny_message"] = message
    same_site = (data.get("same_site_cookie_attribute") or Application.SameSite.LAX).lower()
    if same_site not in Application.SameSite.values:
        raise ValidationError({"same_site_cookie_attribute": "“none”, “lax” or “strict”."})
    values["same_site_cookie_attribute"] = same_site
    for key, default in _BOOLEANS.items():
        value = data.get(key, default)
        if value is None:
            value = default
        if not isinstance(value, bool):
            raise ValidationError({key: "true or false."})
        values[key] = value
    idps = data.get("allowed_idps") or []
    if not isinstance(idps, list) or not all(isinstance(item, str) for item in idps):
        raise ValidationError({"allowed_idps": "A list of identity provider ids."})
    known = {str(pk) for pk in IdentityProvider.objects.for_org(organisation).values_list("pk", flat=True)}
    unknown = [item for item in idps if item not in known]
    if unknown:
        raise ValidationError({"allowed_idps": f"No identity provider with id “{unknown[0]}” in this account."})
    values["allowed_idps"] = list(dict.fromkeys(idps))
    return values


def application_save(
    *,
    organisation: Organisation,
    actor: Actor,
    data: dict[str, Any],
    app: Application | None = None,
    zone: Zone | None = None,
) -> Application:
    """Create, or replace (PUT: fields left out take their defaults), a self-hosted application; with `zone`, every
    domain must be under that zone."""
    values = _clean_app(organisation, data, app, zone)
    refs = parse_policy_refs(data["policies"]) if data.get("policies") is not None else None
    with transaction.atomic():
        if app is None:
            if Application.objects.for_org(organisation).count() >= MAX_APPLICATIONS:
                raise ValidationError({"name": f"At most {MAX_APPLICATIONS} applications per account."})
            app = Application.objects.create(organisation=organisation, **values)
            if refs is not None:
                attach_policies(application=app, refs=refs)
            audit(organisation=organisation, actor=actor, action=AuditAction.CREATE, obj=app, kind="access_app")
            return app
        before = snapshot(app, APP_FIELDS)
        for key, value in values.items():
            setattr(app, key, value)
        app.save()
        if refs is not None:
            attach_policies(application=app, refs=refs)
        audit(
            organisation=organisation,
            actor=actor,
            action=AuditAction.UPDATE,
            obj=app,
            kind="access_app",
            changes=diff(before, snapshot(app, APP_FIELDS)),
        )
    return app


def application_delete(*, app: Application, actor: Actor) -> None:
    with transaction.atomic():
        audit(organisation=app.organisation, actor=actor, action=AuditAction.DELETE, obj=app, kind="access_app")
        app.delete()


def application_revoke_tokens(*, app: Application, actor: Actor) -> Application:
    """Every session token issued for the application before now stops being accepted."""
    with transaction.atomic():
        app.tokens_revoked_at = timezone.now()
        app.save(update_fields=["tokens_revoked_at", "updated_at"])
        audit(
            organisation=app.organisation,
            actor=actor,
            action=AuditAction.UPDATE,
            obj=app,
            kind="access_app",
            changes={"tokens_revoked_at": [None, app.tokens_revoked_at.isoformat()]},
        )
    return app
