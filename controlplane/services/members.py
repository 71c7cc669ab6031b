"""Members and invitations. Rules: a member or token grants (invites with, changes to or from, removes) only
roles whose permissions it holds itself, and must hold `members:edit`; only Super Administrators grant or take away
Super Administrator; the last Super Administrator can be neither removed nor demoted."""

from __future__ import annotations

import datetime
import hashlib
import secrets

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from controlplane.actors import Actor
from controlplane.choices import ROLE_SCOPES, AuditAction, InvitationStatus, Level, Resource, Role, scope
from controlplane.errors import NotFound
from controlplane.mail import email_send
from controlplane.models import Invitation, Membership, Organisation, User
from controlplane.services.audit import audit_record

INVITATION_LIFETIME = datetime.timedelta(days=7)


def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def _actor_role(organisation: Organisation, actor: Actor) -> str | None:
    if actor.user is None:
        return Role.SUPER_ADMIN if actor.token is None else None  # CLI and system act as the operator
    membership = Membership.objects.for_org(organisation).filter(user=actor.user).first()
    return membership.role if membership else None


def _actor_scopes(organisation: Organisation, actor: Actor) -> frozenset[str]:
    """What the actor may do in `organisation`: a token its grants, a member their role's scopes, the operator
    (CLI, system) everything."""
    if actor.token is not None:
        return actor.token.scopes if actor.token.organisation_id == organisation.pk else frozenset()
    role = _actor_role(organisation, actor)
    return ROLE_SCOPES[role] if role else frozenset()


def _require_can_grant(organisation: Organisation, actor: Actor, *roles: str) -> None:
    """Refuse unless the actor may grant every role in `roles`: it holds `members:edit` and all of each role's
    scopes (so no token or member can make someone more powerful than itself, e.g. a `members:edit` token an
    Administrator), and only a Super Administrator grants Super Administrator. Taking a role away (demoting,
    removing) needs the same, so nobody can strip a member more powerful than themselves."""
    held = _actor_scopes(organisation, actor)
    if scope(Resource.MEMBERS, Level.EDIT) not in held:
        raise PermissionDenied("You do not have permission to change members.")
    for role in roles:
        if role == Role.SUPER_ADMIN:
            if _actor_role(organisation, actor) != Role.SUPER_ADMIN:
                raise PermissionDenied("Only a Super Administrator can grant or change the Super Administrator role.")
            continue
        missing = ROLE_SCOPES[role] - held
        if missing:
            holder = "this API token does" if actor.token is not None else "your role does"
            raise PermissionDenied(
                f"You cannot grant or change the {Role(role).label} role: it includes permissions {holder} not "
                f"have ({', '.join(sorted(missing))})."
            )


def _super_admin_count(organisation: Organisation) -> int:
    return Membership.objects.for_org(organisation).filter(role=Role.SUPER_ADMIN).count()


def _validate_role(role: str) -> None:
    if role not in Role.values:
        raise ValidationError({"role": f"Unknown role “{role}”. Choose one of: {', '.join(Role.values)}."})


@transaction.atomic
def invitation_create(*, organisation: Organisation, email: str, role: str, actor: Actor) -> tuple[Invitation, str]:
    """Invite someone by email. Returns the invitation and the raw link secret (also sent by email)."""
    email = (email or "").strip().lower()
    try:
        validate_email(email)
    except ValidationError:
        raise ValidationError({"email": "Enter a valid email address."}) from None
    _validate_role(role)
    _require_can_grant(organisation, actor, role)
    if Membership.objects.for_org(organisation).filter(user__email__iexact=email).exists():
        raise ValidationError({"email": f"{email} is already a member of this organisation."})
    if Invitation.objects.for_org(organisation).filter(email__iexact=email, status=InvitationStatus.PENDING).exists():
        raise ValidationError({"email": f"{email} already has a pending invitation; revoke it to send a new one."})
    raw = secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(
        organisation=organisation,
        email=email,
        role=role,
        token_hash=_hash(raw),
        invited_by=actor.user,
        expires_at=timezone.now() + INVITATION_LIFETIME,
    )
    audit_record(
        organisation=organisation,
        actor=actor,
        action=AuditAction.CREATE,
        resource_type="invitation",
        resource_id=invitation.id,
        resource_name=email,
        changes={"email": [None, email], "role": [None, role]},
    )
    email_send(
        to=[email],
        subject=f"You are invited to join {organisation} on the Zero Trust control plane",
        template="controlplane/email/invitation",
        context={
            "organisation": str(organisation),
            "team_domain": organisation.team_domain,
            "role": Role(role).label,
            "inviter": actor.display,
            "link": f"{settings.PUBLIC_URL}/invitations/{raw}/",
            "expires": invitation.expires_at.strftime("%d %B %Y %H:%M UTC"),
        },
        organisation_id=str(organisation.pk),
    )
    return invitation, raw


def invitation_get_by_secret(raw: str) -> Invitation:
    """The pending invitation a link secret opens (any organisation: the secret is the authority)."""
    invitation = (
        Invitation.objects.unscoped("an invitation link is its own authority")
        .select_related("organisation")
        .filter(token_hash=_hash(raw or ""))
        .first()
    )
    if invitation is None or invitation.status != InvitationStatus.PENDING:
        raise NotFound("This invitation does not exist, or was already used or revoked.")
    if invitation.expires_at <= timezone.now():
        raise NotFound("This invitation has expired. Ask for a new one.")
    return invitation


