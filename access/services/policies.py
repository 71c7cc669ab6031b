"""Policies (reusable, or owned by one application) and how they attach to applications."""

from __future__ import annotations

import uuid
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max

from access.logic.rules import RuleSet, parse_rules, uses_identity
from access.models import Application, ApplicationPolicy, Policy
from access.selectors import directory_for
from access.services.common import audit, clean_duration, clean_name, clean_rules
from controlplane.actors import Actor
from controlplane.choices import AuditAction
from controlplane.models import Organisation
from controlplane.services.audit import diff, snapshot

POLICY_FIELDS = ["name", "decision", "include", "require", "exclude", "session_duration"]
MAX_POLICIES_PER_APP = 50
_SERVICE_SELECTORS = {"service_token", "any_valid_service_token"}


def _clean_policy(organisation: Organisation, data: dict[str, Any]) -> dict[str, Any]:
    decision = data.get("decision")
    if decision not in Policy.Decision.values:
        raise ValidationError({"decision": "One of “allow”, “deny”, “bypass”, “non_identity” (Service Auth)."})
    values = {
        "name": clean_name(data.get("name"), "A policy"),
        "decision": decision,
        "include": clean_rules(organisation, data.get("include"), "include", required=True),
        "require": clean_rules(organisation, data.get("require"), "require"),
        "exclude": clean_rules(organisation, data.get("exclude"), "exclude"),
        "session_duration": clean_duration(data.get("session_duration"), "session_duration", allow_empty=True),
    }
    rules = RuleSet(*(tuple(parse_rules(values[key], field_name=key)) for key in ("include", "require", "exclude")))
    if decision == Policy.Decision.BYPASS:
        identity = uses_identity(rules, directory_for(organisation))
        if identity is not None:
            raise ValidationError(
                {"include": f"A Bypass policy cannot use identity rules (“{identity.describe()}”): nobody signs in."}
            )
    if decision in (Policy.Decision.ALLOW, Policy.Decision.DENY) and any(
        rule.kind in _SERVICE_SELECTORS for rule in rules.rules()
    ):
        raise ValidationError(
            {"include": "Service token rules work only in Service Auth (“non_identity”) policies, which need no login."}
        )
    return values


def policy_save(
    *,
    organisation: Organisation,
    actor: Actor,
    data: dict[str, Any],
    policy: Policy | None = None,
    application: Application | None = None,
) -> Policy:
    """Create or replace a policy. With `application` (and no `policy`), the new policy belongs to that application
    and is attached at `data["precedence"]` (default: after the last one)."""
    values = _clean_policy(organisation, data)
    precedence = data.get("precedence")
    if precedence is not None and (isinstance(precedence, bool) or not isinstance(precedence, int) or precedence < 1):
        raise ValidationError({"precedence": "A whole number of at least 1."})
    with transaction.atomic():
        if policy is None:
            policy = Policy.objects.create(
                organisation=organisation, reusable=application is None, application=application, **values
            )
            if application is not None:
                _attach(application, policy, precedence)
            audit(organisation=organisation, actor=actor, action=AuditAction.CREATE, obj=policy, kind="access_policy")
            return policy
        before = snapshot(policy, POLICY_FIELDS)
        for key, value in values.items():
            setattr(policy, key, value)
        policy.save()
        if application is not None and precedence is not None:
            link = ApplicationPolicy.objects.for_org(organisation).get(application=application, policy=policy)
            if link.precedence != precedence:
                _check_precedence_free(application, precedence, exclude=link)
                link.precedence = precedence
                link.save(update_fields=["precedence"])
        audit(
            organisation=organisation,
            actor=actor,
            action=AuditAction.UPDATE,
            obj=policy,
            kind="access_policy",
            changes=diff(before, snapshot(policy, POLICY_FIELDS)),
        )
    return policy


def _check_precedence_free(application: Application, precedence: int, exclude: ApplicationPolicy | None = None) -> None:
    taken = ApplicationPolicy.objects.for_org(application.organisation).filter(
        application=application, precedence=precedence
    )
    if exclude is not None:
        taken = taken.exclude(pk=exclude.pk)
    if taken.exists():
        raise ValidationError({"precedence": f"Precedence {precedence} is already used in this application."})


