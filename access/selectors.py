"""Reads of Access objects, and the compiled view of an organisation's applications that the policy engine uses."""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Prefetch, QuerySet

from access.logic.destinations import Destination, DestinationIndex, host_in_zone, parse_destination
from access.logic.durations import parse_go_duration
from access.logic.engine import Decision, PolicyDef, evaluation_order
from access.logic.ipsets import IPSet
from access.logic.rules import Directory, RuleSet, parse_rules
from access.models import (
    AccessGroup,
    AccessList,
    Application,
    ApplicationPolicy,
    IdentityProvider,
    Policy,
    ServiceToken,
)
from controlplane.errors import NotFound
from controlplane.models import Organisation, Zone


def _get(qs: QuerySet[Any], object_id: Any, what: str) -> Any:
    try:
        pk = uuid.UUID(str(object_id))
    except ValueError:
        raise NotFound(f"No {what} with that id.") from None
    found = qs.filter(pk=pk).first()
    if found is None:
        raise NotFound(f"No {what} with that id.")
    return found


def application_in_zone(destinations: Sequence[dict[str, Any]], zone: Zone) -> bool:
    """An application is the zone's (for `/zones/{zone}/access/apps`) when every one of its domains is under it."""
    hosts = [parse_destination(item.get("uri")).host for item in destinations]
    return bool(hosts) and all(host_in_zone(host, zone.name) for host in hosts)


def application_list(*, organisation: Organisation, zone: Zone | None = None) -> QuerySet[Application]:
    links = ApplicationPolicy.objects.for_org(organisation).select_related("policy").order_by("precedence")
    qs = Application.objects.for_org(organisation).prefetch_related(Prefetch("policy_links", queryset=links))
    if zone is not None:
        # Destinations are a JSON list; an account has at most 500 applications, read as (id, destinations) pairs.
        rows = Application.objects.for_org(organisation).values_list("pk", "destinations")
        qs = qs.filter(pk__in=[pk for pk, destinations in rows if application_in_zone(destinations, zone)])
    return qs


def application_get(*, organisation: Organisation, app_id: Any, zone: Zone | None = None) -> Application:
    return _get(application_list(organisation=organisation, zone=zone), app_id, "application")


def policy_list(*, organisation: Organisation, application: Application | None = None) -> QuerySet[Policy]:
    qs = Policy.objects.for_org(organisation)
    if application is None:
        return qs.filter(reusable=True).annotate(app_count=Count("application_links"))
    # Annotated before the filter: the count is over all of the policy's links, not only this application's.
    return (
        qs.annotate(app_count=Count("application_links"))
        .filter(application_links__application=application, organisation=organisation)
        .order_by("application_links__precedence")
    )


def policy_get(*, organisation: Organisation, policy_id: Any, application: Application | None = None) -> Policy:
    return _get(policy_list(organisation=organisation, application=application), policy_id, "policy")


def precedences(application: Application) -> dict[uuid.UUID, int]:
    return dict(
        ApplicationPolicy.objects.for_org(application.organisation)
        .filter(application=application)
        .values_list("policy_id", "precedence")
    )


def group_list(*, organisation: Organisation) -> QuerySet[AccessGroup]:
    return AccessGroup.objects.for_org(organisation)


def group_get(*, organisation: Organisation, group_id: Any) -> AccessGroup:
    return _get(group_list(organisation=organisation), group_id, "group")


def list_list(*, organisation: Organisation) -> QuerySet[AccessList]:
    return AccessList.objects.for_org(organisation)


def list_get(*, organisation: Organisation, list_id: Any) -> AccessList:
    return _get(list_list(organisation=organisation), list_id, "list")


def service_token_list(*, organisation: Organisation) -> QuerySet[ServiceToken]:
    return ServiceToken.objects.for_org(organisation)


def service_token_get(*, organisation: Organisation, token_id: Any) -> ServiceToken:
    return _get(service_token_list(organisation=organisation), token_id, "service token")


def identity_provider_list(*, organisation: Organisation) -> QuerySet[IdentityProvider]:
    return IdentityProvider.objects.for_org(organisation)


def identity_provider_get(*, organisation: Organisation, idp_id: Any) -> IdentityProvider:
    return _get(identity_provider_list(organisation=organisation), idp_id, "identity provider")


# --- the compiled view the policy engine runs on -------------------------------------------------------------------


def _rule_set(include: Any, require: Any, exclude: Any) -> RuleSet:
    return RuleSet(
        tuple(parse_rules(include, field_name="include")),
        tuple(parse_rules(require, field_name="require")),
        tuple(parse_rules(exclude, field_name="exclude")),
    )


def directory_for(organisation: Organisation) -> Directory:
    """Groups and lists of the organisation, parsed (two queries)."""
    directory = Directory()
    for group in AccessGroup.objects.for_org(organisation):
        directory.groups[str(group.pk)] = _rule_set(group.include, group.require, group.exclude)
    for access_list in AccessList.objects.for_org(organisation):
        if access_list.type == AccessList.Type.EMAIL:
            directory.email_lists[str(access_list.pk)] = frozenset(item.lower() for item in access_list.items)
        else:
            directory.ip_lists[str(access_list.pk)] = IPSet(
                ipaddress.ip_network(item, strict=False) for item in access_list.items
            )
    return directory