@transaction.atomic
def invitation_accept(
    *, invitation: Invitation, user: User | None, actor: Actor, password: str = "", name: str = ""
) -> Membership:
    """Accept as the signed-in user (whose email must match), or create the invitee's account with `password`."""
    invitation = Invitation.objects.unscoped("accepting by secret").select_for_update().get(pk=invitation.pk)
    if invitation.status != InvitationStatus.PENDING or invitation.expires_at <= timezone.now():
        raise NotFound("This invitation was already used, revoked or has expired.")
    if user is None:
        if User.objects.filter(email__iexact=invitation.email).exists():
            raise PermissionDenied("An account with this email exists: sign in to accept the invitation.")
        candidate = User(email=invitation.email, name=name.strip())
        try:
            validate_password(password, candidate)
        except ValidationError as exc:
            raise ValidationError({"password": exc.messages}) from None
        user = User.objects.create_user(invitation.email, password, name=name.strip())
    elif user.email.lower() != invitation.email.lower():
        raise PermissionDenied(f"This invitation is for {invitation.email}; you are signed in as {user.email}.")
    organisation = invitation.organisation
    membership, created = Membership.objects.for_org(organisation).get_or_create(
        organisation=organisation, user=user, defaults={"role": invitation.role}
    )
    invitation.status = InvitationStatus.ACCEPTED
    invitation.responded_at = timezone.now()
    invitation.save(update_fields=["status", "responded_at"])
    acting = Actor(user=user, interface=actor.interface, ip=actor.ip, user_agent=actor.user_agent)
    audit_record(
        organisation=organisation,
        actor=acting,
        action=AuditAction.CREATE,
        resource_type="member",
        resource_id=membership.pk,
        resource_name=user.email,
        changes={"role": [None, membership.role], "invitation": [None, "accepted"]},
    )
    return membership


@transaction.atomic
def invitation_decline(*, invitation: Invitation, actor: Actor) -> None:
    updated = (
        Invitation.objects.for_org(invitation.organisation)
        .filter(pk=invitation.pk, status=InvitationStatus.PENDING)
        .update(status=InvitationStatus.DECLINED, responded_at=timezone.now())
    )
    if updated:
        audit_record(
            organisation=invitation.organisation,
            actor=actor,
            action=AuditAction.UPDATE,
            resource_type="invitation",
            resource_id=invitation.id,
            resource_name=invitation.email,
            changes={"status": [InvitationStatus.PENDING, InvitationStatus.DECLINED]},
        )


@transaction.atomic
def invitation_revoke(*, invitation: Invitation, actor: Actor) -> None:
    _require_can_grant(invitation.organisation, actor, invitation.role)
    updated = (
        Invitation.objects.for_org(invitation.organisation)
        .filter(pk=invitation.pk, status=InvitationStatus.PENDING)
        .update(status=InvitationStatus.REVOKED, responded_at=timezone.now())
    )
    if not updated:
        raise ValidationError("Only pending invitations can be revoked.")
    audit_record(
        organisation=invitation.organisation,
        actor=actor,
        action=AuditAction.DELETE,
        resource_type="invitation",
        resource_id=invitation.id,
        resource_name=invitation.email,
        changes={"status": [InvitationStatus.PENDING, InvitationStatus.REVOKED]},
    )


@transaction.atomic
def membership_update_role(*, membership: Membership, role: str, actor: Actor) -> Membership:
    _validate_role(role)
    organisation = membership.organisation
    membership = Membership.objects.for_org(organisation).select_for_update().get(pk=membership.pk)
    if membership.role == role:
        return membership
    _require_can_grant(organisation, actor, role, membership.role)
    if membership.role == Role.SUPER_ADMIN and _super_admin_count(organisation) <= 1:
        raise ValidationError({"role": "The last Super Administrator cannot be demoted; promote someone else first."})
    old = membership.role
    membership.role = role
    membership.save(update_fields=["role", "updated_at"])
    audit_record(
        organisation=organisation,
        actor=actor,
        action=AuditAction.UPDATE,
        resource_type="member",
        resource_id=membership.pk,
        resource_name=membership.user.email,
        changes={"role": [old, role]},
    )
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership, actor: Actor) -> None:
    organisation = membership.organisation
    membership = (
        Membership.objects.for_org(organisation).select_for_update().select_related("user").get(pk=membership.pk)
    )
    if actor.user is None or actor.user.pk != membership.user_id:
        _require_can_grant(organisation, actor, membership.role)
    if membership.role == Role.SUPER_ADMIN and _super_admin_count(organisation) <= 1:
        raise ValidationError("The last Super Administrator cannot be removed; promote someone else first.")
    audit_record(
        organisation=organisation,
        actor=actor,
        action=AuditAction.DELETE,
        resource_type="member",
        resource_id=membership.pk,
        resource_name=membership.user.email,
        changes={"role": [membership.role, None]},
    )
    membership.delete()
