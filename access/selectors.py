"""Reads of Access objects, and the compiled view of an organisation's applications that the policy engine uses."""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Prefetch, QuerySet

from access.logic.destinations import Destination, DestinationIndex, parse_destination
from access.logic.durations import parse_go_duration
from access.logic.engine import Decision, PolicyDef, evaluation_order
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
from controlplane.models import Organisation


def _get(qs: QuerySet[Any], object_id: Any, what: str) -> Any:
    try:
        pk = uuid.UUID(str(object_id))
    except ValueError:
        raise NotFound(f"No {what} with that id.") from None
    found = qs.filter(pk=pk).first()
    if found is None:
        raise NotFound(f"No {what} with that id.")
    return found


def application_list(*, organisation: Organisation) -> QuerySet[Application]:
    links = ApplicationPolicy.objects.for_org(organisation).select_related("policy").order_by("precedence")
    return Application.objects.for_org(organisation).prefetch_related(Prefetch("policy_links", queryset=links))


def application_get(*, organisation: Organisation, app_id: Any) -> Application:
    return _get(application_list(organisation=organisation), app_id, "application")


def policy_list(*, organisation: Organisation, application: Application | None = None) -> QuerySet[Policy]:
    qs = Policy.objects.for_org(organisation)
    if application is None:
        return qs.filter(reusable=True).annotate(app_count=Count("application_links"))
    return (
        qs.filter(application_links__application=application, organisation=organisation)
        .annotate(app_count=Count("application_links"))
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
            directory.ip_lists[str(access_list.pk)] = tuple(
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
