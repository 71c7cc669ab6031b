"""Creating and changing organisations."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from controlplane.actors import Actor
from controlplane.choices import AuditAction, Role
from controlplane.models import Membership, Organisation, User
from controlplane.services.audit import audit_record, diff, save_audited, snapshot

ORGANISATION_FIELDS = ["team_name", "display_name", "require_2fa"]


def _check_team_name_free(team_name: str, *, exclude: Organisation | None = None) -> None:
    taken = Organisation.objects.filter(team_name=team_name)
    if exclude is not None:
        taken = taken.exclude(pk=exclude.pk)
    if taken.exists():
        raise ValidationError({"team_name": f"The team name “{team_name}” is already taken."})


@transaction.atomic
def organisation_create(
    *, team_name: str, display_name: str = "", owner: User | None, actor: Actor, require_2fa: bool = True
) -> Organisation:
    """A new organisation; `owner` becomes its first Super Administrator."""
    team_name = (team_name or "").strip()
    organisation = Organisation(
        team_name=team_name, display_name=(display_name or "").strip() or team_name, require_2fa=require_2fa
    )
    organisation.full_clean(exclude=["team_name"] if not team_name else None)
    _check_team_name_free(team_name)
    save_audited(
        organisation,
        conflict={"team_name": f"The team name “{team_name}” is already taken."},
        organisation=organisation,
        actor=actor,
        action=AuditAction.CREATE,
        resource_type="organisation",
        resource_name=organisation.team_name,
        changes=diff({}, snapshot(organisation, ORGANISATION_FIELDS)),
    )
    if owner is not None:
        membership = Membership.objects.create(organisation=organisation, user=owner, role=Role.SUPER_ADMIN)
        audit_record(
            organisation=organisation,
            actor=actor,
            action=AuditAction.CREATE,
            resource_type="member",
            resource_id=membership.pk,
            resource_name=owner.email,
            changes={"role": [None, Role.SUPER_ADMIN]},
        )
    return organisation


def _is_super_admin(organisation: Organisation, actor: Actor) -> bool:
    if actor.token is not None:
        return False
    if actor.user is None:
        return True  # the operator's command line
    return Membership.objects.for_org(organisation).filter(user=actor.user, role=Role.SUPER_ADMIN).exists()


@transaction.atomic
def organisation_update(*, organisation: Organisation, actor: Actor, **fields: object) -> Organisation:
    """Change team name, display name or the 2FA requirement. Renaming changes the team domain. A display name
    that was never set apart from the team name (the default, e.g. `manage.py bootstrap`'s) follows a rename, so
    the header does not keep showing the old team name."""
    unknown = set(fields) - set(ORGANISATION_FIELDS)
    if unknown:
        raise ValidationError({name: "This field cannot be changed." for name in unknown})
    organisation = Organisation.objects.select_for_update().get(pk=organisation.pk)
    renaming = "team_name" in fields and str(fields["team_name"]).strip() != organisation.team_name
    if renaming and not _is_super_admin(organisation, actor):
        raise PermissionDenied("Only a Super Administrator can rename the team (it changes the team domain).")
    before = snapshot(organisation, ORGANISATION_FIELDS)
    if renaming and "display_name" not in fields and organisation.display_name == organisation.team_name:
        fields = {**fields, "display_name": str(fields["team_name"])}
    for name, value in fields.items():
        if isinstance(value, str):
            value = value.strip()
        setattr(organisation, name, value)
    if not organisation.display_name:
        organisation.display_name = organisation.team_name
    organisation.full_clean(exclude=["team_name"] if "team_name" not in fields else None, validate_unique=False)
    if "team_name" in fields:
        _check_team_name_free(organisation.team_name, exclude=organisation)
    changes = diff(before, snapshot(organisation, ORGANISATION_FIELDS))
    if not changes:
        return organisation
    save_audited(
        organisation,
        conflict={"team_name": f"The team name “{organisation.team_name}” is already taken."},
        organisation=organisation,
        actor=actor,
        action=AuditAction.UPDATE,
        resource_type="organisation",
        resource_name=organisation.team_name,
        changes=changes,
    )
    return organisation