@dataclass(frozen=True)
class CompiledApp:
    id: str
    name: str
    aud: str
    destinations: tuple[Destination, ...]
    policies: tuple[PolicyDef, ...]  # in evaluation order
    session_duration_seconds: int
    app: Application


@dataclass
class CompiledOrg:
    """An organisation's applications indexed by destination, with their policies parsed, and its directory."""

    apps: list[CompiledApp]
    index: DestinationIndex[CompiledApp]
    directory: Directory

    def match(self, host: str, path: str) -> CompiledApp | None:
        return self.index.match(host, path)


def _policy_def(policy: Policy, precedence: int) -> PolicyDef:
    return PolicyDef(
        id=str(policy.pk),
        name=policy.name,
        decision=Decision(policy.decision),
        precedence=precedence,
        rules=_rule_set(policy.include, policy.require, policy.exclude),
        session_duration=parse_go_duration(policy.session_duration) if policy.session_duration else None,
    )


def compile_org(organisation: Organisation, apps: Sequence[Application] | None = None) -> CompiledOrg:
    if apps is None:
        apps = list(application_list(organisation=organisation))
    compiled = []
    for app in apps:
        policies = evaluation_order(_policy_def(link.policy, link.precedence) for link in app.policy_links.all())
        compiled.append(
            CompiledApp(
                id=str(app.pk),
                name=app.name,
                aud=app.aud,
                destinations=tuple(parse_destination(item["uri"]) for item in app.destinations),
                policies=tuple(policies),
                session_duration_seconds=int(parse_go_duration(app.session_duration).total_seconds()),
                app=app,
            )
        )
    index = DestinationIndex.build((app.destinations, app) for app in compiled)
    return CompiledOrg(apps=compiled, index=index, directory=directory_for(organisation))


def access_request_list(
    *,
    organisation: Organisation,
    since: Any = None,
    until: Any = None,
    email: str | None = None,
    app_uid: str | None = None,
    allowed: bool | None = None,
    direction: str = "desc",
    email_exact: bool = False,
    limit: int | None = None,
) -> QuerySet[Any]:
    """The access log, filtered as Cloudflare's `access_requests`: `email` matches a part of the address (any case)
    unless `email_exact`; `limit` keeps the first entries in `direction`."""
    from access.models import AccessRequest

    rows = AccessRequest.objects.for_org(organisation)
    if since is not None:
        rows = rows.filter(created_at__gte=since)
    if until is not None:
        rows = rows.filter(created_at__lte=until)
    if email:
        rows = rows.filter(user_email__iexact=email) if email_exact else rows.filter(user_email__icontains=email)
    if app_uid:
        rows = rows.filter(app_uid=app_uid)
    if allowed is not None:
        rows = rows.filter(allowed=allowed)
    rows = rows.order_by("created_at" if direction == "asc" else "-created_at")
    return rows[:limit] if limit else rows


def policy_test(*, organisation: Organisation, data: dict[str, Any]) -> list[dict[str, Any]]:
    """The policy tester: every application's decision (or the one covering `url`) for a hypothetical visitor."""
    from urllib.parse import urlsplit

    from django.core.exceptions import ValidationError

    from access.logic.rules import Subject
    from access.logic.tester import evaluate_apps, trace_data
    from access.services.directory import one_time_pin_provider

    email = (data.get("email") or "").strip().lower() or None
    if email is not None and ("@" not in email or len(email) > 320):
        raise ValidationError({"email": "An email address."})
    ip = None
    if str(data.get("ip") or "").strip():
        try:
            ip = ipaddress.ip_address(str(data["ip"]).strip())
        except ValueError:
            raise ValidationError({"ip": f"“{data['ip']}” is not an IP address."}) from None
    country = (data.get("country") or "").strip().upper() or None
    if country is not None and (len(country) != 2 or not country.isalpha()):
        raise ValidationError({"country": "A two-letter country code."})
    token_id = (data.get("service_token_id") or "").strip() or None
    if token_id is not None:
        try:
            service_token_get(organisation=organisation, token_id=token_id)
        except NotFound:
            message = f"No service token “{token_id[:64]}” in this account."
            raise ValidationError({"service_token_id": message}) from None
    compiled = compile_org(organisation)
    apps = compiled.apps
    url = (data.get("url") or "").strip()
    if url:
        try:
            parts = urlsplit(url if "://" in url else f"https://{url}")
            host = parts.hostname or ""
        except ValueError:
            raise ValidationError({"url": f"“{url[:100]}” is not a URL."}) from None
        match = compiled.match(host, parts.path or "/")
        apps = [match] if match else []
    subject = Subject(
        email=email,
        login_method=str(one_time_pin_provider(organisation).pk) if email else None,
        ip=ip,
        country=country,
        service_token_id=token_id,
    )
    return [
        {"app_id": test.app_id, "app_name": test.app_name, **trace_data(test.verdict)}
        for test in evaluate_apps(apps, subject, compiled.directory)
    ]