def _attach(application: Application, policy: Policy, precedence: int | None) -> None:
    links = ApplicationPolicy.objects.for_org(application.organisation).filter(application=application)
    if links.count() >= MAX_POLICIES_PER_APP:
        raise ValidationError({"policies": f"At most {MAX_POLICIES_PER_APP} policies per application."})
    if precedence is None:
        precedence = (links.aggregate(top=Max("precedence"))["top"] or 0) + 1
    else:
        _check_precedence_free(application, precedence)
    ApplicationPolicy.objects.create(
        organisation=application.organisation, application=application, policy=policy, precedence=precedence
    )


def policy_delete(*, policy: Policy, actor: Actor) -> None:
    organisation = policy.organisation
    if policy.reusable:
        apps = list(
            Application.objects.for_org(organisation)
            .filter(policy_links__policy=policy, organisation=organisation)
            .values_list("name", flat=True)[:1]
        )
        if apps:
            raise ValidationError({"id": f"The policy is used by the application “{apps[0]}”: detach it first."})
    with transaction.atomic():
        audit(organisation=organisation, actor=actor, action=AuditAction.DELETE, obj=policy, kind="access_policy")
        policy.delete()


def parse_policy_refs(raw: Any) -> list[tuple[str, int | None]]:
    """An application's `policies`: ids, or `{id, precedence?}` objects, as Cloudflare's API takes them."""
    if not isinstance(raw, list):
        raise ValidationError({"policies": 'A list of policy ids or {"id": …, "precedence": …} objects.'})
    if len(raw) > MAX_POLICIES_PER_APP:
        raise ValidationError({"policies": f"At most {MAX_POLICIES_PER_APP} policies per application."})
    refs: list[tuple[str, int | None]] = []
    for position, item in enumerate(raw):
        if isinstance(item, str):
            refs.append((item, None))
            continue
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            raise ValidationError({"policies": f"policies[{position}]: a policy id or an object with an “id”."})
        precedence = item.get("precedence")
        if precedence is not None and (
            isinstance(precedence, bool) or not isinstance(precedence, int) or precedence < 1
        ):
            raise ValidationError({"policies": f"policies[{position}]: precedence is a whole number of at least 1."})
        refs.append((item["id"], precedence))
    return refs


def attach_policies(*, application: Application, refs: list[tuple[str, int | None]]) -> None:
    """Make `refs` the application's policies (inside the caller's transaction). Reusable policies of the
    organisation and this application's own policies may be named; own policies left out are deleted."""
    organisation = application.organisation
    ids = [ref for ref, _ in refs]
    if len(set(ids)) != len(ids):
        raise ValidationError({"policies": "A policy is listed twice."})
    known = {
        str(policy.pk): policy
        for policy in Policy.objects.for_org(organisation).filter(
            pk__in=[_uuid_or_none(ref) for ref in ids if _uuid_or_none(ref)]
        )
        if policy.reusable or policy.application_id == application.pk
    }
    missing = [ref for ref in ids if str(_uuid_or_none(ref)) not in known]
    if missing:
        raise ValidationError({"policies": f"No policy with id “{missing[0]}” that this application can use."})
    precedences: list[int] = []
    next_free = 1
    used = {precedence for _, precedence in refs if precedence is not None}
    for _, precedence in refs:
        if precedence is None:
            while next_free in used or next_free in precedences:
                next_free += 1
            precedence = next_free
        precedences.append(precedence)
    if len(set(precedences)) != len(precedences):
        raise ValidationError({"policies": "Two policies have the same precedence."})
    ApplicationPolicy.objects.for_org(organisation).filter(application=application).delete()
    keep = {str(_uuid_or_none(ref)) for ref in ids}
    Policy.objects.for_org(organisation).filter(application=application, reusable=False).exclude(
        pk__in=[known[k].pk for k in keep]
    ).delete()
    ApplicationPolicy.objects.bulk_create(
        [
            ApplicationPolicy(
                organisation=organisation,
                application=application,
                policy=known[str(_uuid_or_none(ref))],
                precedence=precedence,
            )
            for (ref, _), precedence in zip(refs, precedences, strict=True)
        ]
    )


def _uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return None


def detach_policy(*, application: Application, policy: Policy, actor: Actor) -> None:
    """Take a reusable policy off one application; the policy stays for the others."""
    with transaction.atomic():
        ApplicationPolicy.objects.for_org(application.organisation).filter(
            application=application, policy=policy
        ).delete()
        audit(
            organisation=application.organisation,
            actor=actor,
            action=AuditAction.UPDATE,
            obj=application,
            kind="access_app",
            changes={"policies": [str(policy.pk), None]},
        )
